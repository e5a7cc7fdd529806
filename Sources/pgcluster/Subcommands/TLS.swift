import ArgumentParser
import PGClusterKit

extension PGCluster {
    struct TLS: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "tls",
            abstract: "Manage the nodes' TLS certificates, and etcd's.",
            subcommands: [Rotate.self, Etcd.self])

        struct Rotate: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Give every node a new certificate and reload it, without a restart.",
                discussion: """
                    With tls.mode generate, each node gets a new key and certificate signed by the cluster \
                    CA in local.dir (ca.crt, ca.key), so clients that trust the CA notice nothing. With \
                    tls.mode files, the spec's tlsCert and tlsKey are installed again (after you renewed \
                    them). Each running server reloads (pg_reload_conf()): open connections and streaming \
                    continue. A node that is down gets its files and uses them when it starts, but the \
                    command then exits 1, naming it: its new certificate is not in use yet. \
                    Compose: the files go into each node's tls/ folder of the project, and each running \
                    container copies the new key into place (docker compose exec) before the reload.
                    """)

            @OptionGroup var options: SpecOptions

            @Flag(help: "Print the report as JSON.")
            var json = false

            func run() async throws {
                try await executeLocked(options, "tls rotate") { spec in
                    let cluster = try ClusterAccess.control(spec, options)
                    let report = try await TLSRotate(cluster: cluster, credentials: try ClusterAccess.credentials(spec)).run()
                    Console.out(json ? try JSONOutput.encode(report) : report.text)
                    if !report.problems.isEmpty { throw ExitCode(ExitKind.failure.rawValue) }
                }
            }
        }
    }
}
