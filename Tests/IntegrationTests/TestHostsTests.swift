import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// The test hosts are hosts in miniature, reached the way the ssh backend reaches real
/// ones (``SSHTransport``): each answers ssh as root and as postgres, keeps its files to
/// itself, can be cut off and healed, and its ssh failures read as one clear line.
@Suite("test hosts over ssh", .serialized, .clusterLimitOnTestHosts, .enabled(if: OSUser.isRoot, "test hosts need root (namespaces, sshd)"))
struct TestHostsTests {
    @Test("ssh reaches every host, as root and as postgres, arguments arrive exactly, and a deadline ends the program there too")
    func reachEveryHost() async throws {
        try await withTestHosts(count: 3) { hosts in
            for host in hosts.hosts {
                for user in ["root", "postgres"] {
                    let ssh = hosts.transport(host, user: user)
                    let result = try await ssh.check(["/bin/sh", "-c", "id -un; ip -o -4 addr show eth0"], what: "id")
                    let lines = result.output.split(separator: "\n")
                    #expect(lines.first == Substring(user))
                    #expect(result.output.contains(" \(TestHosts.address(host))/24 "), "h\(host): \(result.output)")
                }
            }
            // Through the remote login shell (bash) and back, byte for byte.
            let hostile = ["", "it's", "$HOME", "`id`", "a;b", "two\nlines", "\\", "é 🐘", "*", "--x=y z"]
            let echoed = try await hosts.transport(1, user: "postgres").check(["printf", "%s\\0"] + hostile, what: "printf")
            #expect(echoed.output.split(separator: "\0", omittingEmptySubsequences: false).dropLast().map(String.init) == hostile)
            // Stdin reaches the remote program.
            let input = Data("three\nlines\nin\n".utf8)
            let counted = try await hosts.transport(2).check(["wc", "-l"], input: input, what: "wc")
            #expect(counted.output.trimmingCharacters(in: .whitespacesAndNewlines) == "3")
            // Hosts reach each other over the bridge (standbys stream from their primary so).
            let direct = await hosts.exec(1, ["bash", "-c", "echo >/dev/tcp/\(TestHosts.address(2))/22"])
            #expect(direct.status == 0, "h1 cannot reach h2: \(direct.stderr)")

            // A deadline ends the program on the host too, not only the ssh client here.
            let pidFile = "/tmp/pgct-deadline.pid"
            do throws(ClusterError) {
                let ran = try await hosts.transport(1).run(["/bin/sh", "-c", "echo $$ > \(pidFile); exec sleep 60"], timeout: 2)
                Issue.record("sleep 60 on h1 returned before its 2 s deadline: \(ran.status) \(ran.output)")
            } catch {
                #expect(error.message.contains("did not end within"), "\(error.message)")
            }
            // The host's limit is 4 s from the start; 30 s at most here (a busy machine is slow).
            #expect(await hosts.programEnds(1, pidFile: pidFile), "the sleep on h1 outlived its deadline")

            // A server program (pg_rewind, pg_basebackup: no deadline) ends on the host when
            // its command does: its task cancelled (the watcher stopping a rejoin), or the
            // process that holds ssh's stdin gone (pgcluster SIGKILLed: the kernel closes it).
            let server = SSHHost(transport: hosts.transport(2), serverUser: "postgres")
            let cancelledPid = "/tmp/pgct-cancelled.pid"
            let running = Task {
                try await server.run(
                    ["/bin/sh", "-c", "echo $$ > \(cancelledPid); exec sleep 60"], environment: ["PGCT": "a value"], input: nil,
                    progress: false)
            }
            #expect(await hosts.endsOnHost(2, pidFile: cancelledPid) { running.cancel() }, "the cancelled command's program runs on")
            _ = try? await running.value

            let orphanPid = "/tmp/pgct-orphan.pid"
            let command = hosts.transport(2).command(
                ["/bin/sh", "-c", SSHHost.tied, "sh", "0", "/bin/sh", "-c", "echo $$ > \(orphanPid); exec sleep 60"], tied: true)
            let ssh = Process()
            ssh.executableURL = URL(fileURLWithPath: command.executable)
            ssh.arguments = command.arguments
            let stdin = Pipe()
            ssh.standardInput = stdin
            ssh.standardOutput = FileHandle.nullDevice
            try ssh.run()
            #expect(await hosts.endsOnHost(2, pidFile: orphanPid) { try? stdin.fileHandleForWriting.close() }, "the orphaned program runs on")
            ssh.waitUntilExit()
        }
    }

