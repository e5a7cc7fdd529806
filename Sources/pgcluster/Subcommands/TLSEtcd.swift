import ArgumentParser
import PGClusterKit

extension PGCluster.TLS {
    struct Etcd: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "etcd",
            abstract: "Issue etcd's server certificate and pgcluster's client certificate from the cluster CA.",
            discussion: """
                Writes into --out: ca.crt (the cluster CA in local.dir, made there if there is none), \
                etcd-server.crt and etcd-server.key (0600), whose names are every --host (default: the hosts \
                of store.etcd.endpoints), and pgcluster-client.crt and pgcluster-client.key (0600). Then \
                prints the flags etcd starts with (--cert-file, --key-file, --trusted-ca-file, \
                --client-cert-auth) and the store.etcd lines of the spec (ca, cert, key). Copy ca.crt and \
                the server files to each etcd member, and the client files to each machine that runs \
                pgcluster. Existing keys are replaced only with --force. No key is printed, nothing is \
                stored in etcd.
                """)

        @OptionGroup var options: SpecOptions

        @Option(help: ArgumentHelp("The folder to write the certificates and keys into.", valueName: "dir"))
        var out: String

        @Option(
            name: .customLong("host"),
            help: ArgumentHelp("A name or address clients reach etcd by (repeat for each).", valueName: "name"))
        var hosts: [String] = []

        @Flag(help: "Replace existing keys in --out.")
        var force = false

        @Flag(help: "Print the report as JSON.")
        var json = false

        func run() async throws {
            try await execute {
                let spec = try options.load()
                let report = try EtcdCertificates.issue(
                    spec: spec, out: out, hosts: try EtcdCertificates.hosts(hosts, spec: spec), force: force)
                Console.out(json ? try JSONOutput.encode(report) : report.text)
            }
        }
    }
}
