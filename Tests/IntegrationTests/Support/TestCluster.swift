import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// What one run of the `pgcluster` binary did.
/// Where the tests' clusters keep their files: a tmpfs when the machine has one with room.
///
/// Each cluster makes and removes thousands of files (initdb, pg_basebackup, pgBackRest's
/// repository, WAL segments). On this kind of machine's ext4, which has no journal, making a
/// file after many were removed costs about 0.5 ms of kernel time (the inode allocator reads
/// each recently freed inode's table block: `recently_deleted`), 60 times what tmpfs costs;
/// a perf profile of a test run had pg_basebackup and postgres spend most of their time
/// there. The servers, their files and every step are the same; nothing a test asserts
/// depends on the data surviving a machine crash. `PGCLUSTER_TEST_DIR` chooses the folder.
enum Scratch {
    static let folder: String = {
        if let chosen = ProcessInfo.processInfo.environment["PGCLUSTER_TEST_DIR"], !chosen.isEmpty { return chosen }
        let mounts = (try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? ""
        // A tmpfs that runs programs (the tests' wrapper scripts live beside their clusters).
        let onTmpfs = mounts.split(separator: "\n").contains { line in
            let fields = line.split(separator: " ")
            return fields.count > 3 && fields[1] == "/dev/shm" && fields[2] == "tmpfs" && !fields[3].split(separator: ",").contains("noexec")
        }
        let free = (try? FileManager.default.attributesOfFileSystem(forPath: "/dev/shm")[.systemFreeSize] as? NSNumber)?.int64Value ?? 0
        if onTmpfs, access("/dev/shm", W_OK) == 0, free >= 4 << 30 { return "/dev/shm" }
        return "/tmp"
    }()
}

struct RunResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// The ports each suite's clusters take (basePort, then one per standby), so that a new
/// test picks a free range: suites run at once, and two clusters on one port make a flake.
///
/// | ports | suite |
/// | --- | --- |
/// | 21010-21049 | InitTests (21010, 21020, 21030 busy-port, 21039 no cluster, 21043, 21048), QuorumTests (21040, 21045) |
/// | 21050 | QuorumTests |
/// | 21100-21159 | FailoverTests |
/// | 21200-21239 | DrillTests |
/// | 21300-21329 | ApplyTests |
/// | 21400-21479 | SplitBrainTests |
/// | 21500-21569 | WatchTests (21505: the hung clone, 21565: the hung rewind); 21570 SeamsTests; 21580-21599 WatchAcrossTests |
/// | 21600-21649 | SSHBackendTests |
/// | 21700-21729 | DestroyTests, InitInterruptTests, RejoinReportTests |
/// | 21800-21829 | TLSTests |
/// | 21900-21949 | SeamsTests (21930-21939: EpochTests) |
/// | 22100-22139 | ComposeTests, ComposeTLSTests, ComposeApplyTests, ComposePauseTests |
/// | 22200-22229 | HealthEndpointTests (endpoints 22300-22399, HAProxy 22400-22419) |
/// | 22420-22499 | BackupTests |
/// | 22500-22529 | DeadlineTests, WatchReloadTests |
/// | 22530-22539 | HookTests (PgBouncer 22539) |
/// | 22540-22569 | AppRoleTests, RestartTests |
/// | 22600-22699 | EtcdSecurityTests (etcd 23820-23859) |
/// | 22700-22709 | ComposeWatcherTests (endpoints 22705-22707) |
///
/// The benchmarks use 22000-22099.
///
/// A cluster made by the tests through the real `pgcluster` binary, in its own
/// temporary folder on its own ports. `teardown()` stops every server it started
/// (by data directory, never by name) and removes the folder, pass or fail.
final class TestCluster: @unchecked Sendable {
    let root: String
    let specPath: String
    let name: String
    let basePort: Int
    let standbyCount: Int

    /// - Parameters:
    ///   - name: also names the folder; ports are basePort (primary), basePort+1, ...
    ///   - synchronous: YAML for replication.synchronous, such as `{mode: any, count: 1}`.
    /// Where each node runs (node0 first): this machine, or for backend ssh a test host's address.
    let nodeHosts: [String]

