import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// Issue 20, "acknowledged means kept, at every seam": each defect reproduced on real
/// servers, asserting the rows present and the roles after the scenario. Ports 21900-21929, 21940-21949.
@Suite("seams: intent before action, strict durability, the newest timeline", .serialized, .clusterLimit)
struct SeamsTests {
    @Test("a quorum change whose wait fails is pending: failover refuses while the standby that confirmed commits is gone")
    func pendingQuorumChange() async throws {
        try await withCluster(name: "seam-pending", basePort: 21900, standbys: 3, synchronous: "{mode: any, count: 1}") { cluster in
            try await cluster.initCluster()
            let first = await cluster.run(["quorum", "--any", "1", "--standbys", "node1,node2"])
            #expect(first.status == 0, "\(first.stderr)")
            // Set, but its wait gives up at once: exit 1, and the primary waits for node3 alone.
            let second = await cluster.run(["quorum", "--any", "1", "--standbys", "node3", "--timeout", "0"])
            #expect(second.status == 1, "\(second.stderr)")
            #expect(second.stderr.contains("pending"), "\(second.stderr)")
            #expect(try cluster.sql("node0", "SHOW synchronous_standby_names").scalar == "ANY 1 (\"node3\")")

            #expect(await cluster.run(["stop", "node1", "node2"]).status == 0)
            try cluster.sql("node0", "CREATE TABLE acked (id int PRIMARY KEY)")
            try cluster.sql("node0", "INSERT INTO acked SELECT generate_series(1, 100)")  // confirmed by node3 alone
            try cluster.kill9Postmaster("node0")
            #expect(await cluster.run(["stop", "node3"]).status == 0)
            let started = await cluster.run(["start", "node1", "node2"])
            #expect(started.status == 0, "\(started.stderr)")

            // The guard proves the quorum under the pending setting too: node3 must answer.
            let refused = await cluster.run(["failover"])
            #expect(refused.status == 2, "failover went ahead without node3: \(refused.stdout)\n\(refused.stderr)")
            #expect(refused.stderr.contains("node3") && refused.stderr.contains("pending"), "\(refused.stderr)")
            #expect(cluster.primaries().isEmpty)

            // node3 back: it is the freshest, promoted, and every acknowledged row is there.
            #expect(await cluster.run(["start", "node3"]).status == 0)
            let failover = await cluster.run(["failover", "--json"])
            #expect(failover.status == 0, "\(failover.stderr)")
            #expect(try cluster.json(failover)["candidate"] as? String == "node3")
            #expect(try cluster.sql("node3", "SELECT count(*) FROM acked").scalar == "100")
        }
    }

    @Test("durability strict never lowers: a primary and one standby under ANY 1, kill -9, the watcher fails over and commits wait until a standby streams")
    func strictNeverLowers() async throws {
        try await withWatchedCluster(name: "seam-strict", basePort: 21910, standbys: 1) { cluster, watcher in
            let watcher = try #require(watcher)
            try cluster.sql("node0", "CREATE TABLE acked (id int PRIMARY KEY)")
            try cluster.sql("node0", "INSERT INTO acked VALUES (1)")
            try cluster.kill9Postmaster("node0")
            #expect(await cluster.eventually(30) { cluster.onePrimary(besides: "node0") == "node1" }, "\(watcher.log)")
            // Never emptied: the mode stays ANY 1 over the old primary until it streams again.
            var seen: Set<String> = []
            let rejoined = await cluster.eventually(90) {
                if let names = try? cluster.sql("node1", "SHOW synchronous_standby_names").scalar { seen.insert(names) }
                return try cluster.upstreamPort(of: "node0") == cluster.port("node1")
            }
            #expect(rejoined, "node0 was not rejoined:\n\(watcher.log)")
            #expect(!seen.contains(""), "synchronous_standby_names was emptied: \(seen)\n\(watcher.log)")
            #expect(try cluster.sql("node1", "SHOW synchronous_standby_names").scalar == "ANY 1 (\"node0\")")
            #expect(watcher.lines("lowered").isEmpty, "\(watcher.log)")
            // A commit now is acknowledged only with node0 confirming it.
            try cluster.sql("node1", "INSERT INTO acked VALUES (2)")
            #expect(try cluster.sql("node1", "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'node0'").scalar == "quorum")
            #expect(await cluster.eventually { try cluster.sql("node0", "SELECT count(*) FROM acked").scalar == "2" })
        }
    }

