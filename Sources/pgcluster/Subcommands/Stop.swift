import ArgumentParser
import PGClusterKit

extension PGCluster {
    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Not yet implemented.")
        @OptionGroup var options: SpecOptions
        func run() async throws {
            try await execute { throw ClusterError("not yet implemented") }
        }
    }
}
