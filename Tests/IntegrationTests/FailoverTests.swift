import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

extension TestCluster {
    /// The read-write DSN with the superuser password, as an application would use it.
    func readWriteDSN() async throws -> (String, String) {
        let dsn = await run(["dsn"])
        try #require(dsn.status == 0)
        return (dsn.stdout.trimmingCharacters(in: .whitespacesAndNewlines), try credentials().superuser.password)
    }

    /// Writers inserting one row per transaction, recording acknowledged ids.
    func startLoad(clients: Int) async throws -> WriteLoad {
        let (conninfo, password) = try await readWriteDSN()
        try WriteLoad.prepare(conninfo: conninfo, password: password)
        let load = WriteLoad(conninfo: conninfo, password: password, clients: clients)
        load.start()
        return load
    }

    /// Waits until the load has at least `count` acknowledgements.
    func waitForAcks(_ load: WriteLoad, atLeast count: Int, timeout: Double = 30) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if load.counts.acknowledged >= count { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    /// Ids on `node` among `ids`, in one query.
    func presentIds(_ node: String, _ ids: [Int64]) throws -> Set<Int64> {
        let list = "{" + ids.map(String.init).joined(separator: ",") + "}"
        let rows = try sql(node, "SELECT id FROM \(WriteLoad.table) WHERE id = ANY($1::bigint[])", [list])
        return Set(rows.rows.compactMap { $0[0].flatMap { Int64($0) } })
    }

    func kill9Postmaster(_ node: String) throws {
        let pid = try #require(postmasterPID(node), "\(node) has no running postmaster")
        kill(pid, SIGKILL)
    }

    /// The node whose WAL receiver streams, and from where, by asking the standby itself.
    func upstreamPort(of node: String) throws -> Int? {
        try sql(node, "SELECT sender_port FROM pg_stat_wal_receiver WHERE status = 'streaming'").scalar.flatMap { Int($0) }
    }
}

@Suite("failover, switchover and rejoin on real servers", .serialized, .clusterLimit)
struct FailoverTests {
    @Test("ANY 1 under write load: kill -9 the primary, fail over, lose nothing acknowledged, rejoin with pg_rewind")
    func quorumFailoverLosesNothing() async throws {
        try await withCluster(name: "fo-any", basePort: 21100, synchronous: "{mode: any, count: 1}") { cluster in
            try await cluster.initCluster()
            let load = try await cluster.startLoad(clients: 4)
            #expect(await cluster.waitForAcks(load, atLeast: 300))
            try cluster.kill9Postmaster("node0")

            let failover = await cluster.run(["failover", "--json"])
            #expect(failover.status == 0, "failover: \(failover.stderr)\n\(failover.stdout)")
            let report = try #require(try JSONSerialization.jsonObject(with: Data(failover.stdout.utf8)) as? [String: Any])
            let newPrimary = try #require(report["candidate"] as? String)
            let other = newPrimary == "node1" ? "node2" : "node1"
            #expect(report["timeline"] as? Int == 2)
            #expect(report["rePointed"] as? [String] == [other])
            #expect(report["needsRejoin"] as? [String] == ["node0"])

            // Writes succeed again through the same DSN, then stop.
            let before = load.counts.acknowledged
            #expect(await cluster.waitForAcks(load, atLeast: before + 100), "no writes acknowledged after failover")
            let summary = await load.stop()

            // Every acknowledged id is on the new primary.
            let present = try cluster.presentIds(newPrimary, summary.acknowledged)
            let lost = summary.acknowledged.filter { !present.contains($0) }
            #expect(lost.isEmpty, "lost \(lost.count) of \(summary.acknowledged.count) acknowledged rows")
            #expect(summary.acknowledged.count > 400)

            // The other standby streams from the new primary on the new timeline.
            #expect(try cluster.sql(newPrimary, "SELECT pg_is_in_recovery()").scalar == "f")
            #expect(try cluster.upstreamPort(of: other) == cluster.port(newPrimary))
            #expect(try cluster.sql(other, "SELECT received_tli FROM pg_stat_wal_receiver").scalar == "2")
            // synchronous_standby_names names only the remaining standby.
            #expect(try cluster.sql(newPrimary, "SHOW synchronous_standby_names").scalar == "ANY 1 (\"\(other)\")")
            let sync = try cluster.sql(newPrimary, "SELECT application_name, sync_state FROM pg_stat_replication")
            #expect(sync.rows.map { $0[0]! } == [other])
            #expect(sync.rows.first?[1] == "quorum")

            // No password in what the operator sees.
            let password = try cluster.credentials().superuser.password
            let status = await cluster.run(["status", "--json"])
            for output in [failover.stdout, failover.stderr, status.stdout, status.stderr] {
                #expect(!output.contains(password))
            }

            // history recorded it.
            let history = await cluster.run(["history", "--json"])
            #expect(!history.stdout.contains(password))
            #expect(history.stdout.contains("\"kind\" : \"failover\""))
            #expect(history.stdout.contains("\"to\" : \"\(newPrimary)\""))

            // Rejoin the old primary: pg_rewind, then it streams and holds the same rows.
            let rejoin = await cluster.run(["rejoin", "node0", "--json"])
            #expect(rejoin.status == 0, "rejoin: \(rejoin.stderr)")
            #expect(rejoin.stdout.contains("pg_rewind") || rejoin.stdout.contains("no rewind needed"), "\(rejoin.stdout)")
            #expect(try cluster.upstreamPort(of: "node0") == cluster.port(newPrimary))
            let primaryCount = try cluster.sql(newPrimary, "SELECT count(*) FROM \(WriteLoad.table)").scalar
            let caughtUp = await cluster.eventually {
                try cluster.sql("node0", "SELECT count(*) FROM \(WriteLoad.table)").scalar == primaryCount
            }
            #expect(caughtUp)
            #expect(try cluster.presentIds("node0", summary.acknowledged).count == summary.acknowledged.count)
            // Listed again for the quorum, and the cluster is healthy.
            let names = try cluster.sql(newPrimary, "SHOW synchronous_standby_names").scalar ?? ""
            #expect(names.contains("\"node0\"") && names.contains("\"\(other)\""), "\(names)")
            #expect(await cluster.run(["status"]).status == 0)
        }
    }

