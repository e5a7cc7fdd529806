import ArgumentParser
import PGClusterKit

extension PGCluster {
    struct DSN: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "dsn",
            abstract: "Print the libpq connection string applications use to reach the cluster.",
            discussion: """
                Lists every node; libpq tries them in order. Read-write (the default) uses \
                target_session_attrs=read-write, so it always lands on the current primary, also after \
                a failover. --read-only uses target_session_attrs=prefer-standby: reads go to a standby, \
                or to the primary when no standby answers. TCP keepalives (5 s idle, 3 probes 2 s \
                apart) end a connection to a node whose host went silent within about 11 s, so a \
                client stuck on a cut-off primary reconnects to the new one. With TLS on, \
                sslmode=verify-full and the cluster CA. No password unless --with-password.
                """)

        @OptionGroup var options: SpecOptions

        @Flag(help: "A string for reads: prefer a standby.")
        var readOnly = false

        @Flag(help: "Put the password in the string (it is otherwise taken from PGPASSWORD or ~/.pgpass).")
        var withPassword = false

        @Option(help: "Database name.")
        var database: String = "postgres"

        func run() async throws {
            try await execute {
                let spec = try options.load()
                var user = spec.superuser.user
                var password: String?
                if withPassword {
                    let credentials = try ClusterAccess.credentials(spec)
                    user = credentials.superuser.user
                    password = credentials.superuser.password
                }
                Console.out(ConnectionStrings.make(spec: spec, readOnly: readOnly, user: user, password: password, database: database))
            }
        }
    }
}
