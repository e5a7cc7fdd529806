import ArgumentParser
import Foundation
import PGClusterKit

extension PGCluster {
    struct Psql: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Open psql on a node (the current primary by default) as the cluster's superuser.",
            discussion: """
                The password comes from local.dir/credentials.json through psql's environment, never the \
                command line. With TLS on, psql verifies the server as pgcluster does (sslmode=verify-full, \
                the cluster CA). Arguments after the node go to psql, for example:
                  pgcluster psql db_1 -- -c 'SELECT pg_is_in_recovery()'
                """)

        @OptionGroup var options: SpecOptions

        @Argument(help: "The node; the current primary when left out.")
        var node: String?

        @Argument(parsing: .postTerminator, help: "Arguments for psql.")
        var psqlArguments: [String] = []

        func run() async throws {
            try await execute { try await openPsql() }
        }

        func openPsql() async throws {
            let spec = try options.load()
            let credentials = try ClusterAccess.credentials(spec)
            let target = try await targetNode(spec, credentials)
            let bindir = spec.postgres.bindir ?? "/usr/lib/postgresql/\(spec.postgres.version)/bin"
            let psql = FileManager.default.isExecutableFile(atPath: "\(bindir)/psql") ? "\(bindir)/psql" : "/usr/bin/psql"
            let argv = [psql, "-h", target.host, "-p", String(target.port), "-U", credentials.superuser.user, "-d", "postgres"]
                + psqlArguments
            if let rootCertificate = credentials.rootCertificate {
                setenv("PGSSLMODE", "verify-full", 1)
                setenv("PGSSLROOTCERT", rootCertificate, 1)
            }
            let failure = replaceProcess(with: argv, password: credentials.superuser.password)
            throw ClusterError(
                "cannot run \(psql): \(failure)", details: ["install the PostgreSQL client: apt-get install postgresql-client-15"])
        }

        func targetNode(_ spec: ClusterSpec, _ credentials: Credentials) async throws -> NodeSpec {
            if let node { return try NodeSelection.resolve([node], in: spec, primaryFirst: false)[0] }
            let observations = await Observer(credentials: credentials).observeAll(spec.nodes)
            return try PrimaryLookup.find(observations).node
        }
    }
}

/// Replaces this process with `argv` (execv), the password passed in PGPASSWORD. Returns
/// only on failure, with the reason. Kept out of async code: the optimizer crashed on an
/// execv inside an async closure (Swift 6.3.1, release builds).
func replaceProcess(with argv: [String], password: String) -> String {
    setenv("PGPASSWORD", password, 1)
    // psql gets the signals a shell would give it: this thread's mask (the runtime blocks
    // most signals in its threads) and an ignored SIGPIPE would pass through execv, and
    // Ctrl-C could no longer cancel a query nor SIGTERM end psql.
    var none = sigset_t()
    sigemptyset(&none)
    pthread_sigmask(SIG_SETMASK, &none, nil)
    for signal in [SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE] { Glibc.signal(signal, SIG_DFL) }
    let cArgs = argv.map { strdup($0) } + [nil]
    execv(argv[0], cArgs)
    return String(cString: strerror(errno))
}
