import Foundation

/// `pgcluster destroy`: stops every server and removes what pgcluster created under
/// local.dir — and only that: a file it did not create (beside a node's data, or in a
/// local.dir shared with something else) is kept and named.
public struct ClusterDestroy: Sendable {
    public let cluster: HostCluster

    public init(cluster: HostCluster) { self.cluster = cluster }

    /// Returns the paths kept because pgcluster did not create them.
    @discardableResult
    public func run() async throws(ClusterError) -> [String] {
        let layout = cluster.layout
        await archiveLastWAL()
        // Every server at once, and without a shutdown checkpoint (`immediate`): their data is
        // removed next, so the checkpoint's writes and fsyncs would be work thrown away.
        let cluster = self.cluster
        let stopped = await parallel(cluster.spec.nodes) { node throws(ClusterError) in
            guard await cluster.postmasterRuns(node) else { return }
            Console.progress("[\(node.name)] stopping")
            try await cluster.stop(node, mode: .immediate)
        }
        if let failure = ClusterError.combined(stopped.compactMap(\.1)) { throw failure }
        var kept: [String] = []
        for node in cluster.spec.nodes {
            if let pid = try await cluster.postmasterPID(node) {
                throw ClusterError("\(node.name): the server (PID \(pid)) is still running; nothing was removed for it")
            }
            kept += try await cluster.removeNodeFiles(node)
        }
        let nodeFolders = Set(cluster.spec.nodes.map { layout.nodeDir($0.name) })
        if cluster.spec.backend == .ssh {
            // With backup.repoHost: pgBackRest's files and the cluster's key go from every host
            // (the repository itself stays: backups outlive the cluster).
            let backup = cluster.spec.backup == nil ? nil : try BackupRepository(cluster: cluster)
            // On each host: the passfile, then <ssh.dir>/<cluster> when nothing else is in it.
            for host in cluster.allHosts {
                try await backup?.forget(on: host)
                try await host.remove([layout.passfile])
                kept += try await cluster.removeFolderIfEmpty(layout.serverRoot, on: host)
                    .filter { !nodeFolders.contains($0) }.map { "\(host.label): \($0)" }
                if let ssh = host as? SSHHost { await ssh.transport.closeConnection() }
            }
        }
        let here = LocalHost(serverUser: OSUser.current)
        try await here.remove(layout.clusterFiles)
        // local.dir itself goes only when nothing else is left in it; node folders that
        // hold foreign files were named above.
        kept += try await cluster.removeFolderIfEmpty(layout.root, on: here).filter { !nodeFolders.contains($0) }
        return kept
    }

    /// With `backup:` the backups outlive the cluster, and should reach its last commit:
    /// the servers stop without a shutdown checkpoint (below), which would have archived
    /// the primary's last WAL segment, so `pgbackrest check` does that first (a WAL switch,
    /// waited for until the segment is in the repository). A broken archive is said and
    /// does not hold the destroy back.
    func archiveLastWAL() async {
        guard cluster.spec.backup != nil, let repository = try? BackupRepository(cluster: cluster) else { return }
        var running = false
        for node in cluster.spec.nodes where await cluster.postmasterRuns(node) {
            running = true
            break
        }
        guard running else {
            // Nothing runs to archive from: a primary that crashed has WAL past its last
            // archived segment that only its start would archive.
            for node in cluster.spec.nodes where await cluster.hasData(node) {
                guard let control = try? await cluster.controlData(node), RewoundWAL.needsCrashRecovery(controlData: control) else { continue }
                Console.warn(
                    "\(node.name) did not shut down cleanly (a crashed primary): what it wrote after its last archived WAL segment "
                        + "is not in the backups in \(repository.place), and goes with its data now")
            }
            return
        }
        Console.progress("pgbackrest check: the last WAL to the archive in \(repository.place) (backups outlive the cluster)")
        let lost = "the backups in \(repository.place) stay, without what was written since the last segment archived"
        do throws(ClusterError) {
            try await repository.check(["--archive-timeout=20", "--log-level-console=error", "check"], what: "pgbackrest check")
        } catch {
            Console.warn(([error.message] + error.details).joined(separator: " ") + ": \(lost)")
        }
    }
}
