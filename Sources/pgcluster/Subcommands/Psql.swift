import ArgumentParser
import Foundation
import PGClusterKit

extension PGCluster {
    struct Psql: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Open psql on a node (the current primary by default) as the cluster's superuser.",
            discussion: """
                The password comes from local.dir/credentials.json through psql's environment, never the \
                command line. Arguments after the node go to psql, for example:
                  pgcluster psql db_1 -- -c 'SELECT pg_is_in_recovery()'
                """)

        @OptionGroup var options: SpecOptions

        @Argument(help: "The node; the current primary when left out.")
        var node: String?

        @Argument(parsing: .postTerminator, help: "Arguments for psql.")
        var psqlArguments: [String] = []

        func run() async throws {
            try await execute {
                let spec = try options.load()
                let credentials = try ClusterAccess.credentials(spec)
                let target: NodeSpec
                if let node {
                    target = try NodeSelection.resolve([node], in: spec, primaryFirst: false)[0]
                } else {
                    let observations = await Observer(credentials: credentials).observeAll(spec.nodes)
                    target = try PrimaryLookup.find(observations).node
                }
                let bindir = spec.postgres.bindir ?? "/usr/lib/postgresql/\(spec.postgres.version)/bin"
                let psql = FileManager.default.isExecutableFile(atPath: "\(bindir)/psql") ? "\(bindir)/psql" : "/usr/bin/psql"
                setenv("PGPASSWORD", credentials.superuser.password, 1)
                let argv = [psql, "-h", target.host, "-p", String(target.port), "-U", credentials.superuser.user, "-d", "postgres"] + psqlArguments
                let cArgs = argv.map { strdup($0) } + [nil]
                execv(psql, cArgs)
                throw ClusterError("cannot run \(psql): \(String(cString: strerror(errno)))", details: ["install the PostgreSQL client: apt-get install postgresql-client-15"])
            }
        }
    }
}
