import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// A `pgcluster watch` child process of the test (posix_spawn, reaped with waitpid by
/// us: never a zombie left to a Foundation monitor), its stderr in a file. Always
/// stopped by PID (`stop()`), also when the test fails.
/// The watchers a test starts (``withWatchers(on:_:)``).
final class WatcherGroup: @unchecked Sendable {
    private(set) var all: [WatchProcess] = []

    /// Keeps `watcher` to be stopped at the end; returns it.
    @discardableResult
    func add(_ watcher: WatchProcess) -> WatchProcess {
        all.append(watcher)
        return watcher
    }
}

/// Runs `body` with a group its watchers join; however it ends, every watcher is stopped
/// (their logs printed when it threw) and `cluster` torn down.
func withWatchers(on cluster: TestCluster, _ body: (WatcherGroup) async throws -> Void) async throws {
    let group = WatcherGroup()
    do {
        try await body(group)
    } catch {
        for watcher in group.all { await watcher.stop() }
        for watcher in group.all { print(watcher.log) }
        await cluster.teardown()
        throw error
    }
    for watcher in group.all { await watcher.stop() }
    await cluster.teardown()
}

final class WatchProcess: @unchecked Sendable {
    let pid: pid_t
    let logPath: String
    private var exitStatus: Int32?

    /// - Parameters:
    ///   - name: names its log (`<name>.log` in the cluster's folder), for several watchers.
    ///   - netns: runs it in that network namespace (a test host's "operator machine").
    init(
        _ cluster: TestCluster, json: Bool = false, environment: [String: String] = [:], name: String = "watch",
        netns: String? = nil, specPath: String? = nil
    ) throws {
        logPath = "\(cluster.root)/\(name).log"
        let argv = (netns.map { ["/usr/sbin/ip", "netns", "exec", $0] } ?? [])
            + [TestCluster.binary, "watch", "-f", specPath ?? cluster.specPath] + (json ? ["--json"] : [])
        var env = ProcessInfo.processInfo.environment
        env["NO_COLOR"] = "1"
        env.merge(environment) { _, new in new }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath + ".out", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, logPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (cArgs + cEnv).forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, argv[0], &actions, nil, cArgs, cEnv)
        try #require(rc == 0, "cannot start pgcluster watch: \(String(cString: strerror(rc)))")
        pid = child
    }

    /// Reaps the child if it ended; true while it runs.
    var isRunning: Bool {
        if exitStatus != nil { return false }
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return true }
        exitStatus = (status & 0x7f) == 0 ? (status >> 8) & 0xff : -(status & 0x7f)
        return false
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func lines(_ event: String) -> [String] {
        // The event is the second field of a text line, or the JSON's "event".
        log.split(separator: "\n").map(String.init).filter { line in
            line.split(separator: " ").dropFirst().first == Substring(event) || line.contains("\"event\":\"\(event)\"")
        }
    }

    func waitFor(_ event: String, timeout: Double = 20) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if !lines(event).isEmpty { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return !lines(event).isEmpty
    }

    /// SIGTERM, then the exit status (SIGKILL after `timeout`, status nil then).
    @discardableResult
    func stop(timeout: Double = 30) async -> Int32? {
        guard isRunning else { return exitStatus }
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(timeout)
        while isRunning && Date() < deadline { try? await Task.sleep(for: .milliseconds(50)) }
        if isRunning {
            kill(pid, SIGKILL)
            while isRunning { try? await Task.sleep(for: .milliseconds(50)) }
            return nil
        }
        return exitStatus
    }
}

extension TestCluster {
    /// SIGSTOP (or SIGCONT) the node's postmaster and every child of it: the whole server hangs.
    func signalServer(_ node: String, _ signal: Int32) throws {
        let postmaster = try #require(postmasterPID(node), "\(node) has no running postmaster")
        _ = signalTree(postmaster, signal)
    }

    /// The one node that answers as a primary, if exactly one does.
    func onePrimary(besides excluded: String? = nil) -> String? {
        let found = primaries().filter { $0 != excluded }
        return found.count == 1 ? found[0] : nil
    }
}

