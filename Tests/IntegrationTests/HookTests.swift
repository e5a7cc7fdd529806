import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// Issue 25: hooks after a change of primary, on real servers. Ports 22530-22539 (PgBouncer 22539).
@Suite("hooks on role change", .serialized, .clusterLimit)
struct HookTests {
    @Test("kill -9 under watch: onRoleChange re-points a real PgBouncer at the new primary and reloads it; writes through PgBouncer resume there, nothing acknowledged lost")
    func pgbouncer() async throws {
        let bouncer = "/usr/sbin/pgbouncer"
        try #require(FileManager.default.isExecutableFile(atPath: bouncer), "pgbouncer is not installed: run scripts/ensure-deps.sh")
        let listen = 22539
        let hooks = """
            hooks:
              onRoleChange: [/bin/sh, repoint-pgbouncer.sh]
              timeout: 5s

            """
        try await withWatchedCluster(name: "hk-bouncer", basePort: 22535, watch: hooks) { cluster, watcher in
            let watcher = try #require(watcher)
            // PgBouncer's files, in a folder of the servers' user (it refuses to run as root).
            let root = "\(cluster.root)/bouncer"
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            let login = try cluster.credentials().superuser
            let tls = cluster.caFile == nil ? "disable" : "require"
            // The hook an operator would write: the new primary's address into [databases], then SIGHUP.
            try """
            #!/bin/sh
            set -e
            sed -i "s/^postgres = .*/postgres = host=$PGCLUSTER_NEW_PRIMARY_HOST port=$PGCLUSTER_NEW_PRIMARY_PORT dbname=postgres/" bouncer/pgbouncer.ini
            kill -HUP "$(cat bouncer/pgbouncer.pid)"
            echo "pgbouncer now points at $PGCLUSTER_NEW_PRIMARY ($PGCLUSTER_NEW_PRIMARY_HOST:$PGCLUSTER_NEW_PRIMARY_PORT)"

            """.write(toFile: "\(cluster.root)/repoint-pgbouncer.sh", atomically: true, encoding: .utf8)
            try """
            [databases]
            postgres = host=127.0.0.1 port=\(cluster.port("node0")) dbname=postgres

            [pgbouncer]
            listen_addr = 127.0.0.1
            listen_port = \(listen)
            unix_socket_dir =
            auth_type = trust
            auth_file = \(root)/userlist.txt
            pool_mode = session
            server_tls_sslmode = \(tls)
            server_connect_timeout = 2
            server_login_retry = 1
            pidfile = \(root)/pgbouncer.pid
            logfile = \(root)/pgbouncer.log

            """.write(toFile: "\(root)/pgbouncer.ini", atomically: true, encoding: .utf8)
            try "\"\(login.user)\" \"\(login.password)\"\n".write(toFile: "\(root)/userlist.txt", atomically: true, encoding: .utf8)
            var argv = [bouncer, "\(root)/pgbouncer.ini"]
            if getuid() == 0 {
                let user = try #require(OSUser.named("postgres"), "running as root needs the OS user postgres")
                for path in [root, "\(root)/pgbouncer.ini", "\(root)/userlist.txt"] { chown(path, user.uid, user.gid) }
                argv = ["/usr/bin/setpriv", "--reuid=\(user.uid)", "--regid=\(user.gid)", "--init-groups", "--"] + argv
            }
            let pooler = try ChildProcess(argv, logPath: "\(root)/pgbouncer.out")
            do {
                let conninfo = "host=127.0.0.1 port=\(listen) dbname=postgres user=\(login.user) connect_timeout=2 sslmode=disable"
                func landsOn() -> Int? {
                    guard let connection = try? PGConnection.connect(conninfo: conninfo, password: login.password) else { return nil }
                    defer { connection.close() }
                    return (try? connection.query("SELECT inet_server_port()"))?.scalar.flatMap { Int($0) }
                }
                #expect(await cluster.eventually(20) { landsOn() == cluster.port("node0") }, "PgBouncer never reached node0:\n\(pooler.log)")
                try WriteLoad.prepare(conninfo: conninfo, password: login.password)
                let load = WriteLoad(conninfo: conninfo, password: login.password, clients: 4)
                load.start()
                #expect(await cluster.waitForAcks(load, atLeast: 200), "no writes through PgBouncer")
                try cluster.kill9Postmaster("node0")
                #expect(await watcher.waitFor("failed-over", timeout: 40), "\(watcher.log)")
                let newPrimary = try #require(cluster.onePrimary(besides: "node0"), "\(watcher.log)")
                let before = load.counts.acknowledged
                #expect(
                    await cluster.waitForAcks(load, atLeast: before + 200),
                    "writes did not resume through PgBouncer:\n\(pooler.log.suffix(3000))\n\(watcher.log.suffix(3000))")
                let summary = await load.stop()
                let present = try cluster.presentIds(newPrimary, summary.acknowledged)
                #expect(summary.acknowledged.filter { !present.contains($0) }.isEmpty, "acknowledged rows lost")
                #expect(landsOn() == cluster.port(newPrimary), "PgBouncer still points elsewhere:\n\(pooler.log.suffix(3000))")
                #expect(await cluster.eventually(10) { watcher.log.contains("pgbouncer now points at \(newPrimary)") }, "\(watcher.log)")
            } catch {
                await pooler.stop()
                throw error
            }
            await pooler.stop()
        }
    }

    @Test("kill -9 under watch: the hook moves the \"VIP\" to the new primary; a failing (exit 3) and a hanging, chattering hook (yes beside sleep 60, timeout 3 s) are reported beside the loop, its output capped, and the failover stands; switchover runs the hook too, and SIGTERM to it ends the hook")
    func vip() async throws {
        // The hanging hook also prints without end (`yes`): at most its last lines reach the
        // log (it held the watcher for a minute and took 1.5 GB before).
        let hooks = """
            hooks:
              onRoleChange: echo "$PGCLUSTER_NEW_PRIMARY $PGCLUSTER_REASON $PGCLUSTER_OLD_PRIMARY" > vip; exit 3
              onFailover: [/bin/sh, -c, "/usr/bin/yes hook-output-line & exec /bin/sleep 60"]
              timeout: 3s

            """
        try await withWatchedCluster(name: "hk-vip", basePort: 22530, synchronous: "{mode: async}", watch: hooks) {
            cluster, watcher in
            let watcher = try #require(watcher)
            let vip = "\(cluster.root)/vip"
            try cluster.kill9Postmaster("node0")
            #expect(await watcher.waitFor("failed-over", timeout: 40), "\(watcher.log)")
            let newPrimary = try #require(cluster.onePrimary(besides: "node0"), "\(watcher.log)")
            // The hooks run beside the loop, after the failover: waited for here.
            #expect(await cluster.eventually(30) { (try? String(contentsOfFile: vip, encoding: .utf8)) == "\(newPrimary) failover node0\n" })
            #expect(
                await cluster.eventually(30) {
                    watcher.lines("warning").contains { $0.contains("hook onFailover failed") && $0.contains("did not end within 3") }
                }, "\(watcher.log)")
            let warnings = watcher.lines("warning")
            #expect(warnings.contains { $0.contains("hook onRoleChange failed (exit 3") }, "\(watcher.log)")
            // The loop went on without waiting for the hanging hook: the next tick's rejoin of
            // node0 began while the hook ran out its 3 s (inside the tick, it came after).
            let rejoinAt = try #require(watcher.log.range(of: "rejoining node0")?.lowerBound, "\(watcher.log)")
            let hookEndAt = try #require(watcher.log.range(of: "hook onFailover failed")?.lowerBound, "\(watcher.log)")
            #expect(rejoinAt < hookEndAt, "\(watcher.log)")
            let chatter = watcher.log.components(separatedBy: "hook-output-line").count - 1
            #expect(chatter > 1 && chatter <= Hooks.linesShown, "\(chatter) lines of the hook's output logged (its last ones, killed at its timeout)")
            #expect(watcher.lines("failover-failed").isEmpty, "\(watcher.log)")
            // The failover stands: writes go to the new primary, the other standby follows.
            try cluster.sql(newPrimary, "CREATE TABLE after_hooks (id int)")
            let other = newPrimary == "node1" ? "node2" : "node1"
            #expect(await cluster.eventually(30) { try cluster.upstreamPort(of: other) == cluster.port(newPrimary) })
            // No hook is left running: the group of the hanging one was killed.
            #expect(Self.sleepers().isEmpty, "sleep 60 still runs: \(Self.sleepers())")

            // A person's switchover runs onRoleChange too (not onFailover), and exits 0.
            await watcher.stop()
            let back = await cluster.run(["switchover", "--candidate", other])
            #expect(back.status == 0, "\(back.stderr)\n\(back.stdout)")
            #expect(back.stdout.contains("hook onRoleChange failed (exit 3"), "\(back.stdout)")
            #expect((try? String(contentsOfFile: vip, encoding: .utf8)) == "\(other) switchover \(newPrimary)\n")

            // SIGTERM to a switchover while its hook runs: the hook's process group gets it
            // too, and the command exits 143 saying so (the hook's sleep outlived it before).
            let specText = try String(contentsOfFile: cluster.specPath, encoding: .utf8)
            try specText
                .replacingOccurrences(of: #"echo "$PGCLUSTER_NEW_PRIMARY $PGCLUSTER_REASON $PGCLUSTER_OLD_PRIMARY" > vip; exit 3"#, with: "echo $$ > hookpid; exec /bin/sleep 61")
                .replacingOccurrences(of: "timeout: 3s", with: "timeout: 5min")
                .write(toFile: cluster.specPath, atomically: true, encoding: .utf8)
            let errPath = "\(cluster.root)/interrupted.err"
            _ = FileManager.default.createFile(atPath: errPath, contents: nil)
            let switchover = Process()
            switchover.executableURL = URL(fileURLWithPath: TestCluster.binary)
            switchover.arguments = ["switchover", "--candidate", newPrimary, "-f", cluster.specPath]
            switchover.currentDirectoryURL = URL(fileURLWithPath: cluster.root)
            switchover.standardOutput = FileHandle.nullDevice
            switchover.standardError = FileHandle(forWritingAtPath: errPath)
            try switchover.run()
            defer { if switchover.isRunning { kill(switchover.processIdentifier, SIGKILL) } }
            let hookPID = await cluster.eventually(60) { FileManager.default.fileExists(atPath: "\(cluster.root)/hookpid") }
                ? (try? String(contentsOfFile: "\(cluster.root)/hookpid", encoding: .utf8)).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
                : nil
            let hook = try #require(hookPID, "the hook never ran: \((try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")")
            kill(switchover.processIdentifier, SIGTERM)
            #expect(await pollUntil(30) { !switchover.isRunning }, "switchover still runs 30 s after SIGTERM")
            let stderr = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
            #expect(switchover.terminationStatus == 143 && stderr.contains("interrupted by SIGTERM; passed on to the program it was running"), "\(switchover.terminationStatus): \(stderr)")
            #expect(await pollUntil(30) { !LocalHost.isAlive(hook) }, "the hook (PID \(hook)) outlived the switchover")
        }
    }

    /// PIDs of `/bin/sleep 60` processes (the hanging hook).
    static func sleepers() -> [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.filter { entry in
            guard Int(entry) != nil, let cmdline = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return false }
            return String(decoding: cmdline, as: UTF8.self) == "/bin/sleep\u{0}60\u{0}" && LocalHost.isAlive(pid_t(entry)!)
        }
    }
}
