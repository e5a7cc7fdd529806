import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// Test hosts made by `scripts/test-hosts.sh`: h1...hN, each a network namespace on the
/// bridge pgct-br0 with its own address, its own mount namespace (its own ssh.dir, /tmp,
/// /run/postgresql and homes) and its own sshd, which admits root and postgres with
/// ``keyFile``. There is one set of them on the machine at a time: ``withTestHosts``
/// takes a lock for the whole body, so suites (and test processes) wait for each other.
final class TestHosts: @unchecked Sendable {
    static let script: String = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("scripts/test-hosts.sh").path
    /// The client key the script makes at each `up` (a new one each time).
    static let keyFile = "/run/pgcluster-test-hosts/id_ed25519"
    /// Where each host has its own folder, owned by postgres (the ssh.dir of the specs).
    static let sshDir = "/var/lib/pgcluster-test"
    /// This machine's address on the bridge, as the hosts see it.
    static let bridgeAddress = "10.213.7.1"
    static let operatorAddress = "10.213.7.10"

    let count: Int
    /// A folder of this machine for the tests' ssh state (known_hosts, master sockets).
    let localDir: String

    fileprivate init(count: Int) throws {
        self.count = count
        // Short: the ssh master sockets live here (see SSHTransport.maxControlDirectoryLength).
        localDir = "/tmp/pgct-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: "\(localDir)/ssh", withIntermediateDirectories: true)
    }

    /// h1 is 10.213.7.11, h2 10.213.7.12, ...
    static func address(_ host: Int) -> String { "10.213.7.\(10 + host)" }
    var hosts: [Int] { Array(1...count) }

    /// How the tests reach `host` by ssh, as `user`, with the script's key (or another).
    func transport(_ host: Int, user: String = "root", identityFile: String? = nil, connectTimeout: Int = 3) -> SSHTransport {
        SSHTransport(
            host: Self.address(host), user: user, identityFile: identityFile ?? Self.keyFile,
            controlDirectory: "\(localDir)/ssh", knownHostsFile: "\(localDir)/known_hosts", connectTimeout: connectTimeout)
    }

    // MARK: The script

    /// Runs `scripts/test-hosts.sh ARGS` (stdout and stderr to files: sshd must not hold our pipe).
    @discardableResult
    static func script(_ arguments: [String], timeout: Double = 120) async -> RunResult {
        await Blocking.run { TestCluster.spawnWithFiles(["/bin/bash", script] + arguments, timeout: timeout) }
    }

    /// Runs `argv` on `host` through nsenter, not ssh: it works while the host is cut off.
    @discardableResult
    func exec(_ host: Int, _ argv: [String]) async -> RunResult {
        await Self.script(["exec", "h\(host)"] + argv)
    }

    func partition(_ host: Int) async throws { try await partition("h\(host)") }

    func heal(_ host: Int) async throws { try await heal("h\(host)") }

    /// Cuts a host (h1...) or the operator namespace (`op`) off: its link down, inside it.
    func partition(_ name: String) async throws {
        let result = await Self.script(["partition", name])
        try #require(result.status == 0, "partition \(name): \(result.stderr)")
    }

    func heal(_ name: String) async throws {
        let result = await Self.script(["heal", name])
        try #require(result.status == 0, "heal \(name): \(result.stderr)")
    }

    /// Gives the host's sshd a new host key, as a reinstalled machine would have.
    func rekey(_ host: Int) async throws {
        let result = await Self.script(["rekey", "h\(host)"])
        try #require(result.status == 0, "rekey h\(host): \(result.stderr)")
    }

    /// Each host's name (h1..., op) and the pid of its sshd, from `status`, in its order.
    func sshds() async -> [(host: String, pid: pid_t)] {
        let status = await Self.script(["status"])
        return status.stdout.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count > 1, fields[0] == "host:",
                let pid = fields.first(where: { $0.hasPrefix("sshd=") }).flatMap({ pid_t($0.dropFirst(5)) })
            else { return nil }
            return (String(fields[1]), pid)
        }
    }

    /// The pid of each host's sshd.
    func sshdPIDs() async -> [pid_t] { await sshds().map(\.pid) }

    /// The pid of the sshd of `name` (h1..., op).
    func sshdPID(_ name: String) async -> pid_t? { await sshds().first { $0.host == name }?.pid }

    /// Closes the master connections of every host and user, then removes the hosts and our folder.
    fileprivate func teardown() async {
        for host in hosts {
            for user in ["root", "postgres"] { await transport(host, user: user).closeConnection() }
        }
        let down = await Self.script(["down"])
        if down.status != 0 { print("test-hosts.sh down failed (\(down.status)):\n\(down.stderr)") }
        try? FileManager.default.removeItem(atPath: localDir)
    }
}

/// Runs `body` with `count` fresh test hosts (and the operator namespace when asked), and
/// always removes them afterwards, pass or fail. Any hosts a crashed earlier run left
/// behind are removed first.
func withTestHosts(count: Int = 3, operatorHost: Bool = false, _ body: (TestHosts) async throws -> Void) async throws {
    // A suite with `.clusterLimitOnTestHosts` took the lock before its slot.
    var lock: TestHostsLock?
    if !TestHostsLock.held { lock = try await TestHostsLock.acquire() }
    defer { lock?.release() }
    await TestHosts.script(["down"])
    let hosts = try TestHosts(count: count)
    // Long enough for `up` to install openssh-server with apt on a clean machine.
    let up = await TestHosts.script(["up", String(count)] + (operatorHost ? ["--operator"] : []), timeout: 900)
    guard up.status == 0 else {
        await hosts.teardown()
        Issue.record("test-hosts.sh up \(count) failed (\(up.status)):\n\(up.stderr)\n\(up.stdout)")
        throw ClusterError("test hosts could not be made")
    }
    do {
        try await body(hosts)
    } catch {
        await hosts.teardown()
        throw error
    }
    await hosts.teardown()
}

/// One set of test hosts per machine: an exclusive flock, which also keeps two suites of
/// one test process apart (each takes its own open file description).
struct TestHostsLock {
    let fd: Int32

    /// True inside a test whose trait (``ClusterLimitTrait/testHosts``) already holds the lock.
    @TaskLocal static var held = false

    static func acquire() async throws -> TestHostsLock {
        let fd = open("/tmp/pgcluster-test-hosts.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw ClusterError("cannot open the test hosts' lock: \(String(cString: strerror(errno)))") }
        let locked = await Blocking.run { flock(fd, LOCK_EX) == 0 }
        guard locked else {
            close(fd)
            throw ClusterError("cannot lock the test hosts")
        }
        return TestHostsLock(fd: fd)
    }

    func release() {
        flock(fd, LOCK_UN)
        close(fd)
    }
}
