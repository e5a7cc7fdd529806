import ArgumentParser
import PGClusterKit

extension PGCluster {
    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the cluster: initdb the primary, clone every standby in parallel, start them all.",
            discussion: """
                Local backend: initdb the primary, start it, create the replication role (SCRAM) and one \
                slot per standby, pg_basebackup every standby at once, start them, wait until all stream, \
                then apply the spec's synchronous mode. Passwords the spec does not give are generated and \
                stored in local.dir/credentials.json (mode 0600). When run as root, the servers run as \
                local.osUser. Refuses (exit 2) when data already exists, unless --force.
                """)

        @OptionGroup var options: SpecOptions

        @Flag(help: "Stop the cluster's servers and erase its existing data first.")
        var force = false

        func run() async throws {
            try await execute {
                let spec = try options.load()
                let cluster = try LocalCluster(spec: spec, templates: options.templateSet())
                try await ClusterInit(cluster: cluster, force: force).run()
                let credentials = try cluster.credentials()
                let observations = await Observer(credentials: credentials).observeAll(spec.nodes)
                Console.out(StatusReport.make(spec: spec, observations: observations).table)
            }
        }
    }
}
