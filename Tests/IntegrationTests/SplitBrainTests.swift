import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

extension TestCluster {
    /// The nodes that answer as primaries (accept writes), by asking each one.
    func primaries() -> [String] {
        nodeNames.filter { (try? sql($0, "SELECT pg_is_in_recovery()").scalar) == "f" }
    }

    /// The report of a `--json` run.
    func json(_ result: RunResult) throws -> [String: Any] {
        try #require(
            JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any],
            "no JSON (exit \(result.status)): \(result.stderr)")
    }

    /// Starts a node's server with pg_ctl directly, as an operator bypassing pgcluster would.
    /// Its waits block a thread of its own, never one of the cooperative pool.
    func pgCtlStart(_ node: String) async -> RunResult {
        await Blocking.run { self.pgCtlStartBlocking(node) }
    }

    private func pgCtlStartBlocking(_ node: String) -> RunResult {
        // A killed postmaster lingers as a zombie until PID 1 reaps it; its lock files would stop pg_ctl.
        let pidFile = "\(dataRoot)/\(node)/data/postmaster.pid"
        if let text = try? String(contentsOfFile: pidFile, encoding: .utf8), let pid = text.split(separator: "\n").first.flatMap({ pid_t($0) }) {
            for _ in 0..<200 where kill(pid, 0) == 0 { usleep(50_000) }
            if kill(pid, 0) == 0 {
                unlink(pidFile)
                unlink("\(dataRoot)/\(node)/run/.s.PGSQL.\(port(node)).lock")
            }
        }
        var argv = [
            "/usr/lib/postgresql/15/bin/pg_ctl", "-D", "\(dataRoot)/\(node)/data", "-l", "\(dataRoot)/\(node)/postgres.log",
            "-w", "start",
        ]
        if getuid() == 0 { argv = ["/usr/sbin/runuser", "-u", "postgres", "--"] + argv }
        return Self.spawnWithFiles(argv, timeout: 60)
    }

    /// Runs a failover on a cluster whose primary was killed, and returns the node promoted.
    func failOver(_ extra: [String] = []) async throws -> String {
        let result = await run(["failover", "--json"] + extra)
        #expect(result.status == 0, "failover: \(result.stderr)")
        return try #require(try json(result)["candidate"] as? String)
    }
}

/// Issue "Never two primaries": each defect found by fault testing, on real servers.
/// Ports 21400-21499.
@Suite("never two primaries: the lock, resumable failover, start and rejoin of a deposed primary", .serialized, .clusterLimit)
struct SplitBrainTests {
    @Test("two failovers at once with different candidates: one primary, one run refused, nothing acknowledged lost")
    func concurrentFailovers() async throws {
        try await withCluster(name: "sb-two", basePort: 21400, synchronous: "{mode: any, count: 1}") { cluster in
            try await cluster.initCluster()
            let load = try await cluster.startLoad(clients: 4)
            #expect(await cluster.waitForAcks(load, atLeast: 200))
            try cluster.kill9Postmaster("node0")

            async let first = cluster.run(["failover", "--candidate", "node1"])
            async let second = cluster.run(["failover", "--candidate", "node2"])
            let results = await [first, second]
            #expect(results.filter { $0.status == 0 }.count == 1, "\(results.map { "\($0.status): \($0.stderr)" })")
            let loser = try #require(results.first { $0.status != 0 })
            // It waited for the lock and then found the winner's primary, or gave up waiting; or
            // it ran first and refused its named candidate, behind the other (the winner then ran).
            let saysWhy = loser.stderr.contains("answers as a primary") || loser.stderr.contains("holds its lock")
                || (loser.stderr.contains("is behind") && loser.stderr.contains("--allow-data-loss"))
            #expect(saysWhy && (loser.status == 2 || loser.status == 1), "loser: \(loser.status) \(loser.stderr)")

            let primaries = cluster.primaries()
            #expect(primaries.count == 1, "primaries: \(primaries)")
            let winner = try #require(primaries.first)
            let other = winner == "node1" ? "node2" : "node1"
            #expect(await cluster.eventually { try cluster.upstreamPort(of: other) == cluster.port(winner) })

            let before = load.counts.acknowledged
            #expect(await cluster.waitForAcks(load, atLeast: before + 100))
            let summary = await load.stop()
            let present = try cluster.presentIds(winner, summary.acknowledged)
            #expect(present.count == summary.acknowledged.count, "lost \(summary.acknowledged.count - present.count)")
        }
    }

