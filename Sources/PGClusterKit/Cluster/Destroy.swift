import Foundation

/// `pgcluster destroy`: stops every server and removes what pgcluster created under
/// local.dir — and only that: a file it did not create (beside a node's data, or in a
/// local.dir shared with something else) is kept and named.
public struct ClusterDestroy: Sendable {
    public let cluster: LocalCluster

    public init(cluster: LocalCluster) { self.cluster = cluster }

    /// Returns the paths kept because pgcluster did not create them.
    @discardableResult
    public func run() async throws(ClusterError) -> [String] {
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
        var kept: [String] = []
        for node in cluster.spec.nodes {
            if let pid = cluster.postmasterPID(node) {
                throw ClusterError("\(node.name): the server (PID \(pid)) is still running; nothing was removed for it")
            }
            kept += try cluster.removeNodeFiles(node)
        }
        for file in layout.clusterFiles { try LocalCluster.remove(file) }
        // local.dir itself goes only when nothing else is left in it; node folders that
        // hold foreign files were named above.
        let nodeFolders = Set(cluster.spec.nodes.map { layout.nodeDir($0.name) })
        kept += LocalCluster.removeFolderIfEmpty(layout.root).filter { !nodeFolders.contains($0) }
        return kept
    }
}
