import ArgumentParser
import PGClusterKit

extension PGCluster {
    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the cluster: initdb the primary, clone every standby (all hosts at once), start them all.",
            discussion: """
                Local and ssh backends: initdb the primary, start it, create the replication role (SCRAM) \
                and one slot per standby (holding WAL from then on), pg_basebackup every standby, all hosts \
                at once (on a host with more than two new standbys, one pg_basebackup, which the others \
                there copy), start them, wait until all stream, then apply the spec's synchronous mode. \
                With backup:, the pgBackRest stanza is created meanwhile (it needs only the primary); a \
                repository that already holds the cluster's stanza (a cluster of that name destroyed \
                before: destroy keeps backups) is refused before anything is made (exit 1), leaving no local.dir behind. \
                initdb makes WAL segments of postgres.walSegmentSize (4 MB by default). \
                Passwords the spec does not give are generated (32 random characters, stored in the \
                servers as SCRAM secrets of 64 iterations: a login costs ~5 ms less CPU than with \
                PostgreSQL's 4096; a spec's password keeps 4096) and \
                stored in local.dir/credentials.json (mode 0600). When run as root, the servers run as \
                local.osUser. Refuses (exit 2) when data already exists, unless --force. Ends with the \
                status table (--json: the document `status --json` prints).
                Compose backend: renders the project into local.dir/compose with the stored \
                passwords, runs `docker compose up -d`, waits until every standby has cloned the \
                primary and streams, then applies the synchronous mode.
                """)

        @OptionGroup var options: SpecOptions

        @Flag(help: "Stop the cluster's servers and erase its existing data first.")
        var force = false

        @Flag(help: "Print the result as JSON.")
        var json = false

        func run() async throws {
            try await executeLocked(options, "init") { spec in
                if spec.backend == .compose {
                    let cluster = ComposeCluster(spec: spec, templates: try options.templateSet())
                    try await ComposeInit(cluster: cluster, force: force).run()
                } else {
                    let cluster = try HostCluster(spec: spec, templates: options.templateSet())
                    try await ClusterInit(cluster: cluster, force: force).run()
                }
                let credentials = try ClusterAccess.credentials(spec)
                let observations = await Observer(credentials: credentials).observeAll(spec.nodes)
                let report = StatusReport.make(spec: spec, observations: observations)
                // The same document as `status --json`.
                Console.out(json ? try JSONOutput.encode(report) : report.table)
            }
        }
    }
}
