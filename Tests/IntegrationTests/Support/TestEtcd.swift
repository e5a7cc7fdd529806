import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// A real etcd (Debian's etcd-server) started by a test on loopback, in its own folder, and
/// always stopped by its PID afterwards. Client port `port`, peer port `port + 1`.
final class TestEtcd: @unchecked Sendable {
    static let binary = "/usr/bin/etcd"
    let port: Int
    /// Where it listens: loopback, or the test hosts' bridge address so they reach it too.
    let address: String
    let folder: String
    private(set) var pid: pid_t = 0

    var endpoint: String { "http://\(address):\(port)" }

    init(port: Int, address: String = "127.0.0.1") throws {
        self.port = port
        self.address = address
        folder = "/tmp/pgcluster-it-etcd-\(port)-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    }

    /// Starts it (again, on the same data) and waits until it answers.
    func start() async throws {
        let argv = [
            Self.binary, "--name", "t", "--data-dir", "\(folder)/data",
            "--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
            "--listen-peer-urls", "http://\(address):\(port + 1)",
            "--initial-advertise-peer-urls", "http://\(address):\(port + 1)",
            "--initial-cluster", "t=http://\(address):\(port + 1)", "--log-level", "error",
        ]
        var spawned: pid_t = 0
        let log = "\(folder)/etcd.log"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        let cArgs = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        let status = posix_spawn(&spawned, Self.binary, &actions, nil, cArgs, environ)
        try #require(status == 0, "cannot start etcd: \(String(cString: strerror(status)))")
        pid = spawned
        let client = EtcdClient(endpoints: [URL(string: endpoint)!], timeout: 1)
        for _ in 0..<100 {
            if (try? await client.list(prefix: "/probe")) != nil { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("etcd did not answer on \(endpoint): \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        throw ClusterError("etcd did not start")
    }

    /// Stops it by its PID (SIGKILL when `hard`), and reaps it.
    func stop(hard: Bool = false) {
        guard pid > 0 else { return }
        kill(pid, hard ? SIGKILL : SIGTERM)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        pid = 0
    }

    func remove() {
        stop(hard: true)
        try? FileManager.default.removeItem(atPath: folder)
    }
}

/// Runs `body` with a fresh etcd, always stopped and removed afterwards.
func withEtcd(port: Int, address: String = "127.0.0.1", _ body: (TestEtcd) async throws -> Void) async throws {
    let etcd = try TestEtcd(port: port, address: address)
    do {
        try await etcd.start()
        try await body(etcd)
    } catch {
        etcd.remove()
        throw error
    }
    etcd.remove()
}
