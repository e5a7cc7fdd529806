import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// The ssh command line, and what each of ssh's failures is reported as. The messages
/// below are ssh's own (OpenSSH 9.2, Debian 12), copied from real runs against the test
/// hosts; Tests/IntegrationTests/TestHostsTests.swift provokes each one for real.
@Suite("ssh transport")
struct SSHTransportTests {
    let transport = SSHTransport(
        host: "10.213.7.11", user: "postgres", port: 22, identityFile: "/keys/id_ed25519", controlDirectory: "/srv/demo/ssh",
        knownHostsFile: "/srv/demo/known_hosts", connectTimeout: 3)

    @Test("batch mode, a connect timeout, one master per host, our known_hosts, the quoted program after --")
    func commandLine() {
        let command = transport.command(["cat", "/var/lib/pgcluster/demo/db 0/postgresql.conf"])
        #expect(command.executable.hasSuffix("/ssh"))
        #expect(
            command.arguments == [
                "-o", "BatchMode=yes", "-o", "ConnectTimeout=3", "-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=3",
                "-o", "ControlMaster=auto", "-o", "ControlPath=/srv/demo/ssh/%C", "-o", "ControlPersist=60",
                "-o", "StrictHostKeyChecking=accept-new", "-o", "UserKnownHostsFile=/srv/demo/known_hosts",
                "-o", "LogLevel=ERROR", "-p", "22", "-i", "/keys/id_ed25519", "-o", "IdentitiesOnly=yes",
                "-l", "postgres", "--", "10.213.7.11", "cat '/var/lib/pgcluster/demo/db 0/postgresql.conf'",
            ])
        #expect(command.input == nil)
        #expect(command.timeout == nil)
        #expect(transport.command(["true"], input: Data("x".utf8)).input == Data("x".utf8))
        // A deadline here, and on the host the same program under `timeout`, 2 s later.
        let bounded = transport.command(["/bin/sh", "-c", "exec sleep 60"], timeout: 24.5)
        #expect(bounded.timeout == 24.5)
        #expect(bounded.arguments.last == "timeout -s KILL 27 /bin/sh -c 'exec sleep 60'")
    }

    @Test("no identity file: ssh's defaults, and no IdentitiesOnly")
    func defaultKey() {
        var transport = transport
        transport.identityFile = nil
        #expect(!transport.command(["true"]).arguments.contains("-i"))
        #expect(!transport.command(["true"]).arguments.contains("IdentitiesOnly=yes"))
    }

    static let changedHostKey = """
        @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
        @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
        @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
        IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
        Someone could be eavesdropping on you right now (man-in-the-middle attack)!
        It is also possible that a host key has just been changed.
        The fingerprint for the ED25519 key sent by the remote host is
        SHA256:9+zPywXeWRMqzuz5e5rMjhW/592dRcgOjWmHTE5BxcQ.
        Please contact your system administrator.
        Add correct host key in /srv/demo/known_hosts to get rid of this message.
        Offending ED25519 key in /srv/demo/known_hosts:3
          remove with:
          ssh-keygen -f "/srv/demo/known_hosts" -R "10.213.7.11"
        Host key for 10.213.7.11 has changed and you have requested strict checking.
        Host key verification failed.
        """

    /// ssh's output (exit 255) → words the one-line message must hold.
    static let failures: [(output: String, expected: [String])] = [
        (changedHostKey, ["host 10.213.7.11", "different ssh host key", "/srv/demo/known_hosts:3", "refusing", "ssh-keygen -R '10.213.7.11'"]),
        // As ssh really writes it: each line ends in "\r\n".
        (changedHostKey.replacingOccurrences(of: "\n", with: "\r\n"), ["recorded in /srv/demo/known_hosts:3: refusing"]),
        ("postgres@10.213.7.11: Permission denied (publickey).\r\n", ["refused the key /keys/id_ed25519"]),
        ("Host key verification failed.", ["host 10.213.7.11", "could not be verified", "/srv/demo/known_hosts"]),
        ("postgres@10.213.7.11: Permission denied (publickey).", ["host 10.213.7.11", "refused the key /keys/id_ed25519", "user postgres", "authorized_keys"]),
        ("Received disconnect from 10.213.7.11 port 22:2: Too many authentication failures", ["refused the key"]),
        ("ssh: connect to host 10.213.7.11 port 22: Connection timed out", ["host 10.213.7.11 is unreachable", "timed out after 3 s", "check that it is up"]),
        (
            "mux_client_request_session: read from master failed: Broken pipe\nssh: connect to host 10.213.7.11 port 22: Connection timed out",
            ["host 10.213.7.11 is unreachable", "timed out"]
        ),
        ("ssh: connect to host 10.213.7.11 port 22: No route to host", ["host 10.213.7.11 is unreachable", "no route"]),
        ("ssh: connect to host 10.213.7.11 port 22: Connection refused", ["host 10.213.7.11 refused the ssh connection", "sshd runs there", "port 22"]),
        ("ssh: Could not resolve hostname 10.213.7.11: Name or service not known", ["cannot resolve host name 10.213.7.11", "sshHost"]),
        ("kex_exchange_identification: Connection closed by remote host", ["host 10.213.7.11 is unreachable", "closed"]),
        ("channel 11: open failed: administratively prohibited: open failed", ["MaxSessions"]),
    ]

    @Test("each ssh failure is one line naming the host and what to do", arguments: failures.indices)
    func failure(index: Int) throws {
        let (output, expected) = Self.failures[index]
        let error = try #require(transport.failure(output), "not recognised: \(output)")
        #expect(error.details.isEmpty)
        #expect(!error.message.contains("\n"))
        for words in expected {
            #expect(error.message.contains(words), "\(error.message) lacks \(words.debugDescription)")
        }
    }

    @Test("a program that itself exits 255 is not mistaken for ssh")
    func remoteExit255() {
        #expect(transport.failure("") == nil)
        #expect(transport.failure("pg_ctl: could not start server\nExamine the log output.") == nil)
    }

    @Test("a host key changed on another port names the [host]:port entry")
    func otherPort() throws {
        var transport = transport
        transport.port = 2222
        let error = try #require(transport.failure(Self.changedHostKey))
        #expect(error.message.contains("ssh-keygen -R '[10.213.7.11]:2222'"))
    }

    @Test("a socket folder too long for a Unix socket is refused before ssh runs")
    func controlDirectoryTooLong() async {
        var transport = transport
        transport.controlDirectory = "/tmp/" + String(repeating: "x", count: SSHTransport.maxControlDirectoryLength)
        await #expect(throws: ClusterError.self) { try await transport.run(["true"]) }
    }
}

