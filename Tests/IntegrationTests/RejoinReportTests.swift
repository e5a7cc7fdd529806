import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// `rejoin` says what pg_rewind discarded: the old primary's WAL from the point where the
/// timelines forked to its last record (issue 10).
@Suite("rejoin report on real servers", .serialized, .clusterLimit)
struct RejoinReportTests {
    @Test("a crashed old primary with WAL past the fork: rejoin reports the rewound range, text and JSON")
    func reportsRewoundRange() async throws {
        try await withCluster(name: "rejoin-report", basePort: 21720, standbys: 1) { cluster in
            try await cluster.initCluster()
            _ = try cluster.sql("node0", "CREATE TABLE t (id int)")
            // Cut the standby off, then write on the primary only: WAL the standby never gets.
            _ = try cluster.sql("node1", "ALTER SYSTEM SET primary_conninfo = ''")
            _ = try cluster.sql("node1", "SELECT pg_reload_conf()")
            #expect(await cluster.eventually { try cluster.sql("node1", "SELECT count(*) FROM pg_stat_wal_receiver").scalar == "0" })
            // Three transactions committed on the old primary alone.
            for (low, high) in [(1, 2000), (2001, 4000), (4001, 5000)] {
                _ = try cluster.sql("node0", "INSERT INTO t SELECT generate_series(\(low), \(high))")
            }
            let flushed = try cluster.sql("node0", "SELECT pg_current_wal_flush_lsn()").scalar ?? ""
            let oldEnd = try #require(LSN(flushed), "\(flushed)")
            try cluster.kill9Postmaster("node0")

            let failover = await cluster.run(["failover"])
            try #require(failover.status == 0, "failover: \(failover.stderr)")
            // Where timeline 2 forked, as the new primary's history file says.
            let history = try String(contentsOfFile: "\(cluster.dataRoot)/node1/data/pg_wal/00000002.history", encoding: .utf8)
            let forkText = try #require(history.split(separator: "\n").last?.split(separator: "\t").dropFirst().first)
            let fork = try #require(LSN(String(forkText)))
            #expect(fork < oldEnd, "the test did not make the old primary diverge")

            let rejoin = await cluster.run(["rejoin", "node0", "--json"])
            try #require(rejoin.status == 0, "rejoin: \(rejoin.stderr)")
            let object = try JSONSerialization.jsonObject(with: Data(rejoin.stdout.utf8))
            let json = try #require(object as? [String: Any], "\(rejoin.stdout)")
            let rewound = try #require(json["rewound"] as? [String: Any], "no rewound in \(rejoin.stdout)")
            #expect(rewound["from"] as? String == fork.description, "\(rewound)")
            #expect(rewound["timeline"] as? Int == 1, "\(rewound)")
            let toText = rewound["to"] as? String ?? ""
            let to = try #require(LSN(toText), "\(rewound)")
            #expect(to >= oldEnd, "the reported end \(to) is before the old primary's flushed WAL \(oldEnd)")
            #expect((rewound["bytes"] as? Int).map(UInt64.init) == to.bytes(after: fork), "\(rewound)")
            #expect(rewound["commits"] as? Int == 3, "pg_waldump's count of the discarded commits: \(rewound)")
            let status = await cluster.run(["status"])
            #expect(status.status == 0, "\(status.stdout)")
        }
    }

