import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

enum ScratchError: Error, CustomStringConvertible {
    case noPostgresUser
    var description: String { "the tests run as root, and there is no 'postgres' OS user to run PostgreSQL as" }
}

/// A scratch PostgreSQL 15 data directory, owned by the `postgres` OS user when the
/// tests run as root (PostgreSQL refuses to run as root). Every program runs with
/// an argument array, never through a shell.
struct ScratchServer {
    static let bindir = "/usr/lib/postgresql/15/bin"
    static var available: Bool { FileManager.default.isExecutableFile(atPath: "\(bindir)/initdb") }

    let folder: String
    let password = "pgcluster-test-superuser"
    /// The server's OS user when running as root; nil when the tests run as an ordinary user.
    let owner: OSUser?
    var dataDir: String { "\(folder)/data" }
    var logFile: String { "\(folder)/postgres.log" }

    init(_ label: String) throws {
        folder = try TestSupport.makeTempDir(label)
        if OSUser.isRoot {
            // PostgreSQL refuses to run as root: run it as the `postgres` OS user.
            guard let user = OSUser.named("postgres") else {
                TestSupport.remove(folder)
                throw ScratchError.noPostgresUser
            }
            owner = user
        } else {
            owner = nil
        }
        chmod(folder, 0o700)
        own(folder)
    }

    /// Gives `path` to the server's OS user (when running as root).
    func own(_ path: String) {
        if let owner { _ = chown(path, owner.uid, owner.gid) }
    }

    func write(_ text: String, to path: String, mode: Int = 0o600) throws {
        try TestSupport.write(text, to: path)
        chmod(path, mode_t(mode))
        own(path)
    }

    func makeDirectory(_ path: String) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        chmod(path, 0o700)
        var current = path
        while current.hasPrefix(folder + "/") {
            own(current)
            current = (current as NSString).deletingLastPathComponent
        }
    }

    /// Runs a PostgreSQL program as the server's OS user.
    @discardableResult
    func run(_ program: String, _ arguments: [String]) throws -> TestSupport.ProcessOutcome {
        let binary = "\(Self.bindir)/\(program)"
        let environment = ["LC_ALL": "C", "LANG": "C"]
        if let owner {
            return try TestSupport.run(
                "/usr/bin/setpriv",
                ["--reuid=\(owner.uid)", "--regid=\(owner.gid)", "--init-groups", "--", binary] + arguments,
                in: folder, environment: environment)
        }
        return try TestSupport.run(binary, arguments, in: folder, environment: environment)
    }

    func initdb() throws {
        let pwfile = "\(folder)/pwfile"
        try write(password + "\n", to: pwfile)
        let outcome = try run(
            "initdb", ["-D", dataDir, "-U", "postgres", "--auth=scram-sha-256", "--pwfile=\(pwfile)", "--no-sync"])
        try #require(outcome.status == 0, "initdb failed: \(outcome.stderr)")
    }

    /// Puts rendered files into the data directory, in place of initdb's.
    func install(_ files: [String: String]) throws {
        for (name, text) in files {
            try write(text, to: "\(dataDir)/\(name)")
        }
    }

    /// `postgres -C NAME`: the value the server would run with, after reading every
    /// configuration file. Fails the test when the server refuses the configuration.
    func setting(_ name: String) throws -> String {
        let outcome = try run("postgres", ["-D", dataDir, "-C", name])
        try #require(outcome.status == 0, "postgres -C \(name) failed: \(outcome.stderr)")
        return outcome.stdout.trimmingCharacters(in: .newlines)
    }

    func start() throws {
        let outcome = try run("pg_ctl", ["-D", dataDir, "-l", logFile, "-w", "-t", "60", "start"])
        let log = (try? String(contentsOfFile: logFile, encoding: .utf8)) ?? ""
        try #require(outcome.status == 0, "pg_ctl start failed: \(outcome.stderr)\n\(log)")
    }

    /// Stops the server if it runs, and removes the folder. Called from `defer`.
    func tearDown() {
        if FileManager.default.fileExists(atPath: "\(dataDir)/postmaster.pid") {
            _ = try? run("pg_ctl", ["-D", dataDir, "-m", "immediate", "-w", "stop"])
        }
        TestSupport.remove(folder)
    }
}

