import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// The container engine the compose tests use: `DOCKER_HOST` when set, else the socket
/// that `scripts/compose-engine.sh up` starts. Never /var/run/docker.sock.
enum ComposeEngine {
    static let host: String =
        ProcessInfo.processInfo.environment["DOCKER_HOST"].flatMap { $0.isEmpty ? nil : $0 }
        ?? "unix:///run/podman/podman.sock"

    static let docker: String? = ["/usr/local/bin/docker", "/usr/bin/docker"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    /// The environment every child gets: ours, with DOCKER_HOST and no colour.
    static var environment: [String] {
        var environment = ProcessInfo.processInfo.environment
        environment["DOCKER_HOST"] = host
        environment["NO_COLOR"] = "1"
        return environment.map { "\($0.key)=\($0.value)" }
    }

    /// True when `docker info` gets an answer from the engine at `host` and the compose
    /// v2 plugin runs.
    static let available: Bool = {
        guard let docker else { return false }
        for probe in [["info", "--format", "{{.ServerVersion}}"], ["compose", "version"]] {
            guard case .success(let result) = Spawn.run(
                [docker] + probe, environment: environment, stdout: .pipe, stderr: .pipe, timeout: 20), result.succeeded
            else { return false }
        }
        return true
    }()

    /// Runs `argv` (argv[0] absolute), in `directory` when given: stdout collected, stderr
    /// through a file.
    static func run(_ argv: [String], in directory: String? = nil, timeout: Double = 300) async -> RunResult {
        let line = directory.map { ["/usr/bin/env", "-C", $0, "--"] + argv } ?? argv
        let errPath = "/tmp/pgc-compose-test-\(UUID().uuidString).err"
        defer { unlink(errPath) }
        let outcome = await Blocking.run(timeout: timeout + 10) {
            Spawn.run(line, environment: environment, stdout: .pipe, stderr: .file(errPath), timeout: timeout)
        }
        let stderr = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        switch outcome {
        case .success(let result)?: return RunResult(status: result.status, stdout: result.output, stderr: stderr)
        case .failure(let error)?: return RunResult(status: -1, stdout: "", stderr: error.description)
        case nil: return RunResult(status: -1, stdout: "", stderr: "timed out after \(timeout) s")
        }
    }

    static func docker(_ arguments: [String], in directory: String? = nil, timeout: Double = 300) async -> RunResult {
        await run([docker ?? "/usr/bin/docker"] + arguments, in: directory, timeout: timeout)
    }

    /// Removes what an earlier test run left on the engine when it was killed before its
    /// teardown: containers, networks and volumes whose names start with `pgc-it-`. A stale
    /// network's subnet would refuse this run's project with "subnet ... is already used by
    /// another config" (a CI run failed so). Runs once per test process, before its first
    /// compose cluster; only test runs make such names, and two never share a machine.
    static let sweepOnce = Task<Void, Never> {
        let prefix = "pgc-it-"
        var removed: [String] = []
        // Containers first: a network or volume in use cannot be removed.
        for (kind, list, remove) in [
            ("container", ["ps", "-a", "--format", "{{.Names}}"], ["rm", "-f", "-v"]),
            ("network", ["network", "ls", "--format", "{{.Name}}"], ["network", "rm"]),
            ("volume", ["volume", "ls", "--format", "{{.Name}}"], ["volume", "rm", "-f"]),
        ] {
            let names = await docker(list + ["--filter", "name=\(prefix)"])
            for name in lines(names.stdout) where name.hasPrefix(prefix) {
                if await docker(remove + [name], timeout: 60).status == 0 { removed.append("\(kind) \(name)") }
            }
        }
        if !removed.isEmpty {
            print("compose tests: removed what an earlier run left: \(removed.joined(separator: ", "))")
        }
    }

    private static func lines(_ text: String) -> [String] {
        text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// The trait of every test on real containers: it runs when an engine answers, else it
    /// is skipped with the line that says how to start one.
    static var required: ConditionTrait {
        .enabled(if: available, "no container engine answers at \(host) (start one: scripts/compose-engine.sh up)")
    }
}

/// A compose cluster of three nodes made by a test, in its own folder, on its own ports,
/// compose project and subnet. `teardown()` removes its containers and volumes, pass or fail.
final class ComposeTestCluster: @unchecked Sendable {
    let root: String
    let specPath: String
    let project: String
    let basePort: Int
    let nodeNames = ["node0", "node1", "node2"]

    /// Whether the spec has TLS on (the default); `extra` adds top-level keys to the spec.
    let tls: Bool

    /// `composeExtra` adds keys to the spec's `compose:` mapping (", watcher: true").
    init(name: String, basePort: Int, subnet: String, extra: String = "", composeExtra: String = "") throws {
        let suffix = UUID().uuidString.prefix(6).lowercased()
        self.basePort = basePort
        project = "pgc-it-\(name)-\(suffix)"
        root = "/tmp/pgcluster-it-compose-\(name)-\(suffix)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        specPath = "\(root)/pgcluster.yaml"
        tls = !extra.contains("mode: off")
        try """
            version: 1
            name: \(name)
            backend: compose
            postgres:
              version: 15
              parameters:
                shared_buffers: 32MB
            replication:
              synchronous: {mode: async}
            network:
              allow: [127.0.0.1/32]
            local:
              dir: ./state
            compose: {project: \(project), image: postgres:15, subnet: \(subnet)\(composeExtra)}
            \(extra)
            nodes:
              - {name: node0, port: \(basePort), role: primary}
              - {name: node1, port: \(basePort + 1)}
              - {name: node2, port: \(basePort + 2)}

            """.write(toFile: specPath, atomically: true, encoding: .utf8)
    }

    var stateDir: String { "\(root)/state" }
    func port(_ node: String) -> Int { basePort + Int(node.dropFirst(4))! }

    /// `pgcluster ARGS -f spec`, stdout and stderr together.
    @discardableResult
    func pgcluster(_ arguments: [String], timeout: Double = 300) async -> RunResult {
        await ComposeEngine.run([TestCluster.binary] + arguments + ["-f", specPath], timeout: timeout)
    }

    /// When `node`'s container last started (`docker inspect`), nil when it has none.
    func containerStarted(_ node: String, in directory: String) async -> String? {
        let id = await compose(["ps", "-a", "-q", node], in: directory).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !id.isEmpty else { return nil }
        let started = await ComposeEngine.docker(["inspect", "-f", "{{.State.StartedAt}}", id])
        return started.status == 0 ? started.stdout.trimmingCharacters(in: .whitespacesAndNewlines) : nil
    }

    /// `docker compose ARGS` in the project folder, as a person types it there.
    @discardableResult
    func compose(_ arguments: [String], in directory: String) async -> RunResult {
        await ComposeEngine.docker(["compose"] + arguments, in: directory)
    }

    func credentials() throws -> Credentials {
        try #require(try Credentials.load("\(stateDir)/credentials.json"))
    }

    /// `clients` writers through the read-write DSN (`pgcluster dsn`), started.
    func startWriters(clients: Int = 4) async throws -> WriteLoad {
        let dsn = await pgcluster(["dsn"])
        try #require(dsn.status == 0, "dsn: \(dsn.stderr)")
        let conninfo = dsn.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let password = try credentials().superuser.password
        try WriteLoad.prepare(conninfo: conninfo, password: password)
        let load = WriteLoad(conninfo: conninfo, password: password, clients: clients)
        load.start()
        return load
    }

    /// The cluster CA in local.dir, which pgcluster verifies the nodes with.
    var caCertificate: String { "\(stateDir)/ca.crt" }

    /// SQL as the superuser on `node`'s published port: with TLS, verify-full against the
    /// cluster CA (for the name `host`), as pgcluster connects; without, plain TCP.
    func sql(
        _ node: String, _ query: String, _ parameters: [String?] = [], host: String = "127.0.0.1", tls: Bool? = nil
    ) throws -> QueryResult {
        let credentials = try credentials()
        let connection = try PGConnection.connect(
            ConnectionTarget(
                host: host, port: port(node), user: credentials.superuser.user,
                password: credentials.superuser.password, connectTimeout: 5,
                rootCertificate: (tls ?? self.tls) ? caCertificate : nil))
        defer { connection.close() }
        return try connection.query(query, parameters)
    }

    /// `status --json`, parsed.
    func status() async throws -> [String: Any] {
        let result = await pgcluster(["status", "--json"])
        return try #require(
            try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "status: \(result.stderr)")
    }

    /// Polls `status` until it exits 0 (healthy), within `timeout`.
    func waitHealthy(_ timeout: Double = 120) async -> RunResult {
        let deadline = Date().addingTimeInterval(timeout)
        var last = await pgcluster(["status"])
        while last.status != 0 && Date() < deadline {
            try? await Task.sleep(for: .milliseconds(500))
            last = await pgcluster(["status"])
        }
        return last
    }

    /// The project's containers and volumes still on the engine.
    func leftovers() async -> [String] {
        let label = "label=com.docker.compose.project=\(project)"
        let containers = await ComposeEngine.docker(["ps", "-a", "-q", "--filter", label])
        let volumes = await ComposeEngine.docker(["volume", "ls", "-q", "--filter", label])
        let byName = await ComposeEngine.docker(["volume", "ls", "-q", "--filter", "name=\(project)_"])
        return (containers.stdout + "\n" + volumes.stdout + "\n" + byName.stdout)
            .split(separator: "\n").map(String.init).filter { !$0.isEmpty }
    }

    /// Removes everything of the project, whatever state the test left it in.
    func teardown() async {
        _ = await pgcluster(["destroy", "--yes"], timeout: 120)
        for directory in ["\(stateDir)/compose", "\(root)/project"]
        where FileManager.default.fileExists(atPath: "\(directory)/docker-compose.yml") {
            _ = await compose(["-p", project, "down", "-v", "--remove-orphans", "-t", "1"], in: directory)
        }
        let label = "label=com.docker.compose.project=\(project)"
        let containers = await ComposeEngine.docker(["ps", "-a", "-q", "--filter", label])
        for id in containers.stdout.split(separator: "\n") where !id.isEmpty {
            _ = await ComposeEngine.docker(["rm", "-f", String(id)])
        }
        for volume in await leftovers() { _ = await ComposeEngine.docker(["volume", "rm", "-f", volume]) }
        try? FileManager.default.removeItem(atPath: root)
    }
}

func withComposeCluster(
    name: String, basePort: Int, subnet: String, extra: String = "", composeExtra: String = "",
    _ body: (ComposeTestCluster) async throws -> Void
) async throws {
    await ComposeEngine.sweepOnce.value
    let cluster = try ComposeTestCluster(name: name, basePort: basePort, subnet: subnet, extra: extra, composeExtra: composeExtra)
    do {
        try await body(cluster)
    } catch {
        await cluster.teardown()
        throw error
    }
    await cluster.teardown()
}

/// Real containers: podman serving the Docker API (scripts/compose-engine.sh), the compose
/// v2 plugin, and the local postgres:15 image. Ports 22100-22122. TLS is on (the default)
/// but where a test sets `tls.mode: off`.
@Suite("compose: real containers", .serialized, .clusterLimit)
struct ComposeTests {
    @Test(
        "compose: init and destroy; then render + docker compose up by hand, status, quorum, kill, failover (lost 0), rejoin, switchover, drill, destroy",
        ComposeEngine.required)
    func composeForReal() async throws {
        try await initAndDestroy()
        try await byHandThenEveryCommand()
    }

