import ArgumentParser
import PGClusterKit

extension PGCluster {
    struct History: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List past failovers, switchovers and rejoins: when, from, to, timeline, LSN, how long.")

        @OptionGroup var options: SpecOptions

        @Flag(help: "Print a JSON array.")
        var json = false

        func run() async throws {
            try await execute {
                let spec = try options.load()
                let events = try await Stores.of(spec).loadHistory()
                Console.out(json ? try JSONOutput.encode(events) : PGClusterKit.History.table(events))
            }
        }
    }
}