    @Test("a switchover killed right after its promotion: the new primary commits under ANY 1 already, and the other standby streams from it")
    func switchoverPromotesUnderQuorum() async throws {
        try await withCluster(name: "seam-switch", basePort: 21940, synchronous: "{mode: any, count: 1}") { cluster in
            try await cluster.initCluster()
            try cluster.sql("node0", "CREATE TABLE acked (id int PRIMARY KEY)")
            let interrupted = await cluster.run(
                ["switchover", "--candidate", "node1"], environment: ["PGCLUSTER_TEST_STOP_AFTER": "switchover-promote"])
            #expect(interrupted.status == 86, "\(interrupted.stdout)\n\(interrupted.stderr)")
            #expect(cluster.primaries() == ["node1"])
            // Set before the promotion: not one commit on node1 was acknowledged by node1 alone.
            let names = try cluster.sql("node1", "SHOW synchronous_standby_names").scalar ?? ""
            #expect(names.hasPrefix("ANY 1 (") && names.contains("node0") && names.contains("node2"), "\(names)")
            // node2 streamed through node1 before the stop and followed its promotion by itself.
            #expect(await cluster.eventually(30) { try cluster.upstreamPort(of: "node2") == cluster.port("node1") })
            try cluster.sql("node1", "INSERT INTO acked VALUES (1)")
            #expect(
                try cluster.sql("node1", "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'node2'").scalar
                    == "quorum")
            #expect(await cluster.eventually { try cluster.sql("node2", "SELECT count(*) FROM acked").scalar == "1" })
        }
    }

    @Test("a switchover that stops before its promotion leaves the primary the primary: killed before the stop, start and the watcher keep it; one whose candidate's replay is paused resumes it and succeeds")
    func switchoverStoppedEarly() async throws {
        try await withWatchedCluster(name: "seam-early", basePort: 21950, startWatcher: false) { cluster, _ in
            try cluster.sql("node0", "CREATE TABLE acked (id int PRIMARY KEY)")
            let interrupted = await cluster.run(
                ["switchover", "--candidate", "node1"], environment: ["PGCLUSTER_TEST_STOP_AFTER": "switchover-ready"])
            #expect(interrupted.status == 86, "\(interrupted.stdout)\n\(interrupted.stderr)")
            let state = try String(contentsOfFile: "\(cluster.dataRoot)/state.json", encoding: .utf8)
            #expect(state.contains("\"promotesTo\" : 2"), "the intent was not recorded before the kill: \(state)")
            // node1 still streams from node0: it was not promoted, and node0 is no deposed primary.
            #expect(cluster.primaries() == ["node0"])
            #expect(await cluster.run(["stop", "node0"]).status == 0)
            let start = await cluster.run(["start", "node0"])
            #expect(start.status == 0, "start refused the primary the switchover left in place: \(start.stderr)")
            #expect(await cluster.eventually(30) { try cluster.upstreamPort(of: "node1") == cluster.port("node0") })
            let watcher = try WatchProcess(cluster)
            #expect(await watcher.waitFor("start"), "\(watcher.log)")
            try cluster.sql("node0", "INSERT INTO acked VALUES (1)")
            #expect(await cluster.eventually(10) { !watcher.lines("ok").isEmpty }, "\(watcher.log)")
            #expect(watcher.lines("fence").isEmpty && watcher.lines("failover").isEmpty, "\(watcher.log)")
            _ = await watcher.stop()
            #expect(cluster.primaries() == ["node0"])

            // The candidate's replay paused: the switchover resumes it, not waits 30 s and gives up.
            try cluster.sql("node1", "SELECT pg_wal_replay_pause()")
            try cluster.sql("node0", "INSERT INTO acked SELECT generate_series(2, 1000)")
            let switched = await cluster.run(["switchover", "--candidate", "node1"])
            #expect(switched.status == 0, "\(switched.stderr)")
            #expect(switched.stderr.contains("resuming it"), "\(switched.stderr)")
            #expect(cluster.primaries() == ["node1"])
            #expect(try cluster.sql("node1", "SELECT count(*) FROM acked").scalar == "1000")
        }
    }

    @Test("the record lags a promotion (killed after re-pointing): the watcher keeps the newest timeline and fences the recorded primary")
    func newestTimelineWins() async throws {
        try await withWatchedCluster(name: "seam-newest", basePort: 21920, startWatcher: false) { cluster, _ in
            try cluster.sql("node0", "CREATE TABLE acked (id int PRIMARY KEY)")
            try cluster.sql("node0", "INSERT INTO acked VALUES (1)")
            try cluster.kill9Postmaster("node0")
            // A failover that dies after re-pointing, before it records anything.
            let interrupted = await cluster.run(["failover"], environment: ["PGCLUSTER_TEST_STOP_AFTER": "re-point"])
            #expect(interrupted.status != 0)
            let promoted = try #require(cluster.onePrimary(besides: "node0"), "nothing was promoted")
            let state = try String(contentsOfFile: "\(cluster.dataRoot)/state.json", encoding: .utf8)
            #expect(state.contains("\"primary\" : \"node0\""), "the promotion was recorded: \(state)")
            try cluster.sql(promoted, "INSERT INTO acked VALUES (2)")  // acknowledged on the new timeline
            // The old primary comes back by hand, as a primary, on the old timeline.
            let manual = await cluster.pgCtlStart("node0")
            try #require(manual.status == 0, "pg_ctl start: \(manual.stderr)")
            #expect(Set(cluster.primaries()) == Set(["node0", promoted]))

            let watcher = try WatchProcess(cluster)
            do {
                // The newest timeline wins over the record: node0 is fenced, then rejoined under it.
                #expect(await watcher.waitFor("fenced", timeout: 30), "\(watcher.log)")
                #expect(watcher.lines("fenced").allSatisfy { $0.contains("node0") }, "\(watcher.log)")
                #expect(
                    await cluster.eventually(90) { try cluster.upstreamPort(of: "node0") == cluster.port(promoted) }, "\(watcher.log)")
                #expect(cluster.primaries() == [promoted])
                #expect(try cluster.sql(promoted, "SELECT count(*) FROM acked").scalar == "2")
                #expect(await cluster.eventually { try cluster.sql("node0", "SELECT count(*) FROM acked").scalar == "2" })
            } catch {
                await watcher.stop()
                throw error
            }
            await watcher.stop()
        }
    }
}

