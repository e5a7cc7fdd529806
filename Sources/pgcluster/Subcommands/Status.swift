import ArgumentParser
import Foundation
import PGClusterKit

extension PGCluster {
    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show each node as the live servers report it; exit 1 when the cluster is degraded.",
            discussion: """
                One row a node: role, state, timeline, LSNs, lag in bytes and seconds, sync state and \
                upstream, and with TLS the days left on each node's certificate (a warning under 30). Every node is asked at once with a short timeout, so a dead node costs at most \
                that. The cluster is degraded when a node is down, a standby does not stream from the \
                primary, or there is not exactly one primary. A node that does not answer in time is \
                "no answer", not "down": down is proven (the connection was refused). Exit 2 when two \
                nodes answer as read-write primaries (the one on the newest timeline is named). With \
                archiving on, an archive: line gives the primary's pg_stat_archiver (last file, counts), \
                and an archive_command that fails is a warning (WAL piles up in pg_wal, point-in-time \
                recovery ends at the last file archived), not a degraded cluster; --json has it as \
                archiver on each node. A standby that streams from the primary but is missing from its \
                synchronous_standby_names (a rejoin or start stopped before listing it) is a warning \
                naming the rejoin that lists it.
                """)

        @OptionGroup var options: SpecOptions

        @Flag(help: "Print one JSON object (the stable form for scripts).")
        var json = false

        @Option(help: "Seconds each node may take to answer (more than 0).")
        var timeout: Double = 2

        func validate() throws {
            guard timeout > 0, timeout.isFinite else { throw ValidationError("--timeout must be more than 0 seconds (got \(timeout))") }
        }

        func run() async throws {
            try await execute {
                let spec = try options.load()
                let credentials = try ClusterAccess.credentials(spec)
                let observer = Observer(credentials: credentials, timeout: timeout, pendingRestart: true)
                let observations = await observer.observeAll(spec.nodes)
                var report = StatusReport.make(spec: spec, observations: observations)
                if spec.tls.enabled {
                    // Only the nodes that answered: a dead node must not cost the timeout twice.
                    report.addCertificates(await observer.certificates(observations.filter(\.reachable).map(\.node)))
                }
                // What pgcluster remembers must be readable, or its next failover could not trust it.
                do throws(ClusterError) {
                    let state = try await ClusterRecord.load(spec: spec)
                    report.paused = state?.paused ?? false
                    if let state { report.warnUnlisted(members: state.synchronous.standbys ?? spec.nodes.map(\.name)) }
                } catch {
                    report.problems.append(([error.message] + error.details).joined(separator: "; "))
                }
                if json {
                    for warning in report.warnings { Console.warn(warning) }
                    Console.out(try JSONOutput.encode(report))
                } else {
                    Console.out(report.table)
                }
                // Two read-write primaries is a split brain: exit 2, as a refusal, not 1.
                if report.splitBrain { throw ExitCode(ExitKind.refused.rawValue) }
                if !report.healthy { throw ExitCode(ExitKind.failure.rawValue) }
            }
        }
    }
}
