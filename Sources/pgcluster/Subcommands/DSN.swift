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
                sslmode=verify-full and the cluster CA. No password unless --with-password: give it \
                through PGPASSWORD or a passfile (~/.pgpass). --app gives the spec's application role \
                (app.user, app.database; its password is in local.dir/credentials.json) instead of the \
                superuser.
                """)

        @OptionGroup var options: SpecOptions

        @Flag(name: [.long, .customLong("ro")], help: "A string for reads: prefer a standby.")
        var readOnly = false

        @Flag(help: "The application role and database of the spec's app: section, not the superuser.")
        var app = false

        @Flag(help: "Put the password in the string (it is otherwise taken from PGPASSWORD or ~/.pgpass).")
        var withPassword = false

        @Option(help: "Database name (default: postgres; with --app, app.database).")
        var database: String?

        @Flag(help: "Print both strings (readWrite, readOnly) with the user and database as JSON.")
        var json = false

        func run() async throws {
            try await execute {
                let spec = try options.load()
                var user = spec.superuser.user
                var defaultDatabase = "postgres"
                if app {
                    guard let settings = spec.app else {
                        throw ClusterError("--app: \(spec.file) has no app: section (app: {user: NAME, database: NAME})", exitCode: .usage)
                    }
                    user = settings.user
                    defaultDatabase = settings.database
                }
                var password: String?
                if withPassword {
                    let credentials = try ClusterAccess.credentials(spec)
                    if app {
                        guard let login = credentials.app, login.user == user else {
                            throw ClusterError(
                                "no password for the application role \(user) in local.dir/credentials.json: the cluster was made before app: was in the spec")
                        }
                        password = login.password
                    } else {
                        user = credentials.superuser.user
                        password = credentials.superuser.password
                    }
                }
                let name = database ?? defaultDatabase
                let make = { (readOnly: Bool) in
                    ConnectionStrings.make(spec: spec, readOnly: readOnly, user: user, password: password, database: name)
                }
                if json {
                    Console.out(
                        try JSONOutput.encode(
                            ["readWrite": make(false), "readOnly": make(true), "user": user, "database": name]))
                } else {
                    Console.out(make(readOnly))
                }
            }
        }
    }
}
