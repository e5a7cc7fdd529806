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
        for node in cluster.spec.nodes where await cluster.postmasterRuns(node) {
            Console.progress("[\(node.name)] stopping")
            do {
                try await cluster.stop(node, mode: .fast)
            } catch {
                Console.warn("\(node.name): fast stop failed, stopping immediately")
                try await cluster.stop(node, mode: .immediate)
            }
        }
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
}
