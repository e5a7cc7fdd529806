import ArgumentParser
import PGClusterKit

extension PGCluster {
    struct Destroy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop every server of the cluster and remove its data, logs and credentials.",
            discussion: "Removes only what pgcluster created under local.dir. Needs --yes.")

        @OptionGroup var options: SpecOptions

        @Flag(help: "Yes, erase the cluster's data.")
        var yes = false

        func validate() throws {
            if !yes { throw ValidationError("destroy erases every node's data: add --yes to confirm") }
        }

        func run() async throws {
            try await execute {
                let spec = try options.load()
                let cluster = try LocalCluster(spec: spec, templates: options.templateSet())
                try await ClusterDestroy(cluster: cluster).run()
                Console.out("cluster \(spec.name) destroyed: \(cluster.layout.root) cleaned")
            }
        }
    }
}
