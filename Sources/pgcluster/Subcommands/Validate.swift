import ArgumentParser
import PGClusterKit

extension PGCluster {
    struct Validate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the spec and print what is wrong with it.",
            discussion: "Every problem is listed with its file, line and key. Exit 65 when there is any.")

        @OptionGroup var options: SpecOptions

        func run() async throws {
            try await execute {
                let spec = try options.load()
                _ = try RenderCommand.files(Renderer(spec: spec, templates: options.templateSet()))
                let standbys = spec.standbys.map(\.name).joined(separator: ", ")
                Console.out(
                    "\(spec.file): valid: cluster \(spec.name) (\(spec.backend.rawValue)), primary \(spec.primary.name), standbys \(standbys.isEmpty ? "none" : standbys), \(spec.replication.synchronous)")
            }
        }
    }
}