    /// - Parameter ssh: backend ssh: the YAML of the `ssh:` block, and each node's host address.
    init(
        name: String, basePort: Int, standbys: Int = 2, synchronous: String = "{mode: async}", extraNodeYAML: String = "",
        ssh: (block: String, hosts: [String])? = nil, tls: String? = nil, replicationPassword: String? = nil
    ) throws {
        self.name = name
        self.basePort = basePort
        self.standbyCount = standbys
        nodeHosts = ssh?.hosts ?? Array(repeating: "127.0.0.1", count: standbys + 1)
        // ssh's connection sockets live in local.dir: the shortest root (the hosts' own
        // folders are on a tmpfs already, /run).
        root = "\(ssh == nil ? Scratch.folder : "/tmp")/pgcluster-it-\(name)-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        chmod(root, 0o755)
        specPath = "\(root)/pgcluster.yaml"
        let backend = ssh == nil ? "" : "backend: ssh\n\(ssh!.block)\n"
        var yaml = """
            version: 1
            name: \(name)
            \(backend)postgres:
              version: 15
              parameters:
                shared_buffers: 32MB
                max_wal_size: 256MB
            replication:
              synchronous: \(synchronous)\(replicationPassword.map { "\n  password: \($0)" } ?? "")
            network:
              allow: [\(ssh == nil ? "127.0.0.1/32" : "10.213.7.0/24")]
            \(tls.map { "tls: \($0)\n" } ?? "")local:
              dir: ./data
            nodes:
              - name: node0
                host: \(nodeHosts[0])
                port: \(basePort)
                role: primary

            """
        for i in 1...max(standbys, 1) where standbys > 0 {
            yaml += "  - name: node\(i)\n    host: \(nodeHosts[i])\n    port: \(basePort + i)\n"
        }
        yaml += extraNodeYAML
        try yaml.write(toFile: specPath, atomically: true, encoding: .utf8)
    }

    var dataRoot: String { "\(root)/data" }
    var nodeNames: [String] { (0...standbyCount).map { "node\($0)" } }
    func port(_ node: String) -> Int { basePort + Int(node.dropFirst(4))! }
    func host(_ node: String) -> String { nodeHosts[Int(node.dropFirst(4))!] }

    // MARK: Running pgcluster

    static let binary: String = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return (exe as NSString).deletingLastPathComponent + "/pgcluster"
    }()

    /// Runs `pgcluster ARGS -f spec`, capturing both streams.
    @discardableResult
    func run(_ arguments: [String], timeout: Double = 300, environment: [String: String] = [:]) async -> RunResult {
        await Self.runBinary(arguments + ["-f", specPath], timeout: timeout, environment: environment)
    }

    static func runBinary(_ arguments: [String], timeout: Double = 300, environment: [String: String] = [:]) async -> RunResult {
        await Blocking.run { spawnWithFiles([binary] + arguments, timeout: timeout, extra: environment) }
    }