    func byHandThenEveryCommand() async throws {
        try await withComposeCluster(name: "hand", basePort: 22100, subnet: "172.29.100.0/24") { cluster in
            // The README's path: render, then docker compose up -d in that folder.
            let project = "\(cluster.root)/project"
            let render = await cluster.pgcluster(["render", "--out", project])
            try #require(render.status == 0, "render: \(render.stderr)")
            let up = await cluster.compose(["up", "-d"], in: project)
            try #require(up.status == 0, "docker compose up -d: \(up.stderr)")

            let healthy = await cluster.waitHealthy()
            #expect(healthy.status == 0, "status after docker compose up: \(healthy.stdout)\(healthy.stderr)")
            let status = try await cluster.status()
            #expect(status["primary"] as? String == "node0")
            let nodes = try #require(status["nodes"] as? [[String: Any]])
            #expect(nodes.filter { $0["streaming"] as? Bool == true }.count == 2)

            let quorum = await cluster.pgcluster(["quorum", "--any", "1"])
            #expect(quorum.status == 0, "quorum: \(quorum.stderr)")
            #expect(try cluster.sql("node0", "SHOW synchronous_standby_names").scalar == "ANY 1 (\"node1\", \"node2\")")
            // The image's initdb took POSTGRES_INITDB_ARGS: 4 MB WAL segments, as on the other backends.
            #expect(try cluster.sql("node0", "SHOW wal_segment_size").scalar == "4MB")

            // Four writers through the read-write DSN; the primary's container is killed.
            let load = try await cluster.startWriters()
            let newPrimary: String
            do {
                newPrimary = try await Self.killPrimaryAndFailOver(cluster, project: project, load: load)
            } catch {
                _ = await load.stop()
                throw error
            }
            let summary = await load.stop()
            let list = "{" + summary.acknowledged.map(String.init).joined(separator: ",") + "}"
            let present = try cluster.sql(
                newPrimary, "SELECT count(*) FROM \(WriteLoad.table) WHERE id = ANY($1::bigint[])", [list]
            ).scalar.flatMap { Int($0) }
            #expect(present == summary.acknowledged.count, "lost \(summary.acknowledged.count - (present ?? 0)) acknowledged rows")
            #expect(summary.acknowledged.count > 300)

            // A container left under node0's step name by an earlier command that was stopped
            // (its `docker` client killed): the rejoin's first step container meets it, removes
            // it and goes on. (Labelled with the project, so that teardown finds it too.)
            let stepName = "\(cluster.project)-node0-step"
            let leftover = await ComposeEngine.docker([
                "create", "--name", stepName, "--label", "com.docker.compose.project=\(cluster.project)", "postgres:15", "true",
            ])
            #expect(leftover.status == 0, "docker create: \(leftover.stderr)")
            let rejoin = await cluster.pgcluster(["rejoin", "node0"])
            #expect(rejoin.status == 0, "rejoin: \(rejoin.stderr)")
            #expect(rejoin.stderr.contains("the container \(stepName) of an earlier step is still there"), "\(rejoin.stderr)")
            let named = await ComposeEngine.docker(["ps", "-a", "-q", "--filter", "name=^\(stepName)$"])
            #expect(named.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(stepName) is left: \(named.stdout)")
            #expect(await cluster.waitHealthy(60).status == 0)
            #expect(try cluster.sql("node0", "SELECT pg_is_in_recovery()").scalar == "t")

            // The old primary's server stops and starts again inside its running container
            // (the entrypoint's hold): the container keeps its start time, the server not.
            let containerBefore = await cluster.containerStarted(newPrimary, in: project)
            let serverBefore = try cluster.sql(newPrimary, "SELECT pg_postmaster_start_time()::text").scalar
            let switchover = await cluster.pgcluster(["switchover", "--candidate", "node0"])
            #expect(switchover.status == 0, "switchover: \(switchover.stderr)")
            #expect(try cluster.sql("node0", "SELECT pg_is_in_recovery()").scalar == "f")
            #expect(try cluster.sql(newPrimary, "SELECT pg_is_in_recovery()").scalar == "t")
            let containerAfter = await cluster.containerStarted(newPrimary, in: project)
            #expect(containerBefore != nil && containerAfter == containerBefore, "\(containerBefore ?? "nil") then \(containerAfter ?? "nil")")
            #expect(try cluster.sql(newPrimary, "SELECT pg_postmaster_start_time()::text").scalar != serverBefore)
            #expect(await cluster.waitHealthy(60).status == 0)

            let drill = await cluster.pgcluster(["drill", "--mode", "any", "--duration", "3", "--json"])
            #expect(drill.status == 0, "drill: \(drill.stderr)")
            if let json = try? JSONSerialization.jsonObject(with: Data(drill.stdout.utf8)) as? [String: Any],
                let round = (json["rounds"] as? [[String: Any]])?.first
            {
                #expect(round["lost"] as? Int == 0, "drill lost rows: \(round["lostIds"] ?? [])")
                #expect((round["acknowledged"] as? Int ?? 0) > 100)
                #expect(round["refusal"] == nil || round["refusal"] is NSNull)
            } else {
                Issue.record("drill printed no report: \(drill.stdout)")
            }
            #expect(await cluster.waitHealthy(60).status == 0)

            let destroy = await cluster.pgcluster(["destroy", "--yes"])
            #expect(destroy.status == 0, "destroy: \(destroy.stderr)")
            #expect(await cluster.leftovers() == [], "containers or volumes left after destroy")
        }
    }