/// The postmaster probe says "stopped" only when that is proven; otherwise it fails, and the
/// watcher reads the node as unknown (issue 20: unknown is never stopped).
@Suite("the postmaster probe: proven stop or unknown")
struct PostmasterProbeTests {
    func probe(_ dataDir: String) -> (status: Int32, output: String) {
        let result = TestCluster.spawnWithFiles(["/bin/sh", "-c", SSHHost.findPostmaster, "sh", dataDir], timeout: 10)
        return (result.status, result.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    @Test("no pid file, a dead pid, a live pid working elsewhere: proven stopped (3); an unreadable or garbled pid file: unknown; a live one in the data directory: its pid")
    func cases() throws {
        let dir = "/tmp/pgcluster-probe-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(probe(dir).status == 3)
        #expect(probe(dir + "/missing").status == 3)
        try "garbage\n".write(toFile: "\(dir)/postmaster.pid", atomically: true, encoding: .utf8)
        #expect(probe(dir).status == 4)
        // A live process working in the data directory, as a postmaster does: its pid.
        let worker = Process()
        worker.executableURL = URL(fileURLWithPath: "/bin/sleep")
        worker.arguments = ["30"]
        worker.currentDirectoryURL = URL(fileURLWithPath: dir)
        try worker.run()
        defer {
            kill(worker.processIdentifier, SIGKILL)
            worker.waitUntilExit()
        }
        try "\(worker.processIdentifier)\n\(dir)\n".write(toFile: "\(dir)/postmaster.pid", atomically: true, encoding: .utf8)
        #expect(probe(dir) == (0, String(worker.processIdentifier)))
        // A live one working elsewhere (this test process): the PID was given out again, stopped.
        try "\(getpid())\n/data\n".write(toFile: "\(dir)/postmaster.pid", atomically: true, encoding: .utf8)
        #expect(probe(dir).status == 3)
        try "4194303\n".write(toFile: "\(dir)/postmaster.pid", atomically: true, encoding: .utf8)
        #expect(probe(dir).status == 3)
        // A pid file that cannot be read is not a proof of anything.
        try FileManager.default.createDirectory(atPath: "\(dir)/postmaster.pid.d", withIntermediateDirectories: true)
        try? FileManager.default.removeItem(atPath: "\(dir)/postmaster.pid")
        try FileManager.default.moveItem(atPath: "\(dir)/postmaster.pid.d", toPath: "\(dir)/postmaster.pid")
        #expect(probe(dir).status == 4)
    }
}

/// Issue 20, item 6: a holder paused past its lease loses its right to act. Ports 21930-21939,
/// etcd 23800-23801.
@Suite("seams: the epoch of the cluster lock in etcd", .serialized, .clusterLimit)
struct EpochTests {
    @Test("a switchover paused for longer than its lease after stopping the old primary: the watcher fails over; resumed, the switchover stops before promoting")
    func pausedSwitchover() async throws {
        try await withEtcd(port: 23800) { etcd in
            let store = "store: {etcd: {endpoints: [\(etcd.endpoint)], prefix: /pgc-epoch}}\nwatch: {interval: 0.5, failoverAfter: 2, leaseTTL: 3}\n"
            let cluster = try TestCluster(name: "epoch", basePort: 21930, synchronous: "{mode: any, count: 1}", extraNodeYAML: store)
            var watcher: WatchProcess?
            var switchover: pid_t = 0
            do {
                try await cluster.initCluster()
                try cluster.sql("node0", "CREATE TABLE acked (id int PRIMARY KEY)")
                try cluster.sql("node0", "INSERT INTO acked VALUES (1)")
                watcher = try WatchProcess(cluster)
                #expect(await watcher!.waitFor("start"))

                // The switchover to node2 stops node0 cleanly, then is paused (SIGSTOP), lock held.
                let out = "\(cluster.root)/switchover.out"
                switchover = try spawnDetached(
                    [TestCluster.binary, "switchover", "--candidate", "node2", "-f", cluster.specPath], output: out,
                    environment: ["PGCLUSTER_TEST_PAUSE_AFTER": "switchover-stop"])
                #expect(await cluster.eventually(60) { processState(switchover) == "T" }, "the switchover never paused")
                // Its lease (10 s) runs out; the watcher takes the lock and fails over: node1 (first by name).
                #expect(await cluster.eventually(60) { cluster.onePrimary(besides: "node0") == "node1" }, "\(watcher!.log)")
                try cluster.sql("node1", "INSERT INTO acked VALUES (2)")
                kill(switchover, SIGCONT)
                let status = await waitExit(switchover)
                switchover = 0
                let output = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
                #expect(status == 1, "switchover exit \(status):\n\(output)")
                #expect(output.contains("stopped before"), "\(output)")
                // Nothing of the stale holder took effect: node1 stays the only primary, node2 follows it.
                #expect(cluster.primaries() == ["node1"], "\(watcher!.log)")
                #expect(await cluster.eventually(30) { try cluster.upstreamPort(of: "node2") == cluster.port("node1") })
                #expect(try cluster.sql("node1", "SELECT count(*) FROM acked").scalar == "2")
                let recorded = try cluster.json(await cluster.run(["status", "--json"]))
                #expect(recorded["primary"] as? String == "node1")
                let client = EtcdClient(endpoints: [URL(string: etcd.endpoint)!])
                let state = try #require(try await client.get("/pgc-epoch/epoch/state"))
                #expect(String(decoding: state.value, as: UTF8.self).contains("\"primary\":\"node1\""))
            } catch {
                if switchover > 0 { kill(switchover, SIGKILL) }
                await watcher?.stop()
                print(watcher?.log ?? "")
                await cluster.teardown()
                throw error
            }
            await watcher?.stop()
            await cluster.teardown()
        }
    }
}

/// Starts a program in the background, its output to `output`; returns its PID.
func spawnDetached(_ argv: [String], output: String, environment: [String: String] = [:]) throws -> pid_t {
    var env = ProcessInfo.processInfo.environment
    env["NO_COLOR"] = "1"
    env.merge(environment) { _, new in new }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    let cArgs = argv.map { strdup($0) } + [nil]
    let cEnv = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { (cArgs + cEnv).forEach { free($0) } }
    var child: pid_t = 0
    let rc = posix_spawn(&child, argv[0], &actions, nil, cArgs, cEnv)
    try #require(rc == 0, "cannot start \(argv[0]): \(String(cString: strerror(rc)))")
    return child
}

/// The state letter of a process (R, S, T for stopped, Z), nil when it is gone.
func processState(_ pid: pid_t) -> String? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return nil }
    return stat[stat.index(close, offsetBy: 2)...].split(separator: " ").first.map(String.init)
}