    @Test("a failover killed after a named step is finished by running failover again", arguments: ["synchronous", "promote"])
    func interruptedFailoverResumes(step: String) async throws {
        let port = step == "promote" ? 21410 : 21420
        try await withCluster(name: "sb-int-\(step)", basePort: port, synchronous: "{mode: any, count: 1}") { cluster in
            try await cluster.initCluster()
            let load = try await cluster.startLoad(clients: 4)
            #expect(await cluster.waitForAcks(load, atLeast: 200))
            try cluster.kill9Postmaster("node0")

            let killed = await cluster.run(["failover"], environment: ["PGCLUSTER_TEST_STOP_AFTER": step])
            #expect(killed.status == 86, "\(killed.stderr)")
            #expect(killed.stderr.contains("stopping dead after step '\(step)'"))
            // Left as a kill there leaves it: the candidate frozen (it follows nobody), the other
            // standby streaming through it (pointed there before the promotion) and no longer
            // from the dead node0.
            let conninfo = try ["node1", "node2"].map { try cluster.sql($0, "SHOW primary_conninfo").scalar ?? "" }
            let chosen = try #require(conninfo.firstIndex(of: ""), "no standby frozen: \(conninfo)")
            let through = conninfo[1 - chosen]
            #expect(through.contains("port=\(cluster.port(chosen == 0 ? "node1" : "node2"))"), "\(conninfo)")
            #expect(!through.contains("port=\(cluster.port("node0"))"), "\(conninfo)")

            let again = await cluster.run(["failover", "--json"])
            #expect(again.status == 0, "again: \(again.stderr)")
            let report = try cluster.json(again)
            let primary = try #require(report["candidate"] as? String)
            let other = primary == "node1" ? "node2" : "node1"
            if step == "promote" {
                #expect(again.stderr.contains("finishing an interrupted failover"), "\(again.stderr)")
            }
            #expect(cluster.primaries() == [primary])
            #expect(await cluster.eventually { try cluster.upstreamPort(of: other) == cluster.port(primary) })
            #expect(try cluster.sql(primary, "SHOW synchronous_standby_names").scalar == "ANY 1 (\"\(other)\")")

            let before = load.counts.acknowledged
            #expect(await cluster.waitForAcks(load, atLeast: before + 100), "commits do not go through after the resumed failover")
            let summary = await load.stop()
            let present = try cluster.presentIds(primary, summary.acknowledged)
            #expect(present.count == summary.acknowledged.count, "lost \(summary.acknowledged.count - present.count)")
            #expect(await cluster.run(["history"]).stdout.contains("failover"))
        }
    }