    @Test("a rejoin stopped after pg_rewind, before the node is set to follow: the next rejoin copies it afresh, never rewinds it again, and it then takes over with every row")
    func unfinishedRewind() async throws {
        try await withCluster(name: "rejoin-unfinished", basePort: 21735, standbys: 2, synchronous: "{mode: any, count: 1}") { cluster in
            try await cluster.initCluster()
            _ = try cluster.sql("node0", "CREATE TABLE t (id int)")
            _ = try cluster.sql("node0", "INSERT INTO t SELECT generate_series(1, 100)")
            try cluster.kill9Postmaster("node0")
            let failover = await cluster.run(["failover", "--candidate", "node1"])
            try #require(failover.status == 0, "failover: \(failover.stderr)")

            let stopped = await cluster.run(["rejoin", "node0"], environment: ["PGCLUSTER_TEST_STOP_AFTER": "pg_rewind"])
            try #require(stopped.status == 86, "rejoin stopped after pg_rewind: \(stopped.stderr)")
            let start = await cluster.run(["start", "node0"])
            #expect(start.status == 2 && start.stderr.contains("stopped during pg_rewind"), "start: \(start.status) \(start.stderr)")
            _ = try cluster.sql("node1", "INSERT INTO t SELECT generate_series(101, 200)")
            // A second pg_rewind would end node0's recovery in single-user mode on timeline 2
            // where it stands, then find "no rewind required": a standby that differs from
            // its primary, whose promotion fails.
            let rejoin = await cluster.run(["rejoin", "node0", "--json"])
            try #require(rejoin.status == 0, "rejoin: \(rejoin.stderr)")
            let object = try JSONSerialization.jsonObject(with: Data(rejoin.stdout.utf8))
            let json = try #require(object as? [String: Any], "\(rejoin.stdout)")
            #expect(json["method"] as? String == "pg_basebackup (an earlier pg_rewind did not finish)", "\(rejoin.stdout)")
            #expect(!FileManager.default.fileExists(atPath: "\(cluster.dataRoot)/node0/rewind-unfinished"))

            _ = try cluster.sql("node1", "INSERT INTO t SELECT generate_series(201, 300)")
            #expect(await cluster.eventually(30) { try cluster.sql("node0", "SELECT count(*) FROM t").scalar == "300" })
            try cluster.kill9Postmaster("node1")
            let second = await cluster.run(["failover", "--candidate", "node0"])
            #expect(second.status == 0, "failover to the rejoined node: \(second.stdout)\(second.stderr)")
            #expect(try cluster.sql("node0", "SELECT count(*) FROM t").scalar == "300")
            #expect(try cluster.sql("node0", "SELECT pg_is_in_recovery()").scalar == "f")
        }
    }

    @Test("a rejoin stopped once its node streams, before it is listed again: the next rejoin lists it in synchronous_standby_names (no \"nothing to do\"), and one more says nothing to do")
    func stoppedBeforeListed() async throws {
        try await withCluster(name: "rejoin-relist", basePort: 21740, standbys: 2, synchronous: "{mode: any, count: 1}") { cluster in
            try await cluster.initCluster()
            try cluster.kill9Postmaster("node0")
            let failover = await cluster.run(["failover", "--candidate", "node1"])
            try #require(failover.status == 0, "failover: \(failover.stderr)")
            #expect(try cluster.sql("node1", "SHOW synchronous_standby_names").scalar == #"ANY 1 ("node2")"#)

            let stopped = await cluster.run(["rejoin", "node0"], environment: ["PGCLUSTER_TEST_STOP_AFTER": "rejoin-streams"])
            try #require(stopped.status == 86, "rejoin stopped once node0 streams: \(stopped.stderr)")
            #expect(try cluster.upstreamPort(of: "node0") == cluster.port("node1"))
            #expect(try cluster.sql("node1", "SHOW synchronous_standby_names").scalar == #"ANY 1 ("node2")"#)

            let warned = await cluster.run(["status"])
            #expect(warned.stdout.contains("node0 streams from node1 but is not in its synchronous_standby_names"), "\(warned.stdout)")

            let rejoin = await cluster.run(["rejoin", "node0", "--json"])
            try #require(rejoin.status == 0, "rejoin of a node that streams but is not listed: \(rejoin.stderr)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(rejoin.stdout.utf8)) as? [String: Any], "\(rejoin.stdout)")
            #expect(json["method"] as? String == "it already streamed; synchronous_standby_names set again", "\(rejoin.stdout)")
            #expect(json["synchronous"] as? String == #"ANY 1 ("node0", "node2")"#, "\(rejoin.stdout)")
            #expect(try cluster.sql("node1", "SHOW synchronous_standby_names").scalar == #"ANY 1 ("node0", "node2")"#)

            #expect(!(await cluster.run(["status"])).stdout.contains("not in its synchronous_standby_names"))
            let again = await cluster.run(["rejoin", "node0"])
            #expect(again.status == 2 && again.stderr.contains("nothing to do"), "\(again.status) \(again.stderr)")
        }
    }