/// Waits for a child to end (polling, off the cooperative pool's threads); its exit status.
func waitExit(_ pid: pid_t, timeout: Double = 120) async -> Int32 {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid { return (status & 0x7f) == 0 ? (status >> 8) & 0xff : -(status & 0x7f) }
        try? await Task.sleep(for: .milliseconds(100))
    }
    kill(pid, SIGKILL)
    return -1
}

/// Issue 23: the watcher notices a crash when the primary's connection drops, not at its
/// next probe. Ports 21570-21572.
@Suite("watch: a dropped connection wakes the watcher", .serialized, .clusterLimit)
struct DropDetectionTests {
    @Test("kill -9 of the primary with a 30 s probe interval: detected at once and failed over long before the next probe")
    func detectsDrop() async throws {
        let block = "watch:\n  interval: 30\n  failoverAfter: 60\n"
        let cluster = try TestCluster(name: "w-drop", basePort: 21570, synchronous: "{mode: any, count: 1}", extraNodeYAML: block)
        var watcher: WatchProcess?
        do {
            try await cluster.initCluster()
            try cluster.sql("node0", "CREATE TABLE acked (id int PRIMARY KEY)")
            try cluster.sql("node0", "INSERT INTO acked VALUES (1)")
            watcher = try WatchProcess(cluster)
            #expect(await watcher!.waitFor("start"))
            // The watcher's idle connection to the primary is open.
            let held = await cluster.eventually(20) {
                try cluster.sql(
                    "node0",
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgcluster' AND state = 'idle' "
                        + "AND backend_start < now() - interval '1 second'"
                ).scalar != "0"
            }
            #expect(held, "the watcher holds no connection to the primary:\n\(watcher!.log)")
            try cluster.kill9Postmaster("node0")
            // Well within the 30 s until the next probe: only the dropped connection can explain it.
            #expect(await cluster.eventually(20) { cluster.onePrimary(besides: "node0") != nil }, "\(watcher!.log)")
            #expect(!watcher!.lines("detected").isEmpty, "\(watcher!.log)")
            let primary = try #require(cluster.onePrimary(besides: "node0"))
            #expect(try cluster.sql(primary, "SELECT count(*) FROM acked").scalar == "1")
        } catch {
            await watcher?.stop()
            print(watcher?.log ?? "")
            await cluster.teardown()
            throw error
        }
        await watcher?.stop()
        await cluster.teardown()
    }
}
