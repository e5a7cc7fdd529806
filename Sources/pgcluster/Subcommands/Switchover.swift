import ArgumentParser
import PGClusterKit

extension PGCluster {
    struct Switchover: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Planned change of primary with a live primary: nothing lost, the old primary follows the new one.",
            discussion: """
                Checkpoint the primary; ready the candidate while the primary still runs (its \
                synchronous_standby_names and replication slots, and, when the primary's commits do not \
                need them, the other standbys stream through it); stop the primary cleanly, wait until the \
                candidate has replayed its shutdown checkpoint, promote it (the standbys that stream through \
                it follow by themselves, the rest are re-pointed), and start the old primary as a standby of \
                the new one (no rewind needed). Without --candidate: the streaming standby with the most WAL \
                replayed (ties: priority, then name).
                """)

        @OptionGroup var options: SpecOptions

        @Option(help: "The standby to promote.")
        var candidate: String?

        @Flag(help: "Print the report as JSON.")
        var json = false

        func run() async throws {
            try await executeLocked(options, "switchover") { spec in
                let cluster = try ClusterAccess.control(spec, options)
                let report = try await PGClusterKit.Switchover(
                    cluster: cluster, credentials: try ClusterAccess.credentials(spec), candidate: candidate
                ).run()
                Console.out(json ? try JSONOutput.encode(report) : report.text)
                if !report.problems.isEmpty { throw ExitCode(ExitKind.failure.rawValue) }
            }
        }
    }
}
