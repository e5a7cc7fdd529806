import ArgumentParser
import PGClusterKit

extension StopMode: ExpressibleByArgument {}

extension PGCluster {
    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop the cluster's servers (all, or the nodes named).",
            discussion: """
                Standbys stopped while the primary runs: when too few of those its \
                synchronous_standby_names lists still stream, every commit on it waits; stop then \
                says so (a warning; the stop is done) and how to go back: start them, or pgcluster quorum.
                """)

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
                var stopped: [String] = []
                for node in try NodeSelection.resolve(nodes, in: spec, primaryFirst: true) {
                    guard await cluster.isRunning(node) else {
                        Console.progress("[\(node.name)] not running")
                        lines.append("\(node.name) was not running")
                        continue
                    }
                    Console.progress("[\(node.name)] stopping (\(mode.rawValue))")
                    try await cluster.stop(node, mode: mode)
                    lines.append("\(node.name) stopped")
                    stopped.append(node.name)
                    if !json { Console.out("\(node.name) stopped") }
                }
                // Standbys stopped under a synchronous mode can leave the primary short of its
                // quorum: every commit then waits. Said, with the way back (the stop is done).
                if !nodes.isEmpty, let credentials = try? ClusterAccess.credentials(spec),
                    let primary = try? PrimaryLookup.find(await Observer(credentials: credentials).observeAll(spec.nodes)),
                    let waiting = StatusReport.commitsWait(on: primary)
                {
                    Console.warn(
                        waiting + "; start " + (stopped.isEmpty ? "a standby" : stopped.joined(separator: ", "))
                            + " again (pgcluster start), or lower the mode (pgcluster quorum)")
                }
                if json { Console.out(try JSONOutput.encode(NodeLines(lines: lines))) }
            }
        }
    }
}