    @Test("a standby that lags is not promoted: the freshest one is")
    func laggingStandbyIsNotChosen() async throws {
        try await withCluster(name: "fo-lag", basePort: 21110, synchronous: "{mode: any, count: 1}") { cluster in
            try await cluster.initCluster()
            try cluster.sql("node0", "CREATE TABLE filler (x int, pad text)")
            // node1 would win a tie by name: make it lag by stopping its WAL receiver.
            let receiver = try #require(try cluster.sql("node1", "SELECT pid FROM pg_stat_wal_receiver").scalar.flatMap { pid_t($0) })
            kill(receiver, SIGSTOP)
            // Well past what socket buffers hold, so node1 cannot catch up from them later.
            try cluster.sql("node0", "INSERT INTO filler SELECT g, repeat('x', 200) FROM generate_series(1, 200000) g")
            let expected = try cluster.sql("node0", "SELECT count(*) FROM filler").scalar
            try cluster.kill9Postmaster("node0")
            kill(receiver, SIGCONT)

            let failover = await cluster.run(["failover", "--json"])
            #expect(failover.status == 0, "failover: \(failover.stderr)")
            let report = try #require(try JSONSerialization.jsonObject(with: Data(failover.stdout.utf8)) as? [String: Any])
            #expect(report["candidate"] as? String == "node2")
            #expect(try cluster.sql("node2", "SELECT count(*) FROM filler").scalar == expected)
            // node1 follows node2 and catches up.
            let followed = await cluster.eventually { try cluster.upstreamPort(of: "node1") == cluster.port("node2") }
            #expect(followed)
        }
    }

    @Test("primary and one standby of ANY 1 (2 standbys) gone: refused, unless --allow-data-loss")
    func quorumGuardRefuses() async throws {
        try await withCluster(name: "fo-guard", basePort: 21120, synchronous: "{mode: any, count: 1}") { cluster in
            try await cluster.initCluster()
            try cluster.sql("node0", "CREATE TABLE t (id int)")
            try cluster.sql("node0", "INSERT INTO t VALUES (1)")
            try cluster.kill9Postmaster("node2")
            try cluster.kill9Postmaster("node0")

            let refused = await cluster.run(["failover"])
            #expect(refused.status == 2)
            #expect(refused.stderr.contains("node2"), "\(refused.stderr)")
            #expect(refused.stderr.contains("--allow-data-loss"))
            // Nothing changed: node1 is still a standby, and it is not frozen for good.
            #expect(try cluster.sql("node1", "SELECT pg_is_in_recovery()").scalar == "t")
            #expect(try cluster.sql("node1", "SHOW primary_conninfo").scalar?.contains("port=21120") == true)

            // Promoted, but no standby follows: it cannot commit under ANY 1, so exit 1, saying
            // what blocks and what brings the standbys back.
            let forced = await cluster.run(["failover", "--allow-data-loss"])
            #expect(forced.status == 1, "forced: \(forced.stderr)")
            #expect(forced.stdout.contains("warning"))
            #expect(forced.stdout.contains("not done: commits on node1 WAIT"), "\(forced.stdout)")
            #expect(forced.stdout.contains("pgcluster rejoin node2"))
            #expect(try cluster.sql("node1", "SELECT pg_is_in_recovery()").scalar == "f")
            #expect(try cluster.sql("node1", "SELECT count(*) FROM t").scalar == "1")
            // durability strict (the default) never lowers: the mode is kept over the nodes
            // that are gone, so no commit is acknowledged with no standby holding it.
            #expect(try cluster.sql("node1", "SHOW synchronous_standby_names").scalar == "ANY 1 (\"node0\", \"node2\")")
            // The steps are printed once.
            #expect(forced.stdout.components(separatedBy: "steps:").count == 2, "\(forced.stdout)")
        }
    }

