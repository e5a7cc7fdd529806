import ArgumentParser
import PGClusterKit

extension PGCluster {
    struct Restart: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Restart nodes one at a time: standbys first, then the primary by switchover.",
            discussion: """
                A rolling restart, as `apply` does for settings that need one: each standby is stopped \
                (fast), started, and must stream from the primary again before the next; then the \
                primary restarts by switchover (a standby takes over and the old primary restarts as its \
                standby, nothing acknowledged is lost), or in place with --primary-update restart \
                (writes pause meanwhile; also when no standby may take over). \
                With --pending, only nodes where pg_settings shows a setting pending_restart (the \
                pendingRestart of `status --json`), for example after ALTER SYSTEM SET shared_buffers \
                and a reload. Prints the plan first; --dry-run stops there. \
                Refuses (exit 2), restarting nothing, when a named node does not answer or a standby \
                does not stream from the primary. A step that fails stops the run, naming what was \
                done and what is left.
                """)

        @OptionGroup var options: SpecOptions

        @Argument(help: "Nodes to restart; all when none is named.")
        var nodes: [String] = []

        @Flag(help: "Only nodes with a setting pending_restart.")
        var pending = false

        @Option(help: ArgumentHelp("How the primary restarts: switchover or restart (in place).", valueName: "how"))
        var primaryUpdate: PrimaryUpdate = .switchover

        @Flag(help: "Print the plan and restart nothing.")
        var dryRun = false

        @Flag(help: "Print the plan (and the result) as JSON.")
        var json = false

        func run() async throws {
            try await executeLocked(options, "restart") { spec in
                let selected = try NodeSelection.resolve(nodes, in: spec, primaryFirst: false).map(\.name)
                let restart = ClusterRestart(
                    cluster: try ClusterAccess.control(spec, options), credentials: try ClusterAccess.credentials(spec))
                let plan = try await restart.plan(selected: selected, pendingOnly: pending, primaryUpdate: primaryUpdate)
                if dryRun || plan.steps.isEmpty {
                    Console.out(json ? try JSONOutput.encode(plan) : plan.text)
                    return
                }
                if !json { Console.out(plan.text) }
                let report = try await restart.execute(plan)
                Console.out(json ? try JSONOutput.encode(report) : report.text)
            }
        }
    }
}
