import ArgumentParser
import PGClusterKit

extension PGCluster {
    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start the cluster's servers (all, or the nodes named).")

        @OptionGroup var options: SpecOptions

        @Argument(help: "Nodes to start; all when none is named.")
        var nodes: [String] = []

        func run() async throws {
            try await execute {
                let spec = try options.load()
                let cluster = try ClusterAccess.control(spec, options)
                _ = try ClusterAccess.credentials(spec)
                for node in try NodeSelection.resolve(nodes, in: spec, primaryFirst: true) {
                    guard await cluster.hasData(node) else {
                        throw ClusterError("\(node.name) has no data",
                            details: ["create the cluster with pgcluster init, or re-clone the node with pgcluster rejoin \(node.name) --reclone"])
                    }
                    if await cluster.isRunning(node) {
                        Console.progress("[\(node.name)] already running")
                        continue
                    }
                    Console.progress("[\(node.name)] starting")
                    try await cluster.start(node)
                    Console.out("\(node.name) started")
                }
            }
        }
    }
}