    @Test("kill -9 during a bulk insert, which leaves the standbys with the start of a record the primary never finished: the failover promotes (it waited for a replay that never comes, and promoted nothing), with every committed row")
    func incompleteLastRecord() async throws {
        try await withCluster(name: "fo-partial", basePort: 21170, synchronous: "{mode: any, count: 1}") { cluster in
            try await cluster.initCluster()
            _ = try cluster.sql("node0", "CREATE TABLE big AS SELECT g AS id, repeat('x', 200) AS pad FROM generate_series(1, 300000) g")
            // Multi-page WAL records in flight when the primary dies.
            let received = "SELECT pg_last_wal_receive_lsn() - '0/0'::pg_lsn"
            let before = try cluster.sql("node1", received).scalar.flatMap { Double($0) } ?? 0
            let insert = Task.detached {
                await TestCluster.runBinary(
                    ["psql", "-f", cluster.specPath, "node0", "--", "-c", "INSERT INTO big SELECT g, 'r' FROM generate_series(1, 3000000) g"],
                    timeout: 120)
            }
            #expect(await cluster.eventually(30) { (try cluster.sql("node1", received).scalar.flatMap { Double($0) } ?? 0) > before + 40_000_000 })
            try cluster.kill9Postmaster("node0")
            _ = await insert.value
            let positions = try ["node1", "node2"].map { node in
                try cluster.sql(node, "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())").scalar ?? "?"
            }
            let failover = await cluster.run(["failover"], timeout: 90)
            // Promoted, with every committed row. (The other standby sometimes cannot follow
            // then, and is named for rejoin: exit 1 under durability strict, said.)
            let said = "received - replayed on the standbys: \(positions); failover: \(failover.stdout)\(failover.stderr)"
            #expect(failover.status == 0 || (failover.status == 1 && failover.stdout.contains("needs rejoin: node0, ")), "\(said)")
            #expect(failover.stdout.contains("is the primary on timeline 2"), "\(said)")
            let primary = try #require(["node1", "node2"].first { (try? cluster.sql($0, "SELECT pg_is_in_recovery()").scalar) == "f" }, "\(said)")
            #expect(try cluster.sql(primary, "SELECT count(*) FROM big").scalar == "300000")
        }
    }

