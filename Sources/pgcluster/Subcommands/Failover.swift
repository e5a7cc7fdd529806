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
                all it received; pg_promote; create slots and set synchronous_standby_names on it; \
                re-point the other standbys and confirm they stream on the new timeline.
                Refusals exit 2 and name the flag that accepts the risk.
                """)

        @OptionGroup var options: SpecOptions

        @Option(help: "Promote this standby instead of the freshest one (refused if it is behind, unless --allow-data-loss).")
        var candidate: String?

        @Flag(help: "Go ahead even when acknowledged commits could be lost (quorum not provable, candidate behind).")
        var allowDataLoss = false

        @Flag(help: "Print the plan and change nothing.")
        var dryRun = false

        @Flag(help: "Print the report as JSON.")
        var json = false

        func run() async throws {
            try await execute {
                let spec = try options.load()
                let credentials = try ClusterAccess.credentials(spec)
                let failover = PGClusterKit.Failover(
                    spec: spec, credentials: credentials, control: try ClusterAccess.control(spec, options),
                    request: .init(candidate: candidate, allowDataLoss: allowDataLoss), dryRun: dryRun,
                    templates: try options.templateSet())
                let report = try await failover.run()
                Console.out(json ? try JSONOutput.encode(report) : report.text)
            }
        }
    }
}