    /// With the writers running: `docker compose kill` the primary, `failover`, and wait
    /// until writes are acknowledged again. Returns the new primary.
    static func killPrimaryAndFailOver(_ cluster: ComposeTestCluster, project: String, load: WriteLoad) async throws -> String {
        #expect(await pollUntil(30) { load.counts.acknowledged >= 200 }, "the writers got no acknowledgements")
        let kill = await cluster.compose(["kill", "node0"], in: project)
        #expect(kill.status == 0, "docker compose kill: \(kill.stderr)")

        let failover = await cluster.pgcluster(["failover", "--json"])
        try #require(failover.status == 0, "failover: \(failover.stderr)\n\(failover.stdout)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(failover.stdout.utf8)) as? [String: Any])
        let newPrimary = try #require(report["candidate"] as? String)
        #expect(["node1", "node2"].contains(newPrimary))
        #expect(report["needsRejoin"] as? [String] == ["node0"])
        let before = load.counts.acknowledged
        #expect(await pollUntil(30) { load.counts.acknowledged >= before + 100 }, "no write acknowledged after failover")
        return newPrimary
    }

    /// init on a compose spec with `tls.mode: off` (TLS-on init is ComposeTLS's): the
    /// project in local.dir/compose, healthy; destroy leaves no container or volume.
    func initAndDestroy() async throws {
        try await withComposeCluster(
            name: "init", basePort: 22110, subnet: "172.29.110.0/24", extra: "tls: {mode: off}"
        ) { cluster in
            let initResult = await cluster.pgcluster(["init"])
            try #require(initResult.status == 0, "init: \(initResult.stderr)")
            #expect(FileManager.default.fileExists(atPath: "\(cluster.stateDir)/compose/docker-compose.yml"))
            // TLS off: plain TCP is what the nodes take, and no certificate was made.
            #expect(try cluster.sql("node0", "SHOW ssl").scalar == "off")
            // Generated passwords: the cheap secret, as on the other backends (the image made 4096).
            let secrets = try cluster.sql(
                "node0", "SELECT rolname, split_part(rolpassword, ':', 1) FROM pg_authid WHERE rolname IN ('postgres', 'replicator') ORDER BY 1")
            #expect(secrets.rows.map { $0.compactMap { $0 } } == [["postgres", "SCRAM-SHA-256$64"], ["replicator", "SCRAM-SHA-256$64"]], "\(secrets.rows)")
            #expect(!FileManager.default.fileExists(atPath: cluster.caCertificate))
            #expect(!FileManager.default.fileExists(atPath: "\(cluster.stateDir)/compose/node0/tls"))
            #expect(await cluster.pgcluster(["status"]).status == 0)
            let again = await cluster.pgcluster(["init"])
            #expect(again.status == 2, "a second init must refuse: \(again.stderr)")

            let destroy = await cluster.pgcluster(["destroy", "--yes"])
            #expect(destroy.status == 0, "destroy: \(destroy.stderr)")
            #expect(await cluster.leftovers() == [], "containers or volumes left after destroy")
            #expect(!FileManager.default.fileExists(atPath: "\(cluster.stateDir)/credentials.json"))
        }
    }
}