    @Test("--candidate behind another standby, --allow-data-loss: the one ahead is not re-pointed (it cannot follow) but named for rejoin at once")
    func candidateBehindAnother() async throws {
        try await withCluster(name: "fo-ahead", basePort: 21160) { cluster in
            try await cluster.initCluster()
            _ = try cluster.sql("node0", "CREATE TABLE t (id int)")
            // node2 cut off; then rows that only node1 receives.
            _ = try cluster.sql("node2", "ALTER SYSTEM SET primary_conninfo = ''")
            _ = try cluster.sql("node2", "SELECT pg_reload_conf()")
            #expect(await cluster.eventually { try cluster.sql("node2", "SELECT count(*) FROM pg_stat_wal_receiver").scalar == "0" })
            _ = try cluster.sql("node0", "INSERT INTO t SELECT generate_series(1, 100)")
            let flushed = try cluster.sql("node0", "SELECT pg_current_wal_flush_lsn()::text").scalar ?? ""
            #expect(await cluster.eventually { try cluster.sql("node1", "SELECT pg_last_wal_receive_lsn() >= '\(flushed)'").scalar == "t" })
            try cluster.kill9Postmaster("node0")

            // (It used to re-point node1 too and wait 15 s for it to stream, which it never could.)
            let failover = await cluster.run(["failover", "--candidate", "node2", "--allow-data-loss", "--json"])
            #expect(failover.status == 0, "\(failover.stdout)\(failover.stderr)")
            let report = try cluster.json(failover)
            #expect((report["needsRejoin"] as? [String])?.contains("node1") == true, "\(report)")
            #expect((report["rePointed"] as? [String])?.contains("node1") != true, "\(report)")
            let steps = (report["steps"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
            #expect(!steps.contains { $0.hasPrefix("re-point 1") }, "node1 was re-pointed: \(steps)")
            #expect(try cluster.sql("node2", "SELECT count(*) FROM t").scalar == "0")
            let rejoin = await cluster.run(["rejoin", "node1"])
            #expect(rejoin.status == 0, "\(rejoin.stderr)")
            #expect(await cluster.eventually { try cluster.streams("node1", from: "node2") })
        }
    }

    @Test("a frozen primary (SIGSTOP: running, not answering) is fenced before the promotion")
    func frozenPrimaryIsFenced() async throws {
        try await withCluster(name: "fo-fence", basePort: 21150, synchronous: "{mode: any, count: 1}") { cluster in
            try await cluster.initCluster()
            try cluster.sql("node0", "CREATE TABLE t (id int)")
            try cluster.sql("node0", "INSERT INTO t VALUES (1)")
            let postmaster = try #require(cluster.postmasterPID("node0"))
            kill(postmaster, SIGSTOP)
            defer { kill(postmaster, SIGCONT) }

            let failover = await cluster.run(["failover", "--json"])
            #expect(failover.status == 0, "failover: \(failover.stderr)")
            let report = try #require(try JSONSerialization.jsonObject(with: Data(failover.stdout.utf8)) as? [String: Any])
            #expect((report["fenced"] as? String)?.contains("killed postmaster \(postmaster)") == true)
            // The old postmaster is gone for good: it cannot wake up as a second primary.
            var gone = false
            for _ in 0..<100 where !gone {
                gone = kill(postmaster, 0) != 0 || (try? String(contentsOfFile: "/proc/\(postmaster)/stat", encoding: .utf8))?.contains(") Z") == true
                if !gone { try await Task.sleep(for: .milliseconds(20)) }
            }
            #expect(gone)
            let newPrimary = try #require(report["candidate"] as? String)
            try cluster.sql(newPrimary, "INSERT INTO t VALUES (2)")
            #expect(try cluster.sql(newPrimary, "SELECT count(*) FROM t").scalar == "2")
        }
    }

    @Test("a live primary is refused with exit 2 and nothing changes; --dry-run changes nothing")
    func livePrimaryRefused() async throws {
        try await withCluster(name: "fo-live", basePort: 21130, synchronous: "{mode: any, count: 1}") { cluster in
            try await cluster.initCluster()
            let before = try cluster.sql("node0", "SHOW synchronous_standby_names").scalar
            let result = await cluster.run(["failover"])
            #expect(result.status == 2)
            #expect(result.stderr.contains("node0 answers as a primary"))
            #expect(result.stderr.contains("switchover"))
            #expect(try cluster.sql("node0", "SELECT pg_is_in_recovery()").scalar == "f")
            #expect(try cluster.sql("node0", "SHOW synchronous_standby_names").scalar == before)
            for standby in ["node1", "node2"] {
                #expect(try cluster.upstreamPort(of: standby) == cluster.port("node0"))
            }
            let candidate = await cluster.run(["failover", "--candidate", "nope"])
            #expect(candidate.status == 2 || candidate.status == 64)

            // Dry run with the primary gone: a plan, and the standbys untouched.
            try cluster.kill9Postmaster("node0")
            let dry = await cluster.run(["failover", "--dry-run"])
            #expect(dry.status == 0, "\(dry.stderr)")
            #expect(dry.stdout.contains("dry run"))
            #expect(try cluster.sql("node1", "SELECT pg_is_in_recovery()").scalar == "t")
            #expect(try cluster.sql("node1", "SHOW primary_conninfo").scalar?.contains("port=21130") == true)
        }
    }

    @Test("switchover under write load: nothing acknowledged lost, the old primary follows")
    func switchoverUnderLoad() async throws {
        try await withCluster(name: "so", basePort: 21140, synchronous: "{mode: any, count: 1}") { cluster in
            try await cluster.initCluster()
            let load = try await cluster.startLoad(clients: 4)
            #expect(await cluster.waitForAcks(load, atLeast: 300))
            let switchover = await cluster.run(["switchover", "--candidate", "node2", "--json"])
            #expect(switchover.status == 0, "switchover: \(switchover.stderr)")
            let before = load.counts.acknowledged
            #expect(await cluster.waitForAcks(load, atLeast: before + 100))
            let summary = await load.stop()

            #expect(try cluster.sql("node2", "SELECT pg_is_in_recovery()").scalar == "f")
            let present = try cluster.presentIds("node2", summary.acknowledged)
            #expect(present.count == summary.acknowledged.count, "lost \(summary.acknowledged.count - present.count) rows")
            #expect(try cluster.upstreamPort(of: "node0") == cluster.port("node2"))
            #expect(try cluster.upstreamPort(of: "node1") == cluster.port("node2"))
            #expect(await cluster.run(["status"]).status == 0)
            let history = await cluster.run(["history"])
            #expect(history.stdout.contains("switchover"))
        }
    }
}
