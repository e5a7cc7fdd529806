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
                // Standbys stopped under a synchronous mode can leave the primary short of its
                // quorum: every commit then waits. Said, with the way back (the stop is done).
                if !nodes.isEmpty, let credentials = try? ClusterAccess.credentials(spec) {
                    let stopped = lines.compactMap { $0.hasSuffix(" stopped") ? String($0.dropLast(" stopped".count)) : nil }
                    let observations = await Observer(credentials: credentials).observeAll(spec.nodes)
                    for problem in StatusReport.make(spec: spec, observations: observations).problems where problem.contains(" WAIT: ") {
                        Console.warn(
                            problem + "; start " + (stopped.isEmpty ? "a standby" : stopped.joined(separator: ", "))
                                + " again (pgcluster start), or lower the mode (pgcluster quorum)")
                    }
                }
                if json { Console.out(try JSONOutput.encode(NodeLines(lines: lines))) }
            }
        }
    }
}
