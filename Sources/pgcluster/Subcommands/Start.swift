import ArgumentParser
import PGClusterKit

extension PGCluster {
    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start the cluster's servers (all, or the nodes named).",
            discussion: """
                Never makes a second primary: while a primary answers, every other node starts as its \
                standby and must stream from it, or it is stopped again and `pgcluster rejoin NODE` is \
                named (a primary deposed by a failover cannot follow until rewound). With no primary up, \
                the recorded primary starts first, unless another node is on a newer timeline; the other \
                nodes start as its standbys. With backup: and a repository host that does not answer, a \
                standby starts without restore_command and gets it back once it streams (PostgreSQL \
                would otherwise wait out ssh's connect timeout for every WAL file it replays). \
                Standbys started beside the live primary are listed in its synchronous_standby_names \
                again (the remembered mode, as rejoin does), and start with at least the primary's \
                max_connections, max_worker_processes, max_wal_senders, max_prepared_transactions and \
                max_locks_per_transaction while a lower value in the spec waits for apply. \
                A node whose rejoin stopped during pg_rewind, or whose copy (pg_basebackup) stopped \
                before it was set to follow, is not started (exit 2): `pgcluster rejoin NODE` copies it \
                afresh.
                """)

        @OptionGroup var options: SpecOptions

        @Argument(help: "Nodes to start; all when none is named.")
        var nodes: [String] = []

        @Flag(help: "Print the result as JSON.")
        var json = false

        func run() async throws {
            try await executeLocked(options, "start") { spec in
                let control = try ClusterAccess.control(spec, options)
                let nodes = try NodeSelection.resolve(nodes, in: spec, primaryFirst: false)
                let lines = try await StartNodes(control: control, credentials: try ClusterAccess.credentials(spec)).run(nodes)
                if json {
                    Console.out(try JSONOutput.encode(NodeLines(lines: lines)))
                } else {
                    for line in lines { Console.out(line) }
                }
            }
        }
    }
}
