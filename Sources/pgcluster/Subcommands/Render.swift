import ArgumentParser
import Foundation
import PGClusterKit

extension PGCluster {
    struct Render: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write each node's configuration files (and, for compose, a docker-compose project).",
            discussion: """
                For each node: postgresql.conf and pg_hba.conf; for standbys also standby.signal and \
                standby.conf (primary_conninfo, primary_slot_name). A compose spec also gets \
                docker-compose.yml, its scripts and a .env with the passwords (mode 0600); the \
                passwords are also stored in local.dir/credentials.json and the folder is put on record \
                there, so every command drives the project once `docker compose up -d` started it. \
                With TLS (tls.mode generate, the default) each compose node's folder gets tls/server.crt, \
                tls/server.key (0600) and tls/ca.crt, signed by the cluster CA in local.dir (ca.crt, \
                ca.key: the key never enters the project); certificates still valid are kept. \
                With watch.http, also haproxy.cfg: a read-write frontend on routing.rw (5000) checked \
                by OPTIONS /primary and a read-only one on routing.ro (5001) checked by /replica, \
                against the endpoints of `pgcluster watch` (run it with: haproxy -f haproxy.cfg). \
                A compose spec with compose.watcher: true also gets the service pgcluster-watch in the \
                profile `watch` (docker compose --profile watch up -d), and watcher.d/ with what it runs: \
                this pgcluster, the docker CLI and compose plugin, and their libraries, linked or copied.
                Files are written atomically and only when their contents change.
                """)

        @OptionGroup var options: SpecOptions

        @Option(help: ArgumentHelp("Folder to write into.", valueName: "dir"))
        var out: String = "rendered"

        @Flag(help: "Show what would be written, and change nothing.")
        var dryRun = false

        func run() async throws {
            try await execute {
                let spec = try options.load()
                let renderer = Renderer(spec: spec, templates: try options.templateSet())
                let folder = URL(fileURLWithPath: out).standardizedFileURL.path
                let plan = try RenderCommand.plan(renderer, outputDirectory: folder)
                let files = plan.files + (try RenderCommand.certificates(spec, outputDirectory: folder, dryRun: dryRun))
                let outcomes = try FileWriter(dryRun: dryRun).write(files, under: folder)
                    + RenderCommand.placeWatcher(spec, outputDirectory: folder, dryRun: dryRun)
                if !dryRun { try RenderCommand.remember(plan, spec: spec, outputDirectory: folder) }
                for outcome in outcomes {
                    let verb = dryRun && outcome.change != .unchanged ? "would be \(outcome.change.rawValue)" : outcome.change.rawValue
                    Console.out("\(verb.padding(toLength: 20, withPad: " ", startingAt: 0)) \(outcome.path)")
                }
                let changed = outcomes.filter { $0.change != .unchanged }.count
                Console.progress("\(changed) of \(outcomes.count) files \(dryRun ? "would change" : "changed") under \(out)")
            }
        }
    }
}
