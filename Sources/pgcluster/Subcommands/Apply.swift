import ArgumentParser
import PGClusterKit

extension PrimaryUpdate: ExpressibleByArgument {}

extension PGCluster {
    struct Apply: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make the live cluster match the edited spec: add and remove nodes, change settings, the synchronous mode.",
            discussion: """
                Compares the spec with the live servers and what pgcluster recorded, prints the plan, then \
                carries it out step by step under the cluster lock, each step timed:
                  - a node new in the spec is cloned from the primary (slot first), started, confirmed \
                streaming, then listed in synchronous_standby_names;
                  - a node gone from the spec leaves synchronous_standby_names first, is stopped, its slot \
                dropped and its data removed (removing the primary is refused: switchover first); a node \
                whose address changed, or a new name at a member's address, is refused: apply neither \
                moves nor renames a node;
                  - postgres.parameters are first checked by PostgreSQL itself (postgres -C on a \
                node): an unknown name or a value it refuses exits 65 with its words, nothing written;
                  - changed postgres.parameters are written and reloaded; what PostgreSQL marks \
                pending_restart is applied by a rolling restart: standbys one at a time, each streaming \
                again before the next, then the primary by switchover (or in place with \
                --primary-update restart). max_connections, max_worker_processes, max_wal_senders, \
                max_prepared_transactions and max_locks_per_transaction go up on standbys first and down \
                on the primary first (the primary then restarts in place);
                  - a changed replication.synchronous is set as `quorum` does, and verified.
                On backend compose it does the settings (written into the project's node folders, \
                which the containers mount) and the synchronous mode; adding or removing nodes is \
                refused there (exit 2).
                With backup:, after its steps it makes the pgBackRest stanza when the repository has \
                none, so a cluster apply turned archiving on for archives at once, before any backup.
                Refuses (exit 2), changing nothing, when a node that stays does not answer or does not \
                stream, or when the synchronous count could not be met (unless --force). A step that \
                fails stops the run; the message says what was done and what is left, and apply run \
                again finishes.
                """)

        @OptionGroup var options: SpecOptions

        @Flag(help: "Print the plan and change nothing.")
        var dryRun = false

        @Option(help: ArgumentHelp("How the primary restarts when a setting needs it: switchover or restart (in place).", valueName: "how"))
        var primaryUpdate: PrimaryUpdate = .switchover

        @Flag(help: "Remove standbys even when fewer than the synchronous count would remain (commits wait meanwhile).")
        var force = false

        @Flag(help: "Print the plan (and the result) as JSON.")
        var json = false

        func run() async throws {
            try await executeLocked(options, "apply") { spec in
                let apply = try PGClusterKit.Apply(
                    spec: spec, credentials: try ClusterAccess.credentials(spec), templates: try options.templateSet())
                let plan = try ApplyPlan.make(
                    spec: spec, facts: try await apply.gather(), primaryUpdate: primaryUpdate, force: force)
                if dryRun || plan.steps.isEmpty {
                    Console.out(json ? try JSONOutput.encode(plan) : plan.text)
                    return
                }
                if !json { Console.out(plan.text) }
                let report = try await apply.execute(plan)
                Console.out(json ? try JSONOutput.encode(report) : report.text)
            }
        }
    }
}
