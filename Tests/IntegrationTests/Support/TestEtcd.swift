import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// The files of an etcd that speaks TLS, as `pgcluster tls etcd` writes them.
struct EtcdCertificateFiles: Sendable {
    var ca: String
    var serverCertificate: String
    var serverKey: String
    var clientCertificate: String
    var clientKey: String

    /// The files `pgcluster tls etcd --out DIR` wrote there.
    init(folder: String) {
        ca = "\(folder)/ca.crt"
        serverCertificate = "\(folder)/etcd-server.crt"
        serverKey = "\(folder)/etcd-server.key"
        clientCertificate = "\(folder)/pgcluster-client.crt"
        clientKey = "\(folder)/pgcluster-client.key"
    }

    var clientTLS: TLSFiles { TLSFiles(ca: ca, cert: clientCertificate, key: clientKey) }
}

/// A real etcd (Debian's etcd-server) started by a test on loopback, in its own folder, and
/// always stopped by its PID afterwards. Client port `port`, peer port `port + 1`.
/// With `tls`: https on the client port, `--client-cert-auth` against the files' CA.
final class TestEtcd: @unchecked Sendable {
    static let binary = "/usr/bin/etcd"
    let port: Int
    /// Where it listens: loopback, or the test hosts' bridge address so they reach it too.
    let address: String
    let folder: String
    let tls: EtcdCertificateFiles?
    /// After ``enableAuth(...)``: root's credentials, which the readiness probe uses.
    private(set) var root: EtcdClient.Credentials?
    private(set) var pid: pid_t = 0

    var endpoint: String { "\(tls == nil ? "http" : "https")://\(address):\(port)" }

    init(port: Int, address: String = "127.0.0.1", tls: EtcdCertificateFiles? = nil) throws {
        self.port = port
        self.address = address
        self.tls = tls
        folder = "\(Scratch.folder)/pgcluster-it-etcd-\(port)-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    }

    /// A client with the right certificate (with TLS) and `credentials`.
    func client(_ credentials: EtcdClient.Credentials? = nil, timeout: Double = 5) -> EtcdClient {
        EtcdClient(endpoints: [URL(string: endpoint)!], timeout: timeout, tls: tls?.clientTLS ?? TLSFiles(), credentials: credentials)
    }

    /// Turns etcd authentication on through the JSON gateway: a root user, and `user` with a
    /// role that may read and write the keys under `prefix` only (as `etcdctl role
    /// grant-permission --prefix` does). Each password goes into a 0600 file in the etcd's
    /// folder; the users' credentials are returned in order.
    func enableAuth(users: [(name: String, prefix: String)]) async throws -> [EtcdClient.Credentials] {
        let admin = client()
        func file(_ name: String, _ password: String) throws -> String {
            let path = "\(folder)/\(name).password"
            try (password + "\n").write(toFile: path, atomically: true, encoding: .utf8)
            chmod(path, 0o600)
            return path
        }
        let rootPassword = "root-\(UUID().uuidString.prefix(12))"
        _ = try await admin.call("/v3/auth/user/add", ["name": "root", "password": rootPassword])
        _ = try await admin.call("/v3/auth/user/grant", ["user": "root", "role": "root"])
        var made: [EtcdClient.Credentials] = []
        for user in users {
            let password = "pw-\(UUID().uuidString.prefix(12))"
            _ = try await admin.call("/v3/auth/user/add", ["name": user.name, "password": password])
            let role = "role-\(user.name)"
            _ = try await admin.call("/v3/auth/role/add", ["name": role])
            _ = try await admin.call(
                "/v3/auth/role/grant",
                [
                    "name": role,
                    "perm": [
                        "permType": "READWRITE", "key": EtcdClient.b64(user.prefix),
                        "range_end": EtcdClient.b64(EtcdClient.prefixEnd(user.prefix)),
                    ],
                ])
            _ = try await admin.call("/v3/auth/user/grant", ["user": user.name, "role": role])
            made.append(EtcdClient.Credentials(user: user.name, passwordFile: try file(user.name, password)))
        }
        _ = try await admin.call("/v3/auth/enable", [:])
        root = EtcdClient.Credentials(user: "root", passwordFile: try file("root", rootPassword))
        return made
    }

    /// Starts it (again, on the same data) and waits until it answers.
    func start() async throws {
        var argv = [
            Self.binary, "--name", "t", "--data-dir", "\(folder)/data",
            "--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
            "--listen-peer-urls", "http://\(address):\(port + 1)",
            "--initial-advertise-peer-urls", "http://\(address):\(port + 1)",
            "--initial-cluster", "t=http://\(address):\(port + 1)", "--log-level", "error",
        ]
        if let tls {
            argv += [
                "--cert-file", tls.serverCertificate, "--key-file", tls.serverKey, "--trusted-ca-file", tls.ca,
                "--client-cert-auth",
            ]
        }
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
        let client = client(root, timeout: 1)
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
func withEtcd(
    port: Int, address: String = "127.0.0.1", tls: EtcdCertificateFiles? = nil, _ body: (TestEtcd) async throws -> Void
) async throws {
    let etcd = try TestEtcd(port: port, address: address, tls: tls)
    do {
        try await etcd.start()
        try await body(etcd)
    } catch {
        etcd.remove()
        throw error
    }
    etcd.remove()
}