/// A command's `input` reaches the program's stdin, whatever its size, and a program that
/// does not read it cannot hang or kill pgcluster.
@Suite("stdin of a command")
struct CommandInputTests {
    @Test("input reaches stdin byte for byte, also past a pipe's buffer while output flows back")
    func roundTrip() async throws {
        for size in [0, 1, 65_537, 3_000_000] {
            let data = Data((0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) & 0x7f | 0x20 })
            let result = try await LocalRunner().run(Command("/bin/cat", [], input: data))
            #expect(result.status == 0)
            #expect(Data(result.output.utf8) == data, "size \(size)")
        }
    }

    @Test("a program that exits without reading its input")
    func unread() async throws {
        let result = try await LocalRunner().run(Command("/bin/true", [], input: Data(count: 4_000_000)))
        #expect(result.status == 0)
    }

    @Test("without input, stdin is empty")
    func noInput() async throws {
        let result = try await LocalRunner().run(Command("/usr/bin/wc", ["-c"]))
        #expect(result.output.trimmingCharacters(in: .whitespacesAndNewlines) == "0")
    }
}

/// Issue 20: an ssh failure pgcluster does not recognise is still a failed transport, never
/// a program's (empty) answer: "could not ask" must not read as "no postmaster".
@Suite("ssh: an unrecognised exit 255 is a failed transport")
struct SSHUnknownFailureTests {
    /// Runs, in place of ssh, a real program that ends as ssh ends when it fails.
    struct Exits255: CommandRunning {
        let message: String
        func run(_ command: Command) async throws(ClusterError) -> CommandResult {
            try await LocalRunner().run(Command("/bin/sh", ["-c", "printf '%s\\r\\n' \"$1\" >&2; exit 255", "sh", message]))
        }
    }

    @Test("an unknown message with exit 255 throws, naming the host; a known one says what to check")
    func unknown255() async throws {
        let transport = SSHTransport(
            host: "10.213.7.11", user: "postgres", controlDirectory: "/tmp/pgc-ssh-test",
            knownHostsFile: "/tmp/pgc-ssh-test/known_hosts", runner: Exits255(message: "kex_exchange_identification: something new"))
        do {
            let result = try await transport.run(["/bin/sh", "-c", "exit 0"])
            Issue.record("read as the program's answer: exit \(result.status), output '\(result.output)'")
        } catch {
            #expect(error.message.contains("10.213.7.11") && error.message.contains("255"), "\(error.message)")
        }
        var known = transport
        known.runner = Exits255(message: "ssh: connect to host 10.213.7.11 port 22: No route to host")
        do {
            _ = try await known.run(["true"])
            Issue.record("no error")
        } catch {
            #expect(error.message.contains("unreachable"), "\(error.message)")
        }
    }
}
