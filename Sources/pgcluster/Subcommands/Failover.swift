import ArgumentParser
import PGClusterKit

extension PGCluster {
    struct Failover: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The primary is gone: promote the freshest standby and re-point the others.",
            discussion: """
                Steps: observe every node (2 s each, at once); refuse if a primary answers (use \
                switchover); fence the old primary if its postmaster still runs here; freeze every \
                standby (primary_conninfo = '') so the LSNs stand still; check the quorum (with ANY/FIRST \
                k over S, |S| - k + 1 of S must answer, or acknowledged commits could be lost); choose the \
                highest received/replayed LSN (ties: priority, then name; priority 0 never); let it replay \
                all it received; set synchronous_standby_names on it while the other standbys get their \
                slots on it and stream through it; pg_promote (they follow it onto the new timeline); \
                confirm they stream on it, re-pointing any that could not be pointed before.
                Refusals exit 2 and name the flag that accepts the risk. Exit 1 when the new primary \
                cannot commit under the remembered mode (too few standbys follow): what blocks and the \
                command that fixes it are printed.
                Interrupted (killed, a node lost) at any step, it is finished by running it again: a live \
                primary with standbys still frozen, or one not yet recorded, is taken as the end of that \
                failover, and the others are re-pointed at it. It holds the cluster lock: a second \
                failover waits, then sees the first one's result.
                """)

        @OptionGroup var options: SpecOptions

        @Option(help: "Promote this standby instead of the freshest one (refused if it is behind, unless --allow-data-loss; the standbys ahead of it then cannot follow it and are left for rejoin).")
        var candidate: String?

        @Flag(help: "Go ahead even when acknowledged commits could be lost (quorum not provable, candidate behind).")
        var allowDataLoss = false

        @Flag(help: "Print the plan and change nothing.")
        var dryRun = false

        @Flag(help: "Print the report as JSON.")
        var json = false

        func run() async throws {
            try await executeLocked(options, "failover") { spec in
                let credentials = try ClusterAccess.credentials(spec)
                let failover = PGClusterKit.Failover(
                    spec: spec, credentials: credentials, control: try ClusterAccess.control(spec, options),
                    request: .init(candidate: candidate, allowDataLoss: allowDataLoss), dryRun: dryRun,
                    templates: try options.templateSet())
                let report = try await failover.run()
                Console.out(json ? try JSONOutput.encode(report) : report.text)
                // Done, but the cluster cannot commit under its mode: say so by the exit code too.
                if !report.problems.isEmpty { throw ExitCode(ExitKind.failure.rawValue) }
            }
        }
    }
}
