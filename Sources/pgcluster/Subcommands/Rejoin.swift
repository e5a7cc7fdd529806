import ArgumentParser
import PGClusterKit

extension PGCluster {
    struct Rejoin: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Bring a node back as a standby of the current primary (pg_rewind, or a fresh copy).",
            discussion: """
                Stops the node, runs pg_rewind against the current primary when its timeline forked \
                (a failed old primary), or pg_basebackup with --reclone, when it has no data, or when \
                rewind fails; writes its standby settings, starts it, confirms it streams, and lists it \
                again in synchronous_standby_names per the remembered mode. The report says what the \
                rewind discarded: the range of the old primary's WAL past the fork, and the transactions \
                committed and prepared there, counted with pg_waldump before pg_rewind removes them \
                (--json: rewound.commits, rewound.prepared). A node whose earlier pg_rewind did not \
                finish (a rejoin stopped before the node was set to follow) is copied afresh, never \
                rewound again: a second pg_rewind could leave it silently different from its primary; \
                so is a node whose earlier copy (pg_basebackup) stopped before it was set to follow.
                A node that still answers as a primary beside another primary is refused (exit 2) unless \
                --force: rejoining it discards the writes it took since the two parted. The only primary \
                is never rejoined. A standby that already streams from the primary is refused (exit 2, \
                nothing to do) unless an interrupted step left something undone, which rejoin then \
                finishes: a rejoin or start stopped before listing it in synchronous_standby_names \
                (status warns), or, with backup:, a failover or switchover that left it without \
                restore_command (status says so). With backup: and a \
                repository host that does not answer, the node starts without restore_command and gets \
                it back once it streams.
                """)

        @OptionGroup var options: SpecOptions

        @Argument(help: "The node to bring back.")
        var node: String

        @Flag(help: "Erase its data and copy it afresh from the primary with pg_basebackup.")
        var reclone = false

        @Flag(help: "Rejoin it even though it still accepts writes as a primary beside another primary; its writes since they parted are discarded.")
        var force = false

        @Flag(help: "Print the report as JSON.")
        var json = false

        func run() async throws {
            try await executeLocked(options, "rejoin") { spec in
                let cluster = try ClusterAccess.control(spec, options)
                let target = try NodeSelection.resolve([node], in: spec, primaryFirst: false)[0]
                let report = try await PGClusterKit.Rejoin(
                    cluster: cluster, credentials: try ClusterAccess.credentials(spec), node: target, reclone: reclone,
                    force: force
                ).run()
                Console.out(json ? try JSONOutput.encode(report) : report.text)
                if !report.problems.isEmpty { throw ExitCode(ExitKind.failure.rawValue) }
            }
        }
    }
}