    @Test("the candidate dies before its promotion: nothing promoted, the standby that streamed through it follows what it followed before; failover again loses nothing")
    func candidateDiesBeforePromotion() async throws {
        try await withCluster(name: "sb-cand", basePort: 21480, synchronous: "{mode: any, count: 1}") { cluster in
            try await cluster.initCluster()
            try cluster.sql("node0", "CREATE TABLE t (id int)")
            try cluster.sql("node0", "INSERT INTO t SELECT generate_series(1, 500)")
            // What the put-back reads is what ALTER SYSTEM wrote, also in a session that has not
            // taken the reload yet (SHOW there still gave the conninfo before, in CI once, and
            // the standby was left frozen). On the primary, where primary_conninfo does nothing.
            let session = try cluster.connect("node0")
            for round in 1...20 {
                let value = round % 2 == 0 ? "" : "host=nowhere application_name=round\(round)"
                try session.query("ALTER SYSTEM SET primary_conninfo = \(ConfigText.sqlLiteral(value))")
                try session.query("SELECT pg_reload_conf()")
                #expect(try session.query(ServerOps.configuredConninfo).scalar == value, "round \(round)")
            }
            try session.query("ALTER SYSTEM RESET primary_conninfo")
            try session.query("SELECT pg_reload_conf()")
            session.close()
            try cluster.kill9Postmaster("node0")

            let out = "\(cluster.root)/failover.out"
            var failover = try spawnDetached(
                [TestCluster.binary, "failover", "--candidate", "node1", "-f", cluster.specPath], output: out,
                environment: ["PGCLUSTER_TEST_PAUSE_AFTER": "synchronous"])
            defer { if failover > 0 { kill(failover, SIGKILL) } }
            #expect(await cluster.eventually(60) { processState(failover) == "T" }, "the failover never paused")
            // Before the promotion node2 already streams through the candidate.
            #expect(await cluster.eventually(20) { try cluster.upstreamPort(of: "node2") == cluster.port("node1") })
            try cluster.kill9Postmaster("node1")
            kill(failover, SIGCONT)
            let status = await waitExit(failover)
            failover = 0
            let output = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            #expect(status != 0, "the failover succeeded without its candidate:\n\(output)")
            #expect(cluster.primaries().isEmpty)
            // Put back: node2 no longer names the dead candidate, but node0 as before the failover.
            let conninfo = try cluster.sql("node2", "SHOW primary_conninfo").scalar ?? ""
            #expect(conninfo.contains("port=\(cluster.port("node0"))"), "\(conninfo)\n\(output)")

            // The candidate back as the standby it was: a failover then promotes one with every row.
            #expect(await cluster.run(["start", "node1"]).status == 0)
            let primary = try await cluster.failOver()
            #expect(try cluster.sql(primary, "SELECT count(*) FROM t").scalar == "500")
            let other = primary == "node1" ? "node2" : "node1"
            #expect(await cluster.eventually { try cluster.upstreamPort(of: other) == cluster.port(primary) })
        }
    }

    @Test("start of a deposed primary: refused while it cannot follow, a standby once rejoined; never read-write")
    func startDeposedPrimary() async throws {
        try await withCluster(name: "sb-start", basePort: 21430, synchronous: "{mode: async}") { cluster in
            try await cluster.initCluster()
            try cluster.sql("node0", "CREATE TABLE t (id int)")
            // node0 takes writes its standbys never get: its WAL goes past the coming fork.
            let senders = try cluster.sql("node0", "SELECT pid FROM pg_stat_replication").rows.compactMap { $0[0].flatMap { pid_t($0) } }
            for pid in senders { kill(pid, SIGSTOP) }
            try cluster.sql("node0", "INSERT INTO t SELECT generate_series(1, 1000)")
            try cluster.kill9Postmaster("node0")
            for pid in senders { kill(pid, SIGKILL) }

            let primary = try await cluster.failOver()
            let start = await cluster.run(["start", "node0"])
            #expect(start.status == 2, "start: \(start.status) \(start.stderr)")
            #expect(start.stderr.contains("pgcluster rejoin node0"), "\(start.stderr)")
            // It is not serving as a primary: stopped again, or at most in recovery.
            #expect(cluster.primaries() == [primary])
            let (dsn, password) = try await cluster.readWriteDSN()
            let connection = try PGConnection.connect(conninfo: dsn, password: password)
            #expect(try connection.query("SELECT inet_server_port()").scalar == String(cluster.port(primary)))
            connection.close()

            let rejoin = await cluster.run(["rejoin", "node0"])
            #expect(rejoin.status == 0, "rejoin: \(rejoin.stderr)")
            // Now that it follows, stop and start keep it a standby of the primary.
            #expect(await cluster.run(["stop", "node0"]).status == 0)
            let restart = await cluster.run(["start", "node0"])
            #expect(restart.status == 0, "\(restart.stderr)")
            #expect(restart.stdout.contains("node0 started as a standby of \(primary)"))
            #expect(try cluster.upstreamPort(of: "node0") == cluster.port(primary))

            // The whole cluster stopped and started: the recorded primary comes back as the only one.
            #expect(await cluster.run(["stop"]).status == 0)
            let all = await cluster.run(["start"])
            #expect(all.status == 0, "\(all.stderr)")
            #expect(cluster.primaries() == [primary])
            var healthy = false
            for _ in 0..<40 where !healthy {
                healthy = await cluster.run(["status"]).status == 0
                if !healthy { try await Task.sleep(for: .milliseconds(250)) }
            }
            #expect(healthy, "the restarted cluster is not healthy")
        }
    }