    @Test("a file at the ssh.dir, in /tmp, /run/postgresql or a home stays on its host")
    func filesStayOnTheirHost() async throws {
        try await withTestHosts(count: 2) { hosts in
            let tag = UUID().uuidString.prefix(8).lowercased()
            let h1 = hosts.transport(1, user: "postgres")
            let h2 = hosts.transport(2, user: "postgres")
            let contents = Data("host one's file: it's $HOME\n".utf8)
            let atSSHDir = "\(TestHosts.sshDir)/probe-\(tag)"
            try await h1.writeFile(atSSHDir, contents: contents, mode: 0o640)
            #expect(try await h1.check(["cat", atSSHDir], what: "cat").output == String(decoding: contents, as: UTF8.self))
            #expect(try await h1.check(["stat", "-c", "%a %U", atSSHDir], what: "stat").output == "640 postgres\n")
            // Root writes a file for postgres: mode and owner as asked, nothing left beside it.
            let root1 = hosts.transport(1, user: "root")
            try await root1.writeFile("\(TestHosts.sshDir)/owned-\(tag)", contents: Data("x".utf8), mode: 0o600, owner: "postgres")
            #expect(try await root1.check(["stat", "-c", "%a %U", "\(TestHosts.sshDir)/owned-\(tag)"], what: "stat").output == "600 postgres\n")
            #expect(try await root1.check(["ls", "-A", TestHosts.sshDir], what: "ls").output == "owned-\(tag)\nprobe-\(tag)\n")

            for path in [atSSHDir, "/tmp/probe-\(tag)", "/run/postgresql/probe-\(tag)", "/var/lib/postgresql/probe-\(tag)"] {
                if path != atSSHDir { try await h1.check(["touch", path], what: "touch") }
                #expect(try await h1.run(["test", "-e", path]).status == 0, "\(path) on h1")
                #expect(try await h2.run(["test", "-e", path]).status == 1, "\(path) leaks to h2")
                #expect(!FileManager.default.fileExists(atPath: path), "\(path) leaks to this machine")
            }
            // root's home too: this machine's ~/.bashrc does not run on the hosts.
            try await root1.check(["touch", "/root/probe-\(tag)"], what: "touch")
            #expect(!FileManager.default.fileExists(atPath: "/root/probe-\(tag)"))
        }
    }

