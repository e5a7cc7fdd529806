import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// The rendered compose scripts, run outside a container against real PostgreSQL 15
/// servers: the primary's replication setup, then a standby's entrypoint, which must
/// clone the primary and stream from it. Ports 21840-21842 (of this file's 21800-21899).
@Suite("Compose entrypoint against real servers", .serialized)
struct ComposeEntrypointTests {
    static let bindir = "/usr/lib/postgresql/15/bin"
    static let primaryPort = 21840
    static let standbyPort = 21841
    /// Holds ':', '\' and a space, which the entrypoint must escape in the passfile.
    static let replicationPassword = #"r3pl:pa\ss word"#

    /// A compose spec whose in-network addresses are this machine's, so the rendered
    /// primary_conninfo and the standby's environment work without Docker. TLS off: its
    /// container paths have no stand-in here; ComposeTests run the TLS steps in containers.
    static var specText: String {
        """
        version: 1
        name: composetest
        backend: compose
        tls: {mode: off}
        superuser:
          user: \(superuserName)
        replication:
          user: replicator
          synchronous:
            mode: any
            count: 1
        network:
          allow: [127.0.0.1/32]
        nodes:
          - name: db_0
            port: \(primaryPort)
            role: primary
            serviceHost: 127.0.0.1
            servicePort: \(primaryPort)
          - name: db_1
            port: \(standbyPort)
            servicePort: \(standbyPort)
          - name: db_2
            port: 21842
            servicePort: 21842

        """
    }

    /// The server's OS user: `postgres` when the tests run as root, otherwise whoever runs them.
    static var serverUser: OSUser? { OSUser.isRoot ? OSUser.named("postgres") : OSUser.current }
    /// The superuser is named after the server's OS user, so pg_hba.conf's peer line lets it in.
    static var superuserName: String { serverUser?.name ?? "postgres" }