    @Test("a copy stopped after pg_basebackup, before the node is set to follow: start refuses the node (exit 2), rejoin copies it afresh, and it streams every row")
    func unfinishedClone() async throws {
        try await withCluster(name: "rejoin-clone", basePort: 21745, standbys: 2, synchronous: "{mode: any, count: 1}") { cluster in
            try await cluster.initCluster()
            _ = try cluster.sql("node0", "CREATE TABLE t (id int)")
            _ = try cluster.sql("node0", "INSERT INTO t SELECT generate_series(1, 100)")
            let stopped = await cluster.run(["rejoin", "node2", "--reclone"], environment: ["PGCLUSTER_TEST_STOP_AFTER": "pg_basebackup"])
            try #require(stopped.status == 86, "rejoin --reclone stopped after pg_basebackup: \(stopped.stderr)")
            #expect(FileManager.default.fileExists(atPath: "\(cluster.dataRoot)/node2/clone-unfinished"))
            // A copy without its standby configuration would start as a second primary.
            let start = await cluster.run(["start", "node2"])
            #expect(start.status == 2 && start.stderr.contains("an earlier copy of it (pg_basebackup) did not finish"), "start: \(start.status) \(start.stderr)")
            #expect(try cluster.sql("node0", "SELECT pg_is_in_recovery()").scalar == "f")

            _ = try cluster.sql("node0", "INSERT INTO t SELECT generate_series(101, 200)")
            let rejoin = await cluster.run(["rejoin", "node2", "--json"])
            try await Self.expectCopiedAfresh(rejoin, "node2", in: cluster) { $0 == "pg_basebackup (an earlier copy did not finish)" }
        }
    }

    /// After a `rejoin NODE --json` that copied `node` afresh from node0: it succeeded with a
    /// method `method` accepts, the copy's mark is gone, and the node streams from node0 with
    /// all 200 rows of `t`.
    static func expectCopiedAfresh(
        _ rejoin: RunResult, _ node: String, in cluster: TestCluster, method: (String) -> Bool
    ) async throws {
        try #require(rejoin.status == 0, "rejoin: \(rejoin.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(rejoin.stdout.utf8)) as? [String: Any], "\(rejoin.stdout)")
        #expect((json["method"] as? String).map(method) == true, "\(rejoin.stdout)")
        #expect(!FileManager.default.fileExists(atPath: "\(cluster.dataRoot)/\(node)/clone-unfinished"))
        #expect(await cluster.eventually(30) { try cluster.sql(node, "SELECT count(*) FROM t").scalar == "200" })
        #expect(try cluster.upstreamPort(of: node) == cluster.port("node0"))
    }

    @Test("a rejoin killed (SIGKILL) during its pg_basebackup takes the copy with it, and the next rejoin ends its WAL streamer; it copies afresh")
    func killedDuringCopy() async throws {
        try await withCluster(name: "rejoin-killed", basePort: 21750, standbys: 1) { cluster in
            try await cluster.initCluster()
            _ = try cluster.sql("node0", "CREATE TABLE t AS SELECT generate_series(1, 100) AS id")
            // PostgreSQL's programs through a folder of links, where pg_basebackup is the real
            // one at its slowest (32 kB/s: minutes for the copy, as for a large database).
            let bin = "\(cluster.root)/bin"
            try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
            let real = "/usr/lib/postgresql/15/bin"
            for name in try FileManager.default.contentsOfDirectory(atPath: real) where name != "pg_basebackup" {
                try FileManager.default.createSymbolicLink(atPath: "\(bin)/\(name)", withDestinationPath: "\(real)/\(name)")
            }
            try "#!/bin/sh\nexec \(real)/pg_basebackup \"$@\" --max-rate=32k\n"
                .write(toFile: "\(bin)/pg_basebackup", atomically: true, encoding: .utf8)
            chmod("\(bin)/pg_basebackup", 0o755)
            let spec = try String(contentsOfFile: cluster.specPath, encoding: .utf8)
            try spec.replacingOccurrences(of: "  version: 15\n", with: "  version: 15\n  bindir: \(bin)\n")
                .write(toFile: cluster.specPath, atomically: true, encoding: .utf8)
            // The copy's processes: pg_basebackup and the WAL streamer it forks, both writing
            // into node1's folder (their command line names it).
            let target = "\(cluster.dataRoot)/node1/"
            let copyProcesses = { () -> [pid_t] in
                let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap { pid_t($0) } ?? []
                return pids.filter { pid in
                    let line = String(decoding: (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))) ?? Data(), as: UTF8.self)
                    return line.contains("pg_basebackup") && line.contains(target) && processState(pid) != "Z"
                }
            }