    @Test("partition cuts a host off within the connect timeout, exec still reaches it, heal restores it")
    func partitionAndHeal() async throws {
        try await withTestHosts(count: 2) { hosts in
            let timeout = 2
            let ssh = hosts.transport(1, connectTimeout: timeout)
            try await ssh.check(["true"], what: "true")
            await ssh.closeConnection()

            // A fresh connection to a cut-off host: the connect timeout.
            try await hosts.partition(1)
            var started = Date()
            let fresh = await #expect(throws: ClusterError.self) { try await ssh.run(["true"]) }
            var elapsed = Date().timeIntervalSince(started)
            #expect(fresh?.message.contains("host \(TestHosts.address(1)) is unreachable by ssh") == true, "\(fresh?.message ?? "")")
            #expect(elapsed < Double(timeout) + 2.5, "took \(elapsed) s")
            let freshElapsed = elapsed
            let inside = await hosts.exec(1, ["ip", "-o", "link", "show", "eth0"])
            #expect(inside.status == 0 && inside.stdout.contains("state DOWN"), "exec: \(inside.stdout) \(inside.stderr)")
            #expect(try await hosts.transport(2).run(["true"]).status == 0, "h2 must stay reachable")

            try await hosts.heal(1)
            try await ssh.check(["true"], what: "true after heal")

            // An open master connection to a host that goes silent: given up after about the
            // timeout (keepalives), then one fresh attempt: about twice the timeout.
            try await hosts.partition(1)
            started = Date()
            let warm = await #expect(throws: ClusterError.self) { try await ssh.run(["true"]) }
            elapsed = Date().timeIntervalSince(started)
            #expect(warm?.message.contains("is unreachable by ssh") == true, "\(warm?.message ?? "")")
            #expect(elapsed < 2 * Double(timeout) + 4, "took \(elapsed) s")
            print(
                "unreachable host, connect timeout \(timeout) s: a fresh connection fails after \(String(format: "%.1f", freshElapsed)) s,"
                    + " an open master connection after \(String(format: "%.1f", elapsed)) s")
            try await hosts.heal(1)
            try await ssh.check(["true"], what: "true after the second heal")
        }
    }

    @Test("a changed host key is refused, naming the known_hosts line to remove")
    func changedHostKey() async throws {
        try await withTestHosts(count: 2) { hosts in
            let ssh = hosts.transport(2)
            try await ssh.check(["true"], what: "first contact")
            await ssh.closeConnection()
            try await hosts.rekey(2)

            let error = await #expect(throws: ClusterError.self) { try await ssh.run(["touch", "/tmp/ran"]) }
            let message = error?.message ?? ""
            #expect(message.contains("host \(TestHosts.address(2)) presents a different ssh host key"), "\(message)")
            #expect(message.contains("\(hosts.localDir)/known_hosts:1"), "\(message)")
            #expect(message.contains("refusing to connect"))
            #expect(await hosts.exec(2, ["test", "-e", "/tmp/ran"]).status == 1, "the command ran anyway")

            // Doing what the message says lets the new key in.
            try await LocalRunner().check(
                Command("/usr/bin/ssh-keygen", ["-R", TestHosts.address(2), "-f", "\(hosts.localDir)/known_hosts"]), what: "ssh-keygen -R")
            try await ssh.check(["true"], what: "after ssh-keygen -R")
        }
    }