    @Test("a standby's entrypoint clones the primary, starts, streams and sees its rows")
    func standbyEntrypointStreams() async throws {
        try #require(
            FileManager.default.isExecutableFile(atPath: Self.bindir + "/initdb"),
            "PostgreSQL 15 is not installed: run scripts/ensure-deps.sh")
        let user = try #require(Self.serverUser, "no OS user 'postgres' to run the servers: run scripts/ensure-deps.sh")
        let root = try ComposeTestSupport.makeTempDir("compose-entrypoint")
        let primary = Node(root: root, name: "db_0", port: Self.primaryPort)
        let standby = Node(root: root, name: "db_1", port: Self.standbyPort)
        // `defer` cannot wait for the servers to stop, so clean up on both paths.
        do {
            try await scenario(root: root, primary: primary, standby: standby, user: user)
        } catch {
            await Self.cleanUp(root: root, nodes: [standby, primary], user: user)
            throw error
        }
        await Self.cleanUp(root: root, nodes: [standby, primary], user: user)
    }

    /// Stops both servers (immediately, by data directory) and removes the temporary folder.
    static func cleanUp(root: String, nodes: [Node], user: OSUser) async {
        for node in nodes where FileManager.default.fileExists(atPath: node.data + "/postmaster.pid") {
            _ = try? await ComposeTestSupport.run(
                bindir + "/pg_ctl", ["-D", node.data, "-m", "immediate", "-w", "stop"], as: user, timeout: 60)
        }
        try? FileManager.default.removeItem(atPath: root)
    }

    func scenario(root: String, primary: Node, standby: Node, user: OSUser) async throws {
        let passfile = root + "/pgpass"

        // Render, exactly as `pgcluster render` would, into root/rendered.
        let spec = try SpecLoader.parse(Self.specText, file: root + "/pgcluster.yaml")
        let renderer = Renderer(spec: spec)
        let compose = ComposeRenderer(
            renderer: renderer, superuserPassword: "unused-here", replicationPassword: Self.replicationPassword)
        let rendered = root + "/rendered"
        try FileWriter().write(try renderer.nodeFiles() + compose.projectFiles(), under: rendered)

        // Each node's config folder plays the part of /etc/pgcluster: the rendered files,
        // with the container-only paths moved into the temporary folder.
        for node in [primary, standby] {
            try FileManager.default.createDirectory(atPath: node.run, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: node.conf, withIntermediateDirectories: true)
            try adapt(rendered + "/\(node.name)/postgresql.conf", to: node.conf + "/postgresql.conf", [
                ("listen_addresses = '*'", "listen_addresses = '127.0.0.1'"),
                ("unix_socket_directories = '/var/run/postgresql'", "unix_socket_directories = '\(node.run)'"),
            ])
            try adapt(rendered + "/\(node.name)/pg_hba.conf", to: node.conf + "/pg_hba.conf", [])
            try await give(node.dir, to: user)
        }
        try adapt(rendered + "/db_1/standby.conf", to: standby.conf + "/standby.conf", [
            ("passfile=\(ComposeRenderer.ContainerPath.passfile)", "passfile=\(passfile)")
        ])

        // The primary: initdb, start with the rendered configuration.
        try await check(
            Self.bindir + "/initdb",
            ["-D", primary.data, "-U", Self.superuserName, "--auth-local=peer", "--auth-host=scram-sha-256", "--no-sync"],
            as: user, what: "initdb")
        try await check(
            Self.bindir + "/pg_ctl",
            ["-D", primary.data, "-l", primary.log, "-w", "-t", "60", "-o", primary.configOptions, "start"],
            as: user, what: "starting the primary")

        // The replication setup the image would run after initdb, with the environment the
        // compose file gives the primary. Twice: a second run must change nothing.
        let primarySpec = try #require(spec.node(named: "db_0"))
        var initEnvironment = Self.environment(compose.environment(primarySpec))
        initEnvironment["PGHOST"] = primary.run
        initEnvironment["PG_BINDIR"] = Self.bindir
        initEnvironment["REPLICATION_PASSWORD"] = Self.replicationPassword
        for _ in 0..<2 {
            // The primary's synchronous_standby_names lists standbys that do not exist yet:
            // without `SET synchronous_commit = local` this would wait until killed.
            try await check(
                "/bin/bash", [rendered + "/primary-init.sh"], environment: initEnvironment, as: user,
                what: "primary-init.sh", timeout: 60)
        }
        #expect(try await sql(primary, "SELECT rolreplication FROM pg_roles WHERE rolname = 'replicator'") == "t")
        #expect(
            try await sql(primary, "SELECT string_agg(slot_name, ',' ORDER BY slot_name) FROM pg_replication_slots")
                == "pgcluster_db_1,pgcluster_db_2")

        // The standby's entrypoint, run as root as in the container, with the compose
        // environment of db_1 and this machine's paths.
        let standbySpec = try #require(spec.node(named: "db_1"))
        var environment = Self.environment(compose.environment(standbySpec))
        #expect(environment["PRIMARY_HOST"] == "127.0.0.1")
        #expect(environment["PRIMARY_PORT"] == String(Self.primaryPort))
        environment["PGDATA"] = standby.data
        environment["POSTGRES_CONFIG_DIR"] = standby.conf
        environment["PASSFILE"] = passfile
        environment["PG_BINDIR"] = Self.bindir
        environment["POSTGRES_OS_USER"] = user.name
        environment["REPLICATION_PASSWORD"] = Self.replicationPassword
        environment["PRIMARY_WAIT_TRIES"] = "20"
        environment["PGCLUSTER_ENTRYPOINT_NO_EXEC"] = "1"
        environment["PGCLUSTER_LOGFILE"] = standby.log
        try await check("/bin/bash", [rendered + "/pgcluster-entrypoint.sh"], environment: environment, what: "the entrypoint", timeout: 180)

        // What it left behind: a private data dir and passfile of the server's user, standby.signal.
        #expect(Self.mode(standby.data)?.permissions == 0o700)
        #expect(Self.mode(standby.data)?.owner == user.uid)
        #expect(Self.mode(passfile)?.permissions == 0o600)
        #expect(Self.mode(passfile)?.owner == user.uid)
        #expect(FileManager.default.fileExists(atPath: standby.data + "/standby.signal"))

        // The primary sees db_1 streaming through its slot, as a quorum member of ANY 1.
        let streaming = try await poll(seconds: 30) {
            try await sql(primary, "SELECT state || ' ' || sync_state FROM pg_stat_replication WHERE application_name = 'db_1'")
        } until: { $0 == "streaming quorum" }
        #expect(streaming == "streaming quorum", "pg_stat_replication on db_0: \(streaming)")
        #expect(try await sql(primary, "SELECT active FROM pg_replication_slots WHERE slot_name = 'pgcluster_db_1'") == "t")
        #expect(try await sql(standby, "SELECT pg_is_in_recovery()") == "t")

        // A row committed on the primary (which waits for db_1's acknowledgement) is read on the standby.
        _ = try await sql(primary, "CREATE TABLE compose_check (note text); INSERT INTO compose_check VALUES ('written on db_0')")
        let read = try await poll(seconds: 30) {
            try await sql(standby, "SELECT note FROM compose_check", allowFailure: true)
        } until: { $0 == "written on db_0" }
        #expect(read == "written on db_0", "db_1 did not replay the row; it answered: \(read)")

        // Follow mode, as switchover and rejoin use it on a stopped node: standby.signal and
        // primary_conninfo/primary_slot_name in postgresql.auto.conf, then exit.
        try await check(
            Self.bindir + "/pg_ctl", ["-D", standby.data, "-m", "fast", "-w", "-t", "60", "stop"], as: user,
            what: "stopping the standby")
        unlink(standby.data + "/standby.signal")
        var follow = environment
        follow["PGCLUSTER_ENTRYPOINT_MODE"] = "follow"
        // pgcluster runs it in a container given only the service's own variables: no password.
        follow["REPLICATION_PASSWORD"] = nil
        try await check("/bin/bash", [rendered + "/pgcluster-entrypoint.sh"], environment: follow, what: "follow mode", timeout: 60)
        let auto = try String(contentsOfFile: standby.data + "/postgresql.auto.conf", encoding: .utf8)
        #expect(auto.contains("primary_conninfo = 'host=127.0.0.1 port=\(Self.primaryPort) user=replicator application_name=db_1"))
        #expect(auto.contains("primary_slot_name = 'pgcluster_db_1'"))
        #expect(FileManager.default.fileExists(atPath: standby.data + "/standby.signal"))
        #expect(Self.mode(standby.data + "/postgresql.auto.conf")?.owner == user.uid)
        // Started again in the default mode, it streams through the settings follow wrote.
        try await check("/bin/bash", [rendered + "/pgcluster-entrypoint.sh"], environment: environment, what: "restart", timeout: 120)
        let again = try await poll(seconds: 30) {
            try await sql(primary, "SELECT state FROM pg_stat_replication WHERE application_name = 'db_1'")
        } until: { $0 == "streaming" }
        #expect(again == "streaming")
    }

    // MARK: Helpers

    /// The folders of one node below the test's temporary folder.
    struct Node {
        var dir: String
        var name: String
        var port: Int
        init(root: String, name: String, port: Int) {
            self.dir = root + "/" + name
            self.name = name
            self.port = port
        }
        var data: String { dir + "/data" }
        var conf: String { dir + "/conf" }
        var run: String { dir + "/run" }
        var log: String { dir + "/postgres.log" }
        /// `pg_ctl -o`: the rendered files in place of /etc/pgcluster (pg_ctl passes it to a shell).
        var configOptions: String { "-c config_file=\(conf)/postgresql.conf -c hba_file=\(conf)/pg_hba.conf" }
    }

    static func environment(_ pairs: [(key: String, value: String)]) -> [String: String] {
        Dictionary(pairs.map { ($0.key, $0.value) }) { _, last in last }
    }

    static func mode(_ path: String) -> (permissions: Int, owner: uid_t)? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return (Int(info.st_mode & 0o777), info.st_uid)
    }

    /// Copies a rendered file, replacing text that must be there (so a changed render fails here).
    func adapt(_ source: String, to target: String, _ replacements: [(String, String)]) throws {
        var text = try String(contentsOfFile: source, encoding: .utf8)
        for (old, new) in replacements {
            try #require(text.contains(old), "\(source) no longer contains \(old)")
            text = text.replacingOccurrences(of: old, with: new)
        }
        try Data(text.utf8).write(to: URL(fileURLWithPath: target))
    }

    func give(_ path: String, to user: OSUser) async throws {
        guard OSUser.isRoot else { return }
        let result = try await ComposeTestSupport.run("/bin/chown", ["-R", "\(user.uid):\(user.gid)", path], timeout: 30)
        try #require(result.status == 0, "chown \(path): \(result.output)")
    }

    /// Runs a program and fails the test, with its output, unless it exits 0.
    func check(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:], as user: OSUser? = nil,
        what: String, timeout: Int = 120
    ) async throws {
        let result = try await ComposeTestSupport.run(
            executable, arguments, environment: environment, as: user, timeout: timeout)
        let outcome = result.status == 124 ? "was killed after \(timeout) s" : "failed (exit \(result.status))"
        try #require(result.succeeded, "\(what) \(outcome):\n\(result.output)")
    }

    /// One value from `node`, through its Unix socket as the superuser (peer authentication).
    func sql(_ node: Node, _ query: String, allowFailure: Bool = false) async throws -> String {
        let result = try await ComposeTestSupport.run(
            Self.bindir + "/psql",
            ["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", node.run, "-p", String(node.port),
             "-U", Self.superuserName, "-d", "postgres", "-c", query],
            as: Self.serverUser, timeout: 30)
        if result.status != 0 {
            if allowFailure { return "error: " + result.output }
            throw Failure(description: "on \(node.name): \(query)\n\(result.output)")
        }
        return result.output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Asks `probe` every 200 ms until `done` holds or `seconds` pass; returns the last answer.
    func poll(
        seconds: TimeInterval, _ probe: () async throws -> String, until done: (String) -> Bool
    ) async throws -> String {
        let deadline = Date().addingTimeInterval(seconds)
        var answer = try await probe()
        while !done(answer) && Date() < deadline {
            try await Task.sleep(for: .milliseconds(200))
            answer = try await probe()
        }
        return answer
    }
}