            let log = "\(cluster.root)/rejoin.log"
            let rejoin = try spawnDetached([TestCluster.binary, "rejoin", "node1", "--reclone", "-f", cluster.specPath], output: log)
            // Under way: the base backup and the WAL stream both connected to node0.
            let started = await cluster.eventually(60) {
                try cluster.sql("node0", "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pgcluster-clone-node1'").scalar == "2"
            }
            let running = copyProcesses()
            kill(rejoin, SIGKILL)
            _ = await waitExit(rejoin)
            try #require(started, "no copy under way: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            try #require(running.count == 2, "pg_basebackup and its WAL streamer: \(running)")
            // pg_basebackup ends with pgcluster (its parent-death signal); its WAL streamer, a
            // fork, does not inherit that and streams on.
            #expect(await pollUntil(10) { copyProcesses().count == 1 }, "left: \(copyProcesses())")
            #expect(FileManager.default.fileExists(atPath: "\(target)clone-unfinished"))

            // With PostgreSQL's own programs again, the next rejoin ends that streamer's
            // connection (which held node1's slot) and copies afresh.
            // (Left alone, that streamer may also end by itself when the new copy's first WAL
            // segment is not where it writes; node0's log shows that pgcluster ended it.)
            try spec.write(toFile: cluster.specPath, atomically: true, encoding: .utf8)
            _ = try cluster.sql("node0", "INSERT INTO t SELECT generate_series(101, 200)")
            let serverLog = "\(cluster.dataRoot)/node0/postgres.log"
            let logged = (try? FileManager.default.attributesOfItem(atPath: serverLog)[.size] as? Int) ?? 0
            let again = await cluster.run(["rejoin", "node1", "--json"])
            let left = copyProcesses()
            for pid in left { kill(pid, SIGKILL) }
            #expect(left.isEmpty, "an earlier copy outlived the next rejoin: \(left)")
            let newLines = String(decoding: (FileManager.default.contents(atPath: serverLog) ?? Data()).dropFirst(logged), as: UTF8.self)
            #expect(newLines.contains("due to administrator command"), "node0's log:\n\(newLines.suffix(1500))")
            try await Self.expectCopiedAfresh(again, "node1", in: cluster) { $0.hasPrefix("pg_basebackup") }
        }
    }

    @Test("the text report names the discarded range")
    func textReport() async throws {
        try await withCluster(name: "rejoin-text", basePort: 21725, standbys: 1) { cluster in
            try await cluster.initCluster()
            _ = try cluster.sql("node1", "ALTER SYSTEM SET primary_conninfo = ''")
            _ = try cluster.sql("node1", "SELECT pg_reload_conf()")
            #expect(await cluster.eventually { try cluster.sql("node1", "SELECT count(*) FROM pg_stat_wal_receiver").scalar == "0" })
            _ = try cluster.sql("node0", "CREATE TABLE lost AS SELECT generate_series(1, 1000) AS id")
            try cluster.kill9Postmaster("node0")
            let failover = await cluster.run(["failover"])
            try #require(failover.status == 0, "failover: \(failover.stderr)")
            let rejoin = await cluster.run(["rejoin", "node0"])
            try #require(rejoin.status == 0, "rejoin: \(rejoin.stderr)")
            #expect(rejoin.stdout.contains("discarded"), "\(rejoin.stdout)")
            #expect(rejoin.stdout.contains("node0's WAL on timeline 1 from "), "\(rejoin.stdout)")
            #expect(rejoin.stdout.contains("; 1 transaction committed there is gone"), "\(rejoin.stdout)")
            #expect(try cluster.sql("node0", "SELECT to_regclass('lost') IS NULL").scalar == "t")

            // Now node1 dies with nothing unreplicated: its own crash recovery still writes
            // past the fork (checkpoint records), and the report says no commit is gone.
            #expect(await cluster.eventually { try cluster.sql("node0", "SELECT status FROM pg_stat_wal_receiver").scalar == "streaming" })
            try cluster.kill9Postmaster("node1")
            let back = await cluster.run(["failover"])
            try #require(back.status == 0, "failover: \(back.stderr)")
            let again = await cluster.run(["rejoin", "node1"])
            try #require(again.status == 0, "rejoin: \(again.stderr)")
            #expect(
                again.stdout.contains("; no transaction was committed or prepared there: none is lost")
                    || again.stdout.contains("nothing of node1's WAL beyond its shutdown checkpoint"),
                "\(again.stdout)")
            #expect(!again.stdout.contains("are gone") && !again.stdout.contains("is gone;"), "\(again.stdout)")
        }
    }

    @Test("a diverged primary stopped cleanly with archiving on (its shutdown checkpoint opens a new segment): its commits and prepared transaction are counted")
    func cleanStopWithArchive() async throws {
        try await withCluster(name: "rejoin-clean", basePort: 21730, standbys: 1) { cluster in
            try cluster.enableBackup()
            let yaml = try String(contentsOfFile: cluster.specPath, encoding: .utf8)
            try yaml.replacingOccurrences(of: "    max_wal_size: 256MB\n", with: "    max_wal_size: 256MB\n    max_prepared_transactions: 5\n")
                .write(toFile: cluster.specPath, atomically: true, encoding: .utf8)
            try await cluster.initCluster()
            _ = try cluster.sql("node0", "CREATE TABLE t (id int)")
            // Cut off from its primary and from the archive too: node0's clean stop archives
            // its last segment, which node1's restore_command would otherwise fetch (under
            // load, before the failover freezes it) and nothing would diverge.
            _ = try cluster.sql("node1", "ALTER SYSTEM SET primary_conninfo = ''")
            _ = try cluster.sql("node1", "ALTER SYSTEM SET restore_command = ''")
            _ = try cluster.sql("node1", "SELECT pg_reload_conf()")
            #expect(await cluster.eventually { try cluster.sql("node1", "SELECT count(*) FROM pg_stat_wal_receiver").scalar == "0" })
            for id in 1...4 { _ = try cluster.sql("node0", "INSERT INTO t VALUES (\(id))") }
            let prepared = await TestCluster.runBinary(
                ["psql", "-f", cluster.specPath, "node0", "--", "-c", "BEGIN; INSERT INTO t VALUES (5); PREPARE TRANSACTION 'gone'"])
            #expect(prepared.status == 0, "\(prepared.stderr)")
            // A clean stop: with archive_mode on, the shutdown switches segments first.
            #expect(await cluster.run(["stop", "node0"]).status == 0)
            let failover = await cluster.run(["failover"])
            try #require(failover.status == 0, "failover: \(failover.stderr)")
            let rejoin = await cluster.run(["rejoin", "node0", "--json"])
            try #require(rejoin.status == 0, "rejoin: \(rejoin.stderr)")
            #expect(!rejoin.stderr.contains("cannot count"), "\(rejoin.stderr)")
            let object = try JSONSerialization.jsonObject(with: Data(rejoin.stdout.utf8))
            let rewound = try #require((object as? [String: Any])?["rewound"] as? [String: Any], "\(rejoin.stdout)")
            #expect(rewound["commits"] as? Int == 4, "\(rewound)")
            #expect(rewound["prepared"] as? Int == 1, "\(rewound)")
            #expect(try cluster.sql("node1", "SELECT count(*) FROM pg_prepared_xacts").scalar == "0")
        }
    }
}