    @Test("a primary stopped cleanly, a failover, then start: it follows the new primary and is listed in its synchronous names again")
    func startAfterFailoverRelists() async throws {
        try await withCluster(name: "sb-relist", basePort: 21490, synchronous: "{mode: any, count: 1}") { cluster in
            try await cluster.initCluster()
            #expect(await cluster.run(["stop", "node0"]).status == 0)
            let failover = await cluster.run(["failover"])
            #expect(failover.status == 0, "\(failover.stdout)\(failover.stderr)")
            let primary = try #require(cluster.onePrimary(besides: "node0"))
            let left = try cluster.sql(primary, "SHOW synchronous_standby_names").scalar ?? ""
            #expect(!left.contains("node0"), "the failover listed a stopped node: \(left)")
            let start = await cluster.run(["start", "node0"])
            #expect(start.status == 0, "\(start.stderr)")
            #expect(start.stdout.contains("synchronous_standby_names on \(primary)"), "\(start.stdout)")
            let names = try cluster.sql(primary, "SHOW synchronous_standby_names").scalar ?? ""
            #expect(names.hasPrefix("ANY 1 (") && names.contains("node0"), "\(names)")
            #expect(
                try cluster.sql(primary, "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'node0'").scalar == "quorum")
        }
    }

    @Test("rejoin of a node that accepts writes beside another primary: refused without --force, and the older one is stopped")
    func rejoinLivePrimary() async throws {
        try await withCluster(name: "sb-rejoin", basePort: 21440, synchronous: "{mode: any, count: 1}") { cluster in
            try await cluster.initCluster()
            try cluster.sql("node0", "CREATE TABLE t (id int)")
            try cluster.sql("node0", "INSERT INTO t VALUES (1)")
            try cluster.kill9Postmaster("node0")
            let primary = try await cluster.failOver()
            try cluster.sql(primary, "INSERT INTO t VALUES (2)")
            // Someone starts the old primary by hand: two primaries.
            let manual = await cluster.pgCtlStart("node0")
            try #require(manual.status == 0, "pg_ctl start: \(manual.stderr) \((try? String(contentsOfFile: "\(cluster.dataRoot)/node0/postgres.log", encoding: .utf8))?.suffix(800) ?? "")")
            #expect(Set(cluster.primaries()) == Set(["node0", primary]))

            // status calls it what it is (exit 2) and names the newest timeline as the one to keep.
            let split = await cluster.run(["status"])
            #expect(split.status == 2, "\(split.stdout)")
            #expect(split.stdout.contains("SPLIT BRAIN") && split.stdout.contains("\(primary) holds the newest timeline"), "\(split.stdout)")

            // Rejoining the newer one is refused and leaves it serving: it is the one to keep.
            let newer = await cluster.run(["rejoin", primary])
            #expect(newer.status == 2)
            #expect(newer.stderr.contains("holds the newer timeline"), "\(newer.stderr)")
            #expect(try cluster.sql(primary, "SELECT pg_is_in_recovery()").scalar == "f")

            // Issue 20, bug 3: refused, and the deposed primary no longer serves (it was stopped).
            let refused = await cluster.run(["rejoin", "node0"])
            #expect(refused.status == 2, "\(refused.stderr)")
            #expect(refused.stderr.contains("node0 accepts writes as a primary"))
            #expect(refused.stderr.contains("node0 was STOPPED"), "\(refused.stderr)")
            #expect(await cluster.eventually { cluster.postmasterPID("node0") == nil }, "node0 still runs after the refusal")
            #expect(cluster.primaries() == [primary])
            let after = await cluster.run(["status", "--json"])
            #expect(try cluster.json(after)["primary"] as? String == primary)

            let forced = await cluster.run(["rejoin", "node0", "--force"])
            #expect(forced.status == 0, "forced: \(forced.stderr)")
            #expect(cluster.primaries() == [primary])
            #expect(try cluster.upstreamPort(of: "node0") == cluster.port(primary))
            #expect(await cluster.eventually { try cluster.sql("node0", "SELECT count(*) FROM t").scalar == "2" })
            // A second rejoin finds nothing to do and leaves a server that runs.
            let twice = await cluster.run(["rejoin", "node0"])
            #expect(twice.status == 2)
            #expect(twice.stderr.contains("already streams"))
            #expect(try cluster.sql("node0", "SELECT pg_is_in_recovery()").scalar == "t")
        }
    }

    @Test("a candidate whose replay is paused is resumed; a delayed standby is not chosen unless named; a paused follower is resumed and follows")
    func pausedAndDelayedReplay() async throws {
        try await withCluster(name: "sb-pause", basePort: 21450, synchronous: "{mode: any, count: 1}") { cluster in
            try await cluster.initCluster()
            try cluster.sql("node0", "CREATE TABLE t (id int)")
            // node1 wins ties by name, but replays an hour behind; node2 has paused its replay.
            try cluster.sql("node1", "ALTER SYSTEM SET recovery_min_apply_delay = '1h'")
            try cluster.sql("node1", "SELECT pg_reload_conf()")
            try cluster.sql("node2", "SELECT pg_wal_replay_pause()")
            try cluster.sql("node0", "INSERT INTO t SELECT generate_series(1, 500)")
            try cluster.kill9Postmaster("node0")

            let plan = await cluster.run(["failover", "--dry-run", "--json"])
            #expect(plan.status == 0, "\(plan.stderr)")
            #expect(try cluster.json(plan)["candidate"] as? String == "node2", "a delayed standby was chosen")

            // The paused one, named: its replay is resumed, said, and the failover does not wait.
            try cluster.sql("node1", "ALTER SYSTEM RESET recovery_min_apply_delay")
            try cluster.sql("node1", "SELECT pg_reload_conf()")
            let started = Date()
            let failover = await cluster.run(["failover", "--candidate", "node2", "--json"])
            #expect(failover.status == 0, "\(failover.stderr)")
            #expect(Date().timeIntervalSince(started) < 20, "a paused replay made failover wait")
            #expect(failover.stderr.contains("WAL replay was paused"), "\(failover.stderr)")
            #expect(try cluster.sql("node2", "SELECT count(*) FROM t").scalar == "500")
            #expect(cluster.primaries() == ["node2"])
            #expect(await cluster.eventually { try cluster.upstreamPort(of: "node1") == cluster.port("node2") })

            // A follower whose replay is paused is resumed too, said, and follows the new
            // primary onto its timeline: it needed no rejoin (it was left "needs rejoin").
            #expect(await cluster.run(["rejoin", "node0"]).status == 0)
            try cluster.sql("node1", "SELECT pg_wal_replay_pause()")
            try cluster.sql("node2", "INSERT INTO t SELECT generate_series(501, 600)")
            let back = await cluster.run(["switchover", "--candidate", "node0"])
            #expect(back.status == 0, "\(back.stderr)\n\(back.stdout)")
            #expect(back.stderr.contains("[node1] WAL replay was paused"), "\(back.stderr)")
            #expect(!back.stdout.contains("needs rejoin"), "\(back.stdout)")
            #expect(await cluster.eventually(30) { try cluster.upstreamPort(of: "node1") == cluster.port("node0") })
            #expect(await cluster.eventually(30) { try cluster.sql("node1", "SELECT count(*) FROM t").scalar == "600" })
        }
    }

    @Test("an unreadable state file is an error; without one, failover fences every node that does not answer")
    func damagedStateFile() async throws {
        try await withCluster(name: "sb-state", basePort: 21460, synchronous: "{mode: any, count: 1}") { cluster in
            try await cluster.initCluster()
            try cluster.kill9Postmaster("node0")
            let primary = try await cluster.failOver()
            #expect(await cluster.run(["rejoin", "node0"]).status == 0)

            let stateFile = "\(cluster.dataRoot)/state.json"
            try "{ not json".write(toFile: stateFile, atomically: true, encoding: .utf8)
            let status = await cluster.run(["status"])
            #expect(status.status == 1)
            #expect(status.stdout.contains("state.json is damaged"), "\(status.stdout)")

            let postmaster = try #require(cluster.postmasterPID(primary))
            kill(postmaster, SIGSTOP)
            defer { kill(postmaster, SIGCONT) }
            let refused = await cluster.run(["failover"])
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("\(stateFile) is damaged"))
            #expect(refused.stderr.contains("mv \(stateFile)"))
            #expect(cluster.primaries().isEmpty, "nothing may change on a damaged state file")

            // The repair the message gives: move it aside. pgcluster no longer knows the primary,
            // so it fences every node that does not answer.
            try FileManager.default.moveItem(atPath: stateFile, toPath: stateFile + ".damaged")
            let failover = await cluster.run(["failover", "--json"])
            #expect(failover.status == 0, "\(failover.stderr)")
            #expect((try cluster.json(failover)["fenced"] as? String)?.contains("\(primary): killed postmaster \(postmaster)") == true)
            kill(postmaster, SIGCONT)
            try await Task.sleep(for: .milliseconds(300))
            #expect(cluster.primaries().count == 1)
            #expect(!cluster.primaries().contains(primary))
        }
    }

    @Test("the cluster lock: a second command waits, then names the holder; a dead holder's lock is taken over")
    func clusterLock() async throws {
        try await withCluster(name: "sb-lock", basePort: 21470, standbys: 1, synchronous: "{mode: async}") { cluster in
            try await cluster.initCluster()
            let spec = try SpecLoader.load(path: cluster.specPath)
            let lock = try await ClusterLock.acquire(spec: spec, command: "test-holder")
            let started = Date()
            let busy = await cluster.run(["quorum", "--any", "1"])
            #expect(busy.status == 1)
            #expect(busy.stderr.contains("`pgcluster test-holder` (PID \(getpid())"), "\(busy.stderr)")
            #expect(Date().timeIntervalSince(started) >= ClusterLock.defaultWait)
            // Reading commands do not take it.
            #expect(await cluster.run(["status"]).status == 0)
            lock.releaseNow()

            // A holder that died leaves its name in the file, not the lock.
            let stale = ClusterLock.Holder(command: "failover", pid: 999_999, host: "elsewhere", since: "2026-01-01T00:00:00Z")
            try JSONEncoder().encode(stale).write(to: URL(fileURLWithPath: ClusterLock.path(for: spec)))
            let quorum = await cluster.run(["quorum", "--any", "1"])
            #expect(quorum.status == 0, "\(quorum.stderr)")
            #expect(quorum.stderr.contains("took over the cluster lock left by `pgcluster failover` (PID 999999"))
            #expect(ClusterLock.currentHolder(spec: spec) == nil)
        }
    }
}