/// Real PostgreSQL 15 reads what pgcluster renders, with the values we mean.
@Suite(
    "PostgreSQL accepts the rendered configuration", .serialized,
    .enabled(if: ScratchServer.available, "needs PostgreSQL 15 in /usr/lib/postgresql/15/bin"))
struct PostgresAcceptsConfigTests {
    /// examples/any1.yaml, moved into `folder` and onto ports from `firstPort` (21900-21999).
    static func any1(in folder: String, firstPort: Int) throws -> ClusterSpec {
        var text = try String(contentsOfFile: TestSupport.examplePath("any1.yaml"), encoding: .utf8)
        #expect(text.contains("dir: /tmp/pgcluster-any1"))
        text = text.replacingOccurrences(of: "dir: /tmp/pgcluster-any1", with: "dir: \(folder)/cluster")
        for (i, port) in [15442, 15443, 15444].enumerated() {
            text = text.replacingOccurrences(of: "port: \(port)", with: "port: \(firstPort + i)")
        }
        let spec = try SpecLoader.parse(text, file: "\(folder)/any1.yaml")
        #expect(spec.primary.port == firstPort)
        return spec
    }

    @Test("postgres -C reads the primary's settings of examples/any1.yaml")
    func primarySettings() throws {
        let server = try ScratchServer("pgaccept")
        defer { server.tearDown() }
        let spec = try Self.any1(in: server.folder, firstPort: 21900)
        let renderer = Renderer(spec: spec)
        try server.initdb()
        try server.install([
            "postgresql.conf": try renderer.postgresqlConf(spec.primary),
            "pg_hba.conf": try renderer.hbaConf(spec.primary),
        ])
        try server.makeDirectory(LocalLayout(spec: spec).socketDir(spec.primary.name))

        let expected: [(String, String)] = [
            ("wal_level", "replica"),
            ("max_wal_senders", "10"),
            ("max_replication_slots", "10"),
            ("wal_log_hints", "on"),
            ("hot_standby", "on"),
            ("synchronous_commit", "on"),
            ("synchronous_standby_names", #"ANY 1 ("db_1", "db_2")"#),
            ("max_wal_size", "1024"),  // postgres -C prints it in the parameter's unit, MB
            ("port", "21900"),
            ("listen_addresses", "127.0.0.1"),
            ("unix_socket_directories", LocalLayout(spec: spec).socketDir("db_0")),
            ("cluster_name", "any1/db_0"),
            ("password_encryption", "scram-sha-256"),
            ("primary_conninfo", ""),
        ]
        for (name, value) in expected {
            let actual = try server.setting(name)
            #expect(actual == value, "\(name)")
        }
    }

    @Test("postgres -C reads a standby's primary_conninfo and slot back unchanged")
    func standbySettings() throws {
        let server = try ScratchServer("pgaccept")
        defer { server.tearDown() }
        // Odd but valid names and a folder with a space and a quote, to exercise the quoting.
        let yaml = """
            name: odd
            postgres:
              parameters:
                pgcluster.note: "it's a \\\\ back\\nslash\\ttab"
                work_mem: 8MB
            replication:
              synchronous: {mode: first, count: 2}
            local:
              dir: "\(server.folder)/it's a dir"
            nodes:
              - {name: db-sync, port: 21910, role: primary}
              - {name: 1node, port: 21911}
              - {name: under_score, port: 21912}

            """
        let spec = try SpecLoader.parse(yaml, file: "\(server.folder)/odd.yaml")
        let renderer = Renderer(spec: spec)
        let standby = try #require(spec.node(named: "1node"))
        try server.initdb()
        try server.install([
            "postgresql.conf": try renderer.postgresqlConf(standby),
            "pg_hba.conf": try renderer.hbaConf(standby),
            "standby.conf": try renderer.standbyConf(standby, upstream: spec.primary),
            "standby.signal": "",
        ])
        #expect(try server.setting("primary_conninfo") == renderer.primaryConninfo(standby, upstream: spec.primary))
        #expect(try server.setting("primary_conninfo").contains("passfile='\(server.folder)/it\\'s a dir/pgpass'"))
        #expect(try server.setting("primary_slot_name") == "pgcluster_1node")
        #expect(try server.setting("synchronous_standby_names") == "")
        #expect(try server.setting("port") == "21911")
        // postgres.parameters reach the server verbatim, whatever they hold.
        #expect(try server.setting("pgcluster.note") == "it's a \\ back\nslash\ttab")
        #expect(try server.setting("work_mem") == "8192")

        // The primary of the same spec: names with '-' and a leading digit are accepted.
        try server.install(["postgresql.conf": try renderer.postgresqlConf(spec.primary)])
        try FileManager.default.removeItem(atPath: "\(server.dataDir)/standby.conf")
        #expect(try server.setting("synchronous_standby_names") == #"FIRST 2 ("1node", "under_score")"#)
        #expect(try server.setting("primary_conninfo") == "")
    }

    @Test("a server started with the rendered files has no trust and no pg_hba.conf errors")
    func runningServer() throws {
        let server = try ScratchServer("pgaccept")
        defer { server.tearDown() }
        let spec = try Self.any1(in: server.folder, firstPort: 21920)
        let renderer = Renderer(spec: spec)
        let hba = try renderer.hbaConf(spec.primary)
        for line in hba.split(separator: "\n") where !line.hasPrefix("#") {
            #expect(!line.split(whereSeparator: \.isWhitespace).contains("trust"), "trust in: \(line)")
        }
        try server.initdb()
        try server.install(["postgresql.conf": try renderer.postgresqlConf(spec.primary), "pg_hba.conf": hba])
        let layout = LocalLayout(spec: spec)
        try server.makeDirectory(layout.socketDir(spec.primary.name))
        // tls.mode generate (the default): the node's certificate where postgresql.conf names it.
        let ca = try ClusterCA.generate(cluster: spec.name)
        let issued = try ca.issue(node: "db_0", names: ClusterCA.names(of: spec.primary, backend: .local))
        try server.makeDirectory(layout.tlsDir("db_0"))
        try server.write(issued.keyPEM, to: layout.serverKey("db_0"), mode: 0o600)
        try server.write(issued.certificatePEM, to: layout.serverCertificate("db_0"), mode: 0o644)
        let caFile = "\(server.folder)/ca.crt"
        try server.write(ca.certificatePEM, to: caFile, mode: 0o644)
        try server.start()

        // TCP without TLS is turned away by pg_hba.conf; with the CA and verify-full it gets in.
        #expect(throws: PGError.self) {
            try PGConnection.connect(
                ConnectionTarget(host: "127.0.0.1", port: 21920, user: "postgres", password: server.password, connectTimeout: 10))
        }
        let connection = try PGConnection.connect(
            ConnectionTarget(
                host: "127.0.0.1", port: 21920, user: "postgres", password: server.password, connectTimeout: 10,
                rootCertificate: caFile))
        defer { connection.close() }
        #expect(try connection.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").scalar == "t")
        #expect(try connection.query("SHOW ssl_min_protocol_version").scalar == "TLSv1.2")

        // Every rule parsed, none of them trust: the server's own reading of pg_hba.conf.
        let rules = try connection.query(
            "SELECT line_number, auth_method, error FROM pg_hba_file_rules ORDER BY line_number")
        #expect(rules.rows.count >= 4)
        for row in rules.rows.indices {
            let line = rules.value(row, "line_number") ?? "?"
            #expect(rules.value(row, "error") == nil, "pg_hba.conf line \(line): \(rules.value(row, "error") ?? "")")
            let method = rules.value(row, "auth_method") ?? ""
            #expect(["scram-sha-256", "peer"].contains(method), "pg_hba.conf line \(line): \(method)")
        }
        let replicationRules = try connection.query(
            """
            SELECT count(*) FROM pg_hba_file_rules
            WHERE type = 'hostssl' AND 'replication' = ANY(database) AND 'replicator' = ANY(user_name)
            """)
        #expect(replicationRules.scalar == "1")
        #expect(try connection.query("SELECT count(*) FROM pg_hba_file_rules WHERE type = 'host'").scalar == "0")

        // And postgresql.conf: no line the server could not use.
        let settingErrors = try connection.query(
            "SELECT sourcefile, sourceline, name, error FROM pg_file_settings WHERE error IS NOT NULL")
        #expect(settingErrors.rows.isEmpty, "\(settingErrors.rows)")

        #expect(try connection.query("SHOW synchronous_standby_names").scalar == #"ANY 1 ("db_1", "db_2")"#)
        #expect(try connection.query("SHOW wal_level").scalar == "replica")
        #expect(try connection.query("SHOW cluster_name").scalar == "any1/db_0")
        #expect(connection.serverMajorVersion == 15)
    }
}