    @Test("a key the host does not accept is refused in one line")
    func refusedKey() async throws {
        try await withTestHosts(count: 1) { hosts in
            let other = "\(hosts.localDir)/other_key"
            try await LocalRunner().check(Command("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", other]), what: "ssh-keygen")
            let ssh = hosts.transport(1, user: "postgres", identityFile: other)
            let error = await #expect(throws: ClusterError.self) { try await ssh.run(["true"]) }
            #expect(
                error?.message
                    == "host \(TestHosts.address(1)) refused the key \(other) for user postgres: add its public key to"
                    + " ~postgres/.ssh/authorized_keys on \(TestHosts.address(1)), or set ssh.identityFile to a key it accepts")
        }
    }

    @Test("down leaves no namespace, link, sshd, process or folder behind")
    func downLeavesNothing() async throws {
        try await withTestHosts(count: 2, operatorHost: true) { hosts in
            let sshds = await hosts.sshdPIDs()
            #expect(sshds.count == 2)
            // A process left running on a host, as a postmaster would be.
            let started = try await hosts.transport(1, user: "postgres").check(
                ["/bin/sh", "-c", "setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $!"], what: "sleep")
            let sleeper = try #require(pid_t(started.output.trimmingCharacters(in: .whitespacesAndNewlines)))
            #expect(kill(sleeper, 0) == 0)
            for host in hosts.hosts { await hosts.transport(host, user: "postgres").closeConnection() }

            let down = await TestHosts.script(["down"])
            #expect(down.status == 0, "\(down.stderr)")
            let namespaces = try await LocalRunner().check(Command("/usr/sbin/ip", ["netns", "list"]), what: "ip netns").output
            #expect(!namespaces.contains("pgct-"), "\(namespaces)")
            let links = try await LocalRunner().check(Command("/usr/sbin/ip", ["-o", "link", "show"]), what: "ip link").output
            #expect(!links.contains("pgct-"), "\(links)")
            for pid in sshds + [sleeper] { #expect(!Self.runs(pid), "pid \(pid) still runs") }
            #expect(!FileManager.default.fileExists(atPath: "/run/pgcluster-test-hosts"))
            #expect(!FileManager.default.fileExists(atPath: TestHosts.sshDir))
            if FileManager.default.isExecutableFile(atPath: "/usr/sbin/iptables") {
                let rule = try await LocalRunner().run(
                    Command("/usr/sbin/iptables", ["-C", "FORWARD", "-i", "pgct-br0", "-o", "pgct-br0", "-j", "ACCEPT"]))
                #expect(rule.status != 0, "the FORWARD rule is still there")
            }
            // And a second down is harmless.
            #expect(await TestHosts.script(["down"]).status == 0)
        }
    }

    /// The process exists and is not a zombie (PID 1 may reap what `down` killed a little later).
    static func runs(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return false }
        return stat[stat.index(after: close)...].split(separator: " ").first != "Z"
    }

    @Test("figures: a command over the open master connection against a fresh ssh handshake")
    func warmAgainstFresh() async throws {
        try await withTestHosts(count: 1) { hosts in
            let ssh = hosts.transport(1, user: "postgres")
            func milliseconds(_ body: () async throws -> Void) async rethrows -> Double {
                let start = ContinuousClock.now
                try await body()
                let elapsed = ContinuousClock.now - start
                return Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
            }
            var fresh: [Double] = []
            var warm: [Double] = []
            for _ in 0..<7 {
                await ssh.closeConnection()
                fresh.append(try await milliseconds { try await ssh.check(["true"], what: "fresh") })
                for _ in 0..<3 { warm.append(try await milliseconds { try await ssh.check(["true"], what: "warm") }) }
            }
            let median = { (values: [Double]) in values.sorted()[values.count / 2] }
            print(
                "ssh to a test host (median): fresh handshake \(String(format: "%.1f", median(fresh))) ms,"
                    + " over the open master \(String(format: "%.1f", median(warm))) ms")
            #expect(median(warm) < median(fresh))
        }
    }
}

extension TestHosts {
    /// Waits (30 s at most) until `pidFile` on `host` names a running program, does `end`,
    /// then waits (30 s at most) until that program no longer runs there: whether it did.
    func endsOnHost(_ host: Int, pidFile: String, _ end: () -> Void) async -> Bool {
        let started = await exec(host, [
            "/bin/sh", "-c",
            "i=0; until [ -s \(pidFile) ] && kill -0 \"$(cat \(pidFile))\" 2>/dev/null; do [ $i -lt 300 ] || exit 1; sleep 0.1; i=$((i + 1)); done",
        ])
        guard started.status == 0 else {
            Issue.record("the program never started on h\(host): \(started.stderr)")
            return false
        }
        end()
        return await programEnds(host, pidFile: pidFile)
    }

    /// Whether the program `pidFile` on `host` names no longer runs there within 30 s (the
    /// file removed then).
    func programEnds(_ host: Int, pidFile: String) async -> Bool {
        let ended = await exec(host, [
            "/bin/sh", "-c",
            "pid=$(cat \(pidFile)) || exit 2; i=0; while kill -0 \"$pid\" 2>/dev/null; do [ $i -lt 300 ] || exit 1; sleep 0.1; i=$((i + 1)); done; rm -f \(pidFile)",
        ])
        return ended.status == 0
    }
}