/// `signal` to a postmaster and every child of it; returns them all. A SIGSTOP stops the
/// postmaster first and lists its children only once it has stopped: a child it was forking
/// meanwhile (a backend for a client connecting just then, such as the watcher's kept
/// session) is listed too, and none is forked after.
func signalTree(_ postmaster: pid_t, _ signal: Int32) -> [pid_t] {
    kill(postmaster, signal)
    if signal == SIGSTOP {
        let deadline = Date().addingTimeInterval(5)
        while processState(postmaster) != "T" && Date() < deadline { usleep(1_000) }
    }
    let children = LocalHost.childProcesses(of: postmaster)
    for pid in children { kill(pid, signal) }
    return [postmaster] + children
}

/// Runs `body` with a fresh cluster that has a `watch:` block and a watcher started on
/// it; the watcher is stopped (by PID) and the cluster torn down however the test ends.
func withWatchedCluster(
    name: String, basePort: Int, standbys: Int = 2, synchronous: String = "{mode: any, count: 1}", watch: String = "",
    environment: [String: String] = [:], json: Bool = false, startWatcher: Bool = true,
    _ body: (TestCluster, WatchProcess?) async throws -> Void
) async throws {
    let block = "watch:\n  interval: 0.5\n  failoverAfter: 2\n" + watch
    let cluster = try TestCluster(name: name, basePort: basePort, standbys: standbys, synchronous: synchronous, extraNodeYAML: block)
    var watcher: WatchProcess?
    do {
        try await cluster.initCluster()
        if startWatcher {
            watcher = try WatchProcess(cluster, json: json, environment: environment)
            #expect(await watcher!.waitFor("start"), "watch did not start:\n\(watcher!.log)")
        }
        try await body(cluster, watcher)
    } catch {
        await watcher?.stop()
        print(watcher?.log ?? "")
        await cluster.teardown()
        throw error
    }
    await watcher?.stop()
    // The watcher's log outlives the cluster's folder, for reading after a failure.
    try? FileManager.default.createDirectory(atPath: "/tmp/pgcluster-watch-logs", withIntermediateDirectories: true)
    try? watcher?.log.write(toFile: "/tmp/pgcluster-watch-logs/\(name).log", atomically: true, encoding: .utf8)
    await cluster.teardown()
}

/// The watcher's rejoin of node0 runs `program` (pg_rewind, pg_basebackup), which waits on
/// `source`, the primary: all of `source` freezes, and the watcher must still fail over. What
/// a user relies on: `other` promoted, the rejoin stopped and its program gone, every row the
/// writer saw acknowledged on `other`, and node0 rejoined from it afterwards.
func expectFailoverPastHungRejoin(
    _ cluster: TestCluster, _ watcher: WatchProcess, program: String, source: String, other: String, load: WriteLoad
) async throws {
    let runs = { (pid: pid_t) -> Bool in
        let line = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
        return line.contains(program) && line.contains("\(cluster.dataRoot)/node0/")
    }
    let hung = try #require(descendants(of: watcher.pid).first(where: runs), "no \(program) of node0 runs under the watcher")
    let postmaster = try #require(cluster.postmasterPID(source))
    let frozen = signalTree(postmaster, SIGSTOP)
    // The fence kills them; should it not come, they must not stay stopped.
    defer { for pid in frozen { kill(pid, SIGCONT) } }
    #expect(
        await cluster.eventually(30) { try cluster.sql(other, "SELECT pg_is_in_recovery()").scalar == "f" },
        "no failover while \(program) hung:\n\(watcher.log)")
    #expect(await watcher.waitFor("rejoin-stopped", timeout: 5), "\(watcher.log)")
    #expect(watcher.lines("rejoin-stopped").first?.contains("node0") == true, "\(watcher.lines("rejoin-stopped"))")
    #expect(!runs(hung), "the hung \(program) still runs")

    // Commits wait (durability strict) until a member of ANY 1 (node0, the fenced primary)
    // streams again: node0's rejoin from the new primary comes first.
    let before = load.counts.acknowledged
    #expect(await cluster.waitForAcks(load, atLeast: before + 100, timeout: 90), "no writes after the failover:\n\(watcher.log)")
    let summary = await load.stop()
    let present = try cluster.presentIds(other, summary.acknowledged)
    #expect(summary.acknowledged.filter { !present.contains($0) }.isEmpty, "acknowledged rows lost")
    #expect(await cluster.eventually(90) { try cluster.upstreamPort(of: "node0") == cluster.port(other) }, "\(watcher.log)")
}

