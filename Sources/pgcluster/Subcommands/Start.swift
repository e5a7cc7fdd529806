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
                let cluster = try LocalCluster(spec: spec, templates: options.templateSet())
                _ = try cluster.credentials()
                for node in try NodeSelection.resolve(nodes, in: spec, primaryFirst: true) {
                    guard cluster.hasData(node) else {
                        throw ClusterError("\(node.name) has no data at \(cluster.layout.dataDir(node.name))",
                            details: ["create the cluster with pgcluster init, or re-clone the node with pgcluster rejoin \(node.name) --reclone"])
                    }
                    if cluster.isRunning(node) {
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
