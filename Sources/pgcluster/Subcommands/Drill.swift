import ArgumentParser
import PGClusterKit

extension Drill.Victim: ExpressibleByArgument {}

extension PGCluster {
    struct Drill: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Prove durability and measure recovery: write, kill -9, fail over, count what was lost.",
            discussion: """
                On a running, healthy cluster (local, or compose: the victim's container is killed with \
                `docker compose kill -s SIGKILL`): sets the synchronous mode, creates the table \
                pgcluster_drill, and runs N writers that insert one row per transaction through the \
                read-write DSN, remembering every id whose COMMIT returned. After a warm-up it kills the \
                victim with SIGKILL, runs the same failover as `pgcluster failover` when the primary died, \
                keeps writing, and reports: acknowledged, present on the new primary, lost (acknowledged \
                but missing, listed), failed writes, time from the kill to the first acknowledged write, \
                the longest gap between writes, and the failover's step timings. With --rounds R the old \
                primary is rejoined and it all runs again. When the failover refuses (say, the quorum \
                cannot be proven), the killed nodes are started again and the refusal is reported.

                With --restore --into SCRATCH (a spec with backup: on this cluster): writers run under                 ANY 1 while a full backup is taken, stop, the primary's clock is noted, more writers run,                 and the cluster is restored to the noted time into the scratch spec (then destroyed).                 Reports the rows acknowledged before the time, those present after the restore, and the                 rows written after it that came back (must be none); exits 1 on any difference.
                """)

        @OptionGroup var options: SpecOptions

        @Option(help: "Concurrent writers.")
        var clients: Int = 4

        @Option(help: "Seconds a round lasts (warm-up 40%, after the failover 60%).")
        var duration: Double = 4

        @Option(help: "Synchronous mode for the drill: async, any (ANY 1) or first (FIRST 1).")
        var mode: String = "any"

        @Option(help: "What to kill: primary, standby or primary+standby.")
        var kill: PGClusterKit.Drill.Victim = .primary

        @Option(help: "Kill, fail over and rejoin this many times.")
        var rounds: Int = 1

        @Flag(help: "Keep the drill table with the last round's rows (it is dropped otherwise).")
        var keepTable = false

        @Flag(help: "Print the report as JSON.")
        var json = false

        @Flag(help: "Prove point-in-time recovery instead of failover (needs --into).")
        var restore = false

        @Option(help: ArgumentHelp("With --restore: the scratch spec to restore into (destroyed afterwards).", valueName: "spec"))
        var into: String?

        /// Once needed for backends other than local; every backend runs the drill now.
        @Flag(help: .hidden)
        var yes = false

        func validate() throws {
            if clients < 1 || clients > 64 { throw ValidationError("--clients must be from 1 to 64") }
            if duration < 1 { throw ValidationError("--duration must be at least 1 second") }
            if rounds < 1 || rounds > 100 { throw ValidationError("--rounds must be from 1 to 100") }
            if !["async", "any", "first"].contains(mode) { throw ValidationError("--mode must be async, any or first") }
            if restore != (into != nil) { throw ValidationError("--restore and --into go together") }
        }

        func run() async throws {
            if restore {
                return try await restoreDrill()
            }
            try await executeLocked(options, "drill") { spec in
                let drill = PGClusterKit.Drill(
                    cluster: try ClusterAccess.control(spec, options), credentials: try ClusterAccess.credentials(spec), clients: clients, duration: duration,
                    mode: SynchronousMode(mode: mode, count: 1)!, victim: kill, rounds: rounds)
                var configured = drill
                configured.keepTable = keepTable
                let report = try await configured.run()
                Console.out(json ? try JSONOutput.encode(report) : report.text)
            }
        }

        func restoreDrill() async throws {
            try await executeLocked(options, "drill --restore") { spec in
                var scratchOptions = options
                scratchOptions.spec = into!
                let scratchSpec = try scratchOptions.load()
                let drill = RestoreDrill(
                    cluster: try HostCluster(spec: spec, templates: options.templateSet()),
                    scratch: try HostCluster(spec: scratchSpec, templates: options.templateSet()),
                    credentials: try ClusterAccess.credentials(spec), clients: clients, duration: duration)
                let report = try await drill.run()
                Console.out(json ? try JSONOutput.encode(report) : report.text)
                if !report.exact { throw ExitCode(ExitKind.failure.rawValue) }
            }
        }
    }
}
