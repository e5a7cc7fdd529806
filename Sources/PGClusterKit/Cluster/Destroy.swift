import Foundation

/// `pgcluster destroy`: stops every server and removes what pgcluster created under local.dir.
public struct ClusterDestroy: Sendable {
    public let cluster: LocalCluster

    public init(cluster: LocalCluster) { self.cluster = cluster }

    public func run() async throws(ClusterError) {
        let layout = cluster.layout
        for node in cluster.spec.nodes where cluster.postmasterRuns(node) {
            Console.progress("[\(node.name)] stopping")
            do {
                try await cluster.stop(node, mode: .fast)
            } catch {
                Console.warn("\(node.name): fast stop failed, stopping immediately")
                try await cluster.stop(node, mode: .immediate)
            }
        }
        for node in cluster.spec.nodes {
            if let pid = cluster.postmasterPID(node) {
                throw ClusterError("\(node.name): the server (PID \(pid)) is still running; nothing was removed for it")
            }
            try cluster.removeNodeFiles(node)
        }
        for file in [layout.credentialsFile, layout.stateFile, layout.historyFile, layout.passfile] { unlink(file) }
        // The lock this command holds goes last; its descriptor stays valid until released.
        unlink(ClusterLock.path(for: cluster.spec))
        // local.dir itself goes only when nothing else is left in it.
        if let rest = try? FileManager.default.contentsOfDirectory(atPath: layout.root), rest.isEmpty {
            rmdir(layout.root)
        }
    }
}