    /// stdout and stderr go to files, not pipes: a server the child starts must never hold
    /// our read end. Killed after `timeout`.
    static func spawnWithFiles(_ argv: [String], timeout: Double, extra: [String: String] = [:]) -> RunResult {
        let tag = UUID().uuidString
        let outPath = "\(Scratch.folder)/pgc-test-\(tag).out"
        let errPath = "\(Scratch.folder)/pgc-test-\(tag).err"
        defer {
            unlink(outPath)
            unlink(errPath)
        }
        var environment = ProcessInfo.processInfo.environment
        environment["NO_COLOR"] = "1"
        environment.merge(extra) { _, new in new }
        let outcome = Spawn.run(
            argv, environment: environment.map { "\($0.key)=\($0.value)" }, stdout: .file(outPath), stderr: .file(errPath),
            timeout: timeout)
        switch outcome {
        case .failure(let error):
            return RunResult(status: -1, stdout: "", stderr: error.description)
        case .success(let result):
            return RunResult(
                status: result.status,
                stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
                stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
        }
    }

    /// `init` that must succeed; records the output in the failure message otherwise.
    func initCluster(_ extra: [String] = []) async throws {
        let result = await run(["init"] + extra)
        try #require(result.status == 0, "init failed (\(result.status)):\n\(result.stderr)\n\(result.stdout)")
    }

    // MARK: Talking to the servers

    func credentials() throws -> Credentials {
        try #require(try Credentials.load("\(dataRoot)/credentials.json"))
    }

    /// The cluster CA `init` made (tls.mode generate, the default), or nil when TLS is off.
    var caFile: String? {
        let path = "\(dataRoot)/ca.crt"
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }

    /// A superuser connection, verifying the server's certificate with the cluster CA
    /// (sslmode=verify-full) when the cluster has one, as applications do.
    func connect(_ node: String, timeout: Int = 5, host: String? = nil) throws -> PGConnection {
        let credentials = try credentials()
        return try PGConnection.connect(
            ConnectionTarget(
                host: host ?? self.host(node), port: port(node), user: credentials.superuser.user,
                password: credentials.superuser.password, connectTimeout: timeout, rootCertificate: caFile))
    }

    /// Runs SQL on a node and returns the rows.
    @discardableResult
    func sql(_ node: String, _ query: String, _ parameters: [String?] = []) throws -> QueryResult {
        let connection = try connect(node)
        defer { connection.close() }
        return try connection.query(query, parameters)
    }

    /// Polls `condition` every 50 ms until it holds or `timeout` passes.
    func eventually(_ timeout: Double = 20, _ condition: () throws -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? condition()) == true { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return (try? condition()) == true
    }

    /// ``eventually(_:_:)`` for a condition that awaits (a pgcluster run).
    func eventuallyAsync(_ timeout: Double = 20, _ condition: () async throws -> Bool) async -> Bool {
        await pollUntil(timeout, every: .milliseconds(100), condition)
    }

    func postmasterPID(_ node: String) -> pid_t? {
        guard let text = try? String(contentsOfFile: "\(dataRoot)/\(node)/data/postmaster.pid", encoding: .utf8),
            let line = text.split(separator: "\n").first, let pid = pid_t(line), kill(pid, 0) == 0
        else { return nil }
        return pid
    }

    /// Every postgres process whose data directory is under this cluster's folder.
    func runningServers() -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> pid_t? in
            guard let pid = pid_t(entry),
                let cmdline = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline")
            else { return nil }
            let text = String(decoding: cmdline, as: UTF8.self).replacingOccurrences(of: "\0", with: " ")
            return text.contains("postgres") && text.contains(dataRoot + "/") ? pid : nil
        }
    }

    /// Stops everything this cluster started and removes its folder.
    func teardown() async {
        _ = await run(["destroy", "--yes"], timeout: 60)
        // Anything destroy could not stop (a SIGSTOPped or half-dead server): by data directory.
        for node in nodeNames {
            if let pid = postmasterPID(node) {
                kill(pid, SIGCONT)
                kill(pid, SIGKILL)
            }
        }
        for pid in runningServers() {
            kill(pid, SIGCONT)
            kill(pid, SIGKILL)
        }
        try? FileManager.default.removeItem(atPath: root)
    }
}

/// Runs `body` with a fresh cluster and always tears it down.
func withCluster(
    name: String, basePort: Int, standbys: Int = 2, synchronous: String = "{mode: async}", tls: String? = nil,
    replicationPassword: String? = nil, _ body: (TestCluster) async throws -> Void
) async throws {
    let cluster = try TestCluster(
        name: name, basePort: basePort, standbys: standbys, synchronous: synchronous, tls: tls, replicationPassword: replicationPassword)
    do {
        try await body(cluster)
    } catch {
        await cluster.teardown()
        throw error
    }
    // PGCLUSTER_TEST_KEEP=1 leaves a cluster running after its test, to look at its logs.
    if ProcessInfo.processInfo.environment["PGCLUSTER_TEST_KEEP"] == "1" {
        print("kept: \(cluster.root)")
        return
    }
    await cluster.teardown()
}
