import ArgumentParser
import PGClusterKit

extension StopMode: ExpressibleByArgument {}

extension PGCluster {
    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop the cluster's servers (all, or the nodes named).")

        @OptionGroup var options: SpecOptions

        @Option(help: "pg_ctl shutdown mode: smart, fast (the default: roll back open transactions) or immediate (no checkpoint, like a crash).")
        var mode: StopMode = .fast

        @Argument(help: "Nodes to stop; all when none is named.")
        var nodes: [String] = []

        @Flag(help: "Print the result as JSON.")
        var json = false

        func run() async throws {
            try await executeLocked(options, "stop") { spec in
                let cluster = try ClusterAccess.control(spec, options)
                var lines: [String] = []
                for node in try NodeSelection.resolve(nodes, in: spec, primaryFirst: true) {
                    guard await cluster.isRunning(node) else {
                        Console.progress("[\(node.name)] not running")
                        lines.append("\(node.name) was not running")
                        continue
                    }
                    Console.progress("[\(node.name)] stopping (\(mode.rawValue))")
                    try await cluster.stop(node, mode: mode)
                    lines.append("\(node.name) stopped")
                    if !json { Console.out("\(node.name) stopped") }
                }
                if json { Console.out(try JSONOutput.encode(NodeLines(lines: lines))) }
            }
        }
    }
}
