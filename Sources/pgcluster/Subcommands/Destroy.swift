import ArgumentParser
import PGClusterKit

extension PGCluster {
    struct Destroy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop every server of the cluster and remove its data, logs and credentials.",
            discussion: """
                Removes only what pgcluster created under local.dir (data folders, logs, sockets, \
                credentials, pgpass, state and history); any other file there is kept and named. Needs --yes.
                """)

        @OptionGroup var options: SpecOptions

        @Flag(help: "Yes, erase the cluster's data.")
        var yes = false

        func validate() throws {
            if !yes { throw ValidationError("destroy erases every node's data: add --yes to confirm") }
        }

        func run() async throws {
            try await executeLocked(options, "destroy") { spec in
                var kept: [String] = []
                if spec.backend == .compose {
                    try await ComposeCluster(spec: spec, templates: try options.templateSet()).destroy()
                } else {
                    kept = try await ClusterDestroy(cluster: try HostCluster(spec: spec, templates: options.templateSet())).run()
                }
                if kept.isEmpty {
                    Console.out("cluster \(spec.name) destroyed: \(spec.local.dir) cleaned")
                } else {
                    Console.out("cluster \(spec.name) destroyed; kept \(kept.count) path(s) pgcluster did not create:")
                    Console.out(kept.map { "  " + $0 }.joined(separator: "\n"))
                }
            }
        }
    }
}