/// Issue 12, `pgcluster watch`, on the local backend. Ports 21500-21599.
@Suite("watch: automatic failover on real servers", .serialized, .clusterLimit)
struct WatchTests {
    @Test("kill -9 of the primary under a 4-client writer with ANY 1: a new primary with no command, nothing lost, the other standby follows, the old one is rejoined")
    func killNine() async throws {
        try await withWatchedCluster(name: "w-kill", basePort: 21500) { cluster, watcher in
            let watcher = try #require(watcher)
            let load = try await cluster.startLoad(clients: 4)
            #expect(await cluster.waitForAcks(load, atLeast: 300))
            // The watcher probes on a session it keeps (no handshake per tick): the same
            // backend of it on node1 is there across several ticks (a probe that failed under
            // load would replace it: then a later pair of looks).
            let watcherSessions = { () throws -> Set<String> in
                let rows = try cluster.sql(
                    "node1",
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgcluster' AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                ).rows
                return Set(rows.compactMap { $0.first ?? nil })
            }
            var kept = false
            for _ in 0..<5 where !kept {
                let first = try watcherSessions()
                try await Task.sleep(for: .seconds(1.6))
                kept = !first.intersection(try watcherSessions()).isEmpty
            }
            #expect(kept, "no session of the watcher on node1 lasted across its ticks")
            try cluster.kill9Postmaster("node0")
            let promoted = await cluster.eventually(15) { cluster.onePrimary(besides: "node0") != nil }
            #expect(promoted, "no new primary:\n\(watcher.log)")
            let newPrimary = try #require(cluster.onePrimary(besides: "node0"))
            let other = newPrimary == "node1" ? "node2" : "node1"

            let before = load.counts.acknowledged
            #expect(await cluster.waitForAcks(load, atLeast: before + 100), "no writes after the failover")
            let summary = await load.stop()
            let present = try cluster.presentIds(newPrimary, summary.acknowledged)
            #expect(summary.acknowledged.filter { !present.contains($0) }.isEmpty, "acknowledged rows lost")

            #expect(await cluster.eventually(20) { try cluster.upstreamPort(of: other) == cluster.port(newPrimary) })
            // The failover records itself last, after the standbys stream again.
            #expect(await watcher.waitFor("failed-over", timeout: 30), "\(watcher.log)")
            let history = await cluster.run(["history", "--json"])
            #expect(history.stdout.contains("\"by\" : \"watch\""), "\(history.stdout)")
            // rejoin: auto brings the old primary back as a standby, never as a primary.
            #expect(await cluster.eventually(60) { try cluster.upstreamPort(of: "node0") == cluster.port(newPrimary) }, "\(watcher.log)")
            #expect(cluster.primaries() == [newPrimary])
            #expect(!watcher.lines("failed-over").isEmpty)
            // The watcher's own files (its leadership lock) are pgcluster's: destroy leaves nothing.
            #expect(await watcher.stop() == 0)
            let destroy = await cluster.run(["destroy", "--yes"])
            #expect(destroy.status == 0 && !destroy.stdout.contains("kept"), "\(destroy.stdout)")
            #expect(!FileManager.default.fileExists(atPath: cluster.dataRoot), "local.dir was left behind")
        }
    }

    @Test("SIGSTOP of the whole primary: failover only after failoverAfter, then SIGCONT: the old primary never takes a write as a primary")
    func silentPrimary() async throws {
        try await withWatchedCluster(name: "w-stop", basePort: 21510) { cluster, watcher in
            let watcher = try #require(watcher)
            let load = try await cluster.startLoad(clients: 4)
            #expect(await cluster.waitForAcks(load, atLeast: 300))
            let postmaster = try #require(cluster.postmasterPID("node0"))
            let stopped = signalTree(postmaster, SIGSTOP)
            let stoppedAt = Date()
            let promoted = await cluster.eventually(20) { cluster.onePrimary(besides: "node0") != nil }
            let took = Date().timeIntervalSince(stoppedAt)
            #expect(promoted, "no failover:\n\(watcher.log)")
            // failoverAfter (2 s) counts from the primary's last answer, which a probe saw up
            // to two intervals (0.5 s each) before the stop: so never sooner than 1 s after
            // it from outside, and the fence says how long it had been lost: at least 2 s.
            #expect(took >= 1.0, "failed over \(took) s after the stop, before failoverAfter could have passed")
            let fence = try #require(watcher.lines("fence").first, "no fence before the failover:\n\(watcher.log)")
            let lost = fence.range(of: #"lost for ([0-9.]+) s"#, options: .regularExpression).flatMap {
                Double(fence[$0].dropFirst("lost for ".count).dropLast(2))
            }
            #expect((lost ?? 0) >= 2.0, "fenced before failoverAfter: \(fence)")
            print("SIGSTOP -> new primary seen: \(String(format: "%.2f", took)) s (\(fence))")
            for pid in stopped { kill(pid, SIGCONT) }
            let newPrimary = try #require(cluster.onePrimary(besides: "node0"))

            // For the next seconds, a write straight to node0 never succeeds as a primary.
            let deadline = Date().addingTimeInterval(8)
            var acceptedOnOld = 0
            while Date() < deadline {
                if (try? cluster.sql("node0", "INSERT INTO \(WriteLoad.table) (id, writer) VALUES (-(extract(epoch from clock_timestamp())*1000000)::bigint, 99)")) != nil {
                    acceptedOnOld += 1
                }
                try? await Task.sleep(for: .milliseconds(100))
            }
            #expect(acceptedOnOld == 0)
            let summary = await load.stop()
            let present = try cluster.presentIds(newPrimary, summary.acknowledged)
            #expect(summary.acknowledged.filter { !present.contains($0) }.isEmpty, "acknowledged rows lost")
            #expect(await cluster.eventually(60) { try cluster.upstreamPort(of: "node0") == cluster.port(newPrimary) }, "\(watcher.log)")
            #expect(cluster.primaries() == [newPrimary])
        }
    }

    @Test("async, the old primary silent and not provably stopped: no failover, the refusal is logged each interval")
    func asyncNotProvablyStopped() async throws {
        try await withWatchedCluster(
            name: "w-async", basePort: 21520, synchronous: "{mode: async}", environment: ["PGCLUSTER_TEST_SILENT_HOSTS": "node0"]
        ) { cluster, watcher in
            let watcher = try #require(watcher)
            try cluster.signalServer("node0", SIGSTOP)
            try await Task.sleep(for: .seconds(6))
            let refusals = watcher.lines("refused")
            try cluster.signalServer("node0", SIGCONT)
            #expect(refusals.count >= 2, "\(watcher.log)")
            #expect(refusals.first?.contains("cannot be proven stopped") == true, "\(refusals)")
            #expect(watcher.lines("failover").isEmpty && watcher.lines("fenced").isEmpty)
            #expect(await cluster.eventually(10) { cluster.primaries() == ["node0"] })
            #expect(try cluster.sql("node0", "SELECT timeline_id FROM pg_control_checkpoint()").scalar == "1")
        }
    }

    @Test("pause: a dead primary is only reported; resume: failover")
    func pauseAndResume() async throws {
        try await withWatchedCluster(name: "w-pause", basePort: 21530) { cluster, watcher in
            let watcher = try #require(watcher)
            #expect(await cluster.run(["pause"]).status == 0)
            let status = try cluster.json(await cluster.run(["status", "--json"]))
            #expect(status["paused"] as? Bool == true)
            try cluster.kill9Postmaster("node0")
            try await Task.sleep(for: .seconds(4))
            #expect(cluster.primaries().isEmpty, "failed over while paused:\n\(watcher.log)")
            #expect(!watcher.lines("paused").isEmpty, "\(watcher.log)")
            #expect(await cluster.run(["resume"]).status == 0)
            #expect(await cluster.eventually(15) { cluster.onePrimary(besides: "node0") != nil }, "\(watcher.log)")
            let after = try cluster.json(await cluster.run(["status", "--json"]))
            #expect(after["paused"] as? Bool == false)
        }
    }

    @Test("a standby killed is started again and streams")
    func standbyRestarted() async throws {
        try await withWatchedCluster(name: "w-standby", basePort: 21540) { cluster, watcher in
            let watcher = try #require(watcher)
            try cluster.kill9Postmaster("node2")
            #expect(await cluster.eventually(30) { try cluster.upstreamPort(of: "node2") == cluster.port("node0") }, "\(watcher.log)")
            #expect(await watcher.waitFor("started", timeout: 5))
            #expect(cluster.primaries() == ["node0"])
        }
    }

    @Test("durability available: both standbys down, commits return; the mode comes back when a standby streams")
    func durabilityAvailable() async throws {
        // Their hosts "silent" to the watcher: it cannot prove them stopped, so it does not
        // start them again; a standby started (and streaming) before the primary's walsenders
        // were gone would spare the lowering, and the test would prove nothing. (Seen once in
        // CI under load: the tick that saw both down still listed their walsenders.)
        try await withWatchedCluster(
            name: "w-avail", basePort: 21550, watch: "  durability: available\n",
            environment: ["PGCLUSTER_TEST_SILENT_HOSTS": "node1,node2"]
        ) { cluster, watcher in
            let watcher = try #require(watcher)
            try WriteLoad.prepare(conninfo: try await cluster.readWriteDSN().0, password: try cluster.credentials().superuser.password)
            try cluster.kill9Postmaster("node1")
            try cluster.kill9Postmaster("node2")
            let connection = try cluster.connect("node0")
            defer { connection.close() }
            let committed = await Blocking.run(timeout: 30) {
                (try? connection.query("INSERT INTO \(WriteLoad.table) (id, writer) VALUES (424242, 7)")) != nil
            }
            #expect(committed == true, "the commit did not return:\n\(watcher.log)")
            #expect(await watcher.waitFor("lowered", timeout: 5), "\(watcher.log)")
            #expect(watcher.lines("started").isEmpty, "\(watcher.log)")
            // A person brings them back; the mode comes back once one streams: by the watcher,
            // or by start itself, which lists the standbys it started as rejoin does (whichever
            // comes first; under load it is often start).
            let start = await cluster.run(["start", "node1", "node2"])
            #expect(start.status == 0, "\(start.stderr)")
            #expect(await cluster.eventually(60) {
                try cluster.sql("node0", "SHOW synchronous_standby_names").scalar == "ANY 1 (\"node1\", \"node2\")"
            }, "\(watcher.log)")
            let byStart = start.stdout.contains("synchronous_standby_names on node0 = 'ANY 1 (\"node1\", \"node2\")'")
            let restored = byStart ? true : await watcher.waitFor("restored", timeout: 5)
            #expect(restored, "\(start.stdout)\n\(watcher.log)")
            let state = try String(contentsOfFile: "\(cluster.dataRoot)/state.json", encoding: .utf8)
            #expect(!state.contains("lowered"), "\(state)")
        }
    }

    @Test("a rejoin whose pg_rewind hangs does not hold the watcher: the primary it rewinds from freezes, the rewind is killed, the next primary is promoted, nothing lost")
    func hungRewind() async throws {
        try await withWatchedCluster(name: "w-rewind", basePort: 21565) { cluster, watcher in
            let watcher = try #require(watcher)
            // Paused, so that the failover and the rejoin come when the test is ready.
            #expect(await cluster.run(["pause"]).status == 0)
            // node0 writes WAL its standbys never get (its walsenders frozen, a local commit):
            // after the failover it cannot follow, and must be rewound.
            let senders = try cluster.sql("node0", "SELECT pid FROM pg_stat_replication").rows.compactMap { $0[0].flatMap { pid_t($0) } }
            for pid in senders { kill(pid, SIGSTOP) }
            let local = try cluster.connect("node0")
            try local.query("SET synchronous_commit = local")
            try local.query("CREATE TABLE diverged (id int)")
            local.close()
            try cluster.kill9Postmaster("node0")
            for pid in senders { kill(pid, SIGKILL) }
            let primary = try await cluster.failOver()
            let other = primary == "node1" ? "node2" : "node1"
            let load = try await cluster.startLoad(clients: 2)
            #expect(await cluster.waitForAcks(load, atLeast: 100))

            // pg_rewind lists the source's files joined with pg_tablespace: a lock held on it
            // makes the rewind wait, as a source that stopped answering would.
            let holder = try cluster.connect(primary)
            defer { holder.close() }
            try holder.query("BEGIN")
            try holder.query("LOCK TABLE pg_catalog.pg_tablespace IN ACCESS EXCLUSIVE MODE")
            #expect(await cluster.run(["resume"]).status == 0)
            let waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%pg_tablespace%' AND pid <> pg_backend_pid()"
            #expect(await cluster.eventually(60) { try cluster.sql(primary, waiting).scalar == "1" }, "no rewind waits:\n\(watcher.log)")
            try await expectFailoverPastHungRejoin(cluster, watcher, program: "pg_rewind", source: primary, other: other, load: load)
        }
    }

    @Test("a rejoin whose pg_basebackup hangs does not hold the watcher: the primary it copies from freezes, the copy is killed, the next primary is promoted, nothing lost")
    func hungClone() async throws {
        try await withWatchedCluster(name: "w-clone", basePort: 21505, watch: "  rejoin: manual\n") { cluster, watcher in
            let watcher = try #require(watcher)
            let load = try await cluster.startLoad(clients: 2)
            #expect(await cluster.waitForAcks(load, atLeast: 100))
            try cluster.kill9Postmaster("node0")
            #expect(await watcher.waitFor("failed-over", timeout: 30), "\(watcher.log)")
            let primary = try #require(cluster.onePrimary(besides: "node0"), "\(watcher.log)")
            let other = primary == "node1" ? "node2" : "node1"
            // node0's disk is replaced: its rejoin must copy it afresh with pg_basebackup.
            try FileManager.default.removeItem(atPath: "\(cluster.dataRoot)/node0/data")
            // The new primary's checkpointer stops: a base backup waits for its checkpoint, as
            // one from a source that stopped answering would.
            let postmaster = try #require(cluster.postmasterPID(primary))
            let checkpointer = try #require(
                LocalHost.childProcesses(of: postmaster).first { pid in
                    ((try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? "").contains("checkpointer")
                })
            kill(checkpointer, SIGSTOP)
            defer { kill(checkpointer, SIGCONT) }
            // rejoin: auto from now on: the watcher rejoins node0, which it failed over from.
            try cluster.editSpec { $0.replacingOccurrences(of: "  rejoin: manual\n", with: "  rejoin: auto\n") }
            kill(watcher.pid, SIGHUP)
            let waiting = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender' AND wait_event IN ('CheckpointStart', 'CheckpointDone')"
            #expect(await cluster.eventually(60) { try cluster.sql(primary, waiting).scalar == "1" }, "no base backup waits:\n\(watcher.log)")
            try await expectFailoverPastHungRejoin(cluster, watcher, program: "pg_basebackup", source: primary, other: other, load: load)
        }
    }

    @Test("SIGTERM while idle: exit 0, JSON lines on stderr")
    func sigtermWhileIdle() async throws {
        try await withWatchedCluster(name: "w-term", basePort: 21560, json: true) { cluster, watcher in
            let watcher = try #require(watcher)
            try await Task.sleep(for: .seconds(1))
            #expect(await watcher.stop(timeout: 10) == 0, "\(watcher.log)")
            let lines = watcher.log.split(separator: "\n")
            #expect(lines.count >= 2)
            for line in lines {
                let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                #expect(object?["time"] is String && object?["event"] is String, "\(line)")
            }
            #expect(!watcher.lines("stop").isEmpty)
        }
    }
}
