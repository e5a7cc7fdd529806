import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

@Suite("Status report from observations")
struct StatusReportTests {
    typealias Obs = NodeFixture

    static let yaml = """
        name: demo
        nodes:
          - {name: db_0, port: 15432, role: primary}
          - {name: db_1, port: 15433}
          - {name: db_2, port: 15434}

        """

    static func spec() throws -> ClusterSpec {
        try SpecLoader.parse(yaml, file: "/tmp/test.yaml")
    }

    static let fromPrimary = (host: "127.0.0.1", port: 15432)
    static let anyOne = #"ANY 1 ("db_1", "db_2")"#

    /// db_0 primary at 0/3000100 on timeline 2; db_1 and db_2 stream from it under ANY 1.
    static func healthy() -> [NodeObservation] {
        [
            Obs.primary(
                "db_0", current: "0/3000100", timeline: 2, port: 15432, synchronousStandbyNames: anyOne,
                replication: [
                    Obs.row("db_1", sync: "quorum", replay: "0/3000000"), Obs.row("db_2", sync: "quorum", replay: "0/2F00000"),
                ]),
            Obs.standby("db_1", replay: "0/3000000", received: "0/3000100", timeline: 2, port: 15433, upstream: fromPrimary),
            Obs.standby("db_2", replay: "0/2F00000", timeline: 2, port: 15434, upstream: fromPrimary),
        ]
    }

    static func node(_ report: StatusReport, _ name: String) throws -> StatusReport.Node {
        try #require(report.nodes.first { $0.name == name })
    }

    @Test("a standby just restarted reports a received position below its replay (its WAL receiver's start): received is at least what it replayed")
    func restartedStandby() throws {
        var observations = Self.healthy()
        observations[1] = Obs.standby("db_1", replay: "0/30001B8", received: "0/3000000", timeline: 2, port: 15433, upstream: Self.fromPrimary)
        let report = StatusReport.make(spec: try Self.spec(), observations: observations)
        #expect(try Self.node(report, "db_1").receiveLsn == "0/30001B8")
        #expect(try Self.node(report, "db_1").replayLsn == "0/30001B8")
        // Never received anything (no WAL receiver yet): nothing is made up.
        #expect(try Self.node(report, "db_2").receiveLsn == nil)
        // A promoted primary still reports what it received and replayed as a standby: not shown.
        observations[0].receiveLsn = LSN("0/2FFF000")
        observations[0].replayLsn = LSN("0/2FFF000")
        let promoted = try Self.node(StatusReport.make(spec: try Self.spec(), observations: observations), "db_0")
        #expect(promoted.receiveLsn == nil && promoted.replayLsn == nil && promoted.lsn == "0/3000100")
    }

    @Test("a healthy cluster: no problems, and every field read from the servers")
    func healthyCluster() throws {
        let report = StatusReport.make(spec: try Self.spec(), observations: Self.healthy())
        #expect(report.problems == [])
        #expect(report.healthy)
        #expect(report.name == "demo")
        #expect(report.primary == "db_0")
        #expect(report.timeline == 2)
        #expect(report.synchronous == .init(mode: "any", count: 1, standbys: ["db_1", "db_2"]))
        #expect(report.nodes.map(\.name) == ["db_0", "db_1", "db_2"])

        let primary = try Self.node(report, "db_0")
        #expect(primary.role == "primary")
        #expect(primary.lsn == "0/3000100")
        #expect(primary.lagBytes == nil)
        #expect(primary.upstream == nil)
        #expect(primary.syncState == nil)

        let db1 = try Self.node(report, "db_1")
        #expect(db1.role == "standby")
        #expect(db1.host == "127.0.0.1")
        #expect(db1.port == 15433)
        #expect(db1.timeline == 2)
        #expect(db1.lsn == "0/3000100")
        #expect(db1.receiveLsn == "0/3000100")
        #expect(db1.replayLsn == "0/3000000")
        #expect(db1.lagBytes == 0x100)
        #expect(db1.syncState == "quorum")
        #expect(db1.upstream == "db_0")
        #expect(db1.streaming)

        let db2 = try Self.node(report, "db_2")
        #expect(db2.lagBytes == 0x3000100 - 0x2F00000)
        #expect(db2.receiveLsn == nil)
        #expect(db2.lsn == "0/2F00000")
        #expect(db2.upstream == "db_0")
    }

    @Test("FIRST 1 is read from the primary's synchronous_standby_names")
    func firstOne() throws {
        var observations = Self.healthy()
        observations[0].synchronousStandbyNames = "FIRST 1 (db_2, db_1)"
        observations[0].replication = [Obs.row("db_1", sync: "potential"), Obs.row("db_2", sync: "sync")]
        let report = StatusReport.make(spec: try Self.spec(), observations: observations)
        #expect(report.synchronous == .init(mode: "first", count: 1, standbys: ["db_2", "db_1"]))
        #expect(try Self.node(report, "db_2").syncState == "sync")
        #expect(try Self.node(report, "db_1").syncState == "potential")
        #expect(report.problems == [])
    }

    @Test("upstream is found by the address a compose node is reached at inside its network")
    func upstreamByServiceAddress() throws {
        var observations = Self.healthy()
        observations[1] = Obs.standby(
            "db_1", replay: "0/3000000", timeline: 2, port: 15433, upstream: (host: "db_0", port: 5432))
        let report = StatusReport.make(spec: try Self.spec(), observations: observations)
        #expect(try Self.node(report, "db_1").upstream == "db_0")
        #expect(report.problems == [])
    }

    @Test("a standby streaming from an unknown server: shown by address, and a problem")
    func unknownUpstream() throws {
        var observations = Self.healthy()
        observations[2] = Obs.standby(
            "db_2", replay: "0/2F00000", timeline: 2, port: 15434, upstream: (host: "10.0.0.9", port: 5432))
        let report = StatusReport.make(spec: try Self.spec(), observations: observations)
        #expect(try Self.node(report, "db_2").upstream == "10.0.0.9:5432")
        #expect(report.problems == ["db_2 streams from 10.0.0.9:5432, not the primary db_0"])
    }

    @Test("a node that did not answer in time: role 'no answer' with the seconds waited, never 'down'")
    func silentNode() throws {
        var observations = Self.healthy()
        var silent = Obs.down("db_2", port: 15434, error: "no answer within 2.0 s")
        silent.waitedSeconds = 2
        observations[2] = silent
        var timedOut = Obs.down("db_1", port: 15433, error: "connection to server failed: timeout expired")
        timedOut.waitedSeconds = 2
        observations[1] = timedOut
        let report = StatusReport.make(spec: try Self.spec(), observations: observations)
        for name in ["db_1", "db_2"] {
            let node = try Self.node(report, name)
            #expect(node.role == "no answer")
            #expect(node.waitedSeconds == 2)
        }
        #expect(report.problems.contains("db_2 does not answer (not proven down): no answer within 2.0 s"))
        #expect(!report.healthy)
        #expect(report.table.contains("no answer"))
        // A server that answers with an error (starting up) is not proven down either.
        observations[2] = Obs.down("db_2", port: 15434, error: "FATAL: the database system is starting up")
        #expect(try Self.node(StatusReport.make(spec: try Self.spec(), observations: observations), "db_2").role == "no answer")
    }

    @Test("a down node: role down, no positions, and a problem")
    func downNode() throws {
        var observations = Self.healthy()
        observations[2] = Obs.down("db_2", port: 15434, error: "connection to server failed: Connection refused")
        let report = StatusReport.make(spec: try Self.spec(), observations: observations)
        let db2 = try Self.node(report, "db_2")
        #expect(db2.role == "down")
        #expect(db2.port == 15434)
        #expect(db2.timeline == nil)
        #expect(db2.lsn == nil)
        #expect(db2.lagBytes == nil)
        #expect(db2.syncState == nil)
        #expect(db2.upstream == nil)
        #expect(!db2.streaming)
        #expect(report.problems == ["db_2 is down: connection to server failed: Connection refused"])
        #expect(!report.healthy)
        #expect(report.primary == "db_0")
    }

    @Test("a standby that does not stream is a problem")
    func notStreaming() throws {
        var observations = Self.healthy()
        observations[2] = Obs.standby("db_2", replay: "0/2F00000", timeline: 2, port: 15434, receiver: nil)
        observations[0].replication = [Obs.row("db_1", sync: "quorum")]
        let report = StatusReport.make(spec: try Self.spec(), observations: observations)
        let db2 = try Self.node(report, "db_2")
        #expect(db2.role == "standby")
        #expect(!db2.streaming)
        #expect(db2.upstream == nil)
        #expect(report.problems == ["db_2 does not stream (WAL receiver: none)"])
    }

    @Test("two primaries: a problem, and no primary reported")
    func twoPrimaries() throws {
        var observations = Self.healthy()
        observations[1] = Obs.primary("db_1", current: "0/3000200", timeline: 3, port: 15433)
        let report = StatusReport.make(spec: try Self.spec(), observations: observations)
        #expect(report.primary == nil)
        #expect(report.timeline == nil)
        // Issue 20: the newest timeline is named as the one to keep; status exits 2 on it.
        #expect(report.splitBrain)
        #expect(report.problems.contains { $0.hasPrefix("SPLIT BRAIN") && $0.contains("db_1 holds the newest timeline") }, "\(report.problems)")
        #expect(try Self.node(report, "db_0").role == "primary")
        #expect(try Self.node(report, "db_1").role == "primary")
        // The summary says what is true: no mode can be read from one primary.
        let summary = try #require(report.table.split(separator: "\n").first { $0.hasPrefix("cluster ") })
        #expect(summary == "cluster demo: 2 primaries (db_0 on timeline 2, db_1 on timeline 3), synchronous mode unknown", "\(summary)")
        #expect(!report.table.contains("synchronous async"))
    }

    @Test("no primary: a problem")
    func noPrimary() throws {
        var observations = Self.healthy()
        observations[0] = Obs.down("db_0", role: .primary, port: 15432)
        let report = StatusReport.make(spec: try Self.spec(), observations: observations)
        #expect(report.primary == nil)
        #expect(report.problems.contains("no primary answers"))
        #expect(report.problems.contains { $0.hasPrefix("db_0 is down") })
        #expect(try Self.node(report, "db_1").lagBytes == nil)
        let summary = try #require(report.table.split(separator: "\n").first { $0.hasPrefix("cluster ") })
        #expect(summary == "cluster demo: no primary answers, synchronous mode unknown", "\(summary)")
    }

    @Test("a standby streaming from the primary but missing from its synchronous names: a warning naming the rejoin that lists it; none for a standby the operator left out of the quorum, nor under async")
    func unlistedStandby() throws {
        var observations = Self.healthy()
        observations[0].synchronousStandbyNames = #"ANY 1 ("db_2")"#
        var report = StatusReport.make(spec: try Self.spec(), observations: observations)
        report.warnUnlisted(members: ["db_0", "db_1", "db_2"])
        #expect(report.healthy)
        #expect(report.warnings.count == 1 && report.warnings[0].hasPrefix("db_1 streams from db_0 but is not in its synchronous_standby_names"), "\(report.warnings)")
        #expect(report.warnings.first?.hasSuffix("pgcluster rejoin db_1 lists it") == true)
        // `pgcluster quorum --standbys db_2`: db_1 is left out on purpose.
        var restricted = StatusReport.make(spec: try Self.spec(), observations: observations)
        restricted.warnUnlisted(members: ["db_2"])
        #expect(restricted.warnings.isEmpty)
        observations[0].synchronousStandbyNames = ""
        var async = StatusReport.make(spec: try Self.spec(), observations: observations)
        async.warnUnlisted(members: ["db_0", "db_1", "db_2"])
        #expect(async.warnings.isEmpty)
        var healthy = StatusReport.make(spec: try Self.spec(), observations: Self.healthy())
        healthy.warnUnlisted(members: ["db_0", "db_1", "db_2"])
        #expect(healthy.warnings.isEmpty)
    }

    @Test("ANY 1 with no listed standby streaming: commits WAIT")
    func commitsWait() throws {
        var observations = Self.healthy()
        observations[0].replication = []
        observations[1].walReceiver?.status = "waiting"
        observations[2].walReceiver = nil
        let report = StatusReport.make(spec: try Self.spec(), observations: observations)
        let wait = report.problems.filter { $0.contains("WAIT") }
        #expect(wait.count == 1)
        #expect(wait.first?.contains("commits on db_0 WAIT") == true)
        #expect(wait.first?.contains("needs 1 of db_1, db_2 streaming, 0 do") == true)
    }

    @Test("ANY 2 with one listed standby streaming: commits WAIT")
    func commitsWaitAnyTwo() throws {
        var observations = Self.healthy()
        observations[0].synchronousStandbyNames = #"ANY 2 ("db_1", "db_2")"#
        observations[0].replication = [Obs.row("db_1", sync: "quorum"), Obs.row("db_2", state: "catchup", sync: "quorum")]
        let report = StatusReport.make(spec: try Self.spec(), observations: observations)
        #expect(report.problems.filter { $0.contains("WAIT") }.count == 1)
        #expect(report.problems.contains { $0.contains("needs 2 of db_1, db_2 streaming, 1 does") })
    }

    @Test("async: commits never WAIT, even with nobody in pg_stat_replication")
    func asyncNeverWaits() throws {
        var observations = Self.healthy()
        observations[0].synchronousStandbyNames = ""
        observations[0].replication = []
        let report = StatusReport.make(spec: try Self.spec(), observations: observations)
        #expect(report.synchronous == .init(mode: "async", count: 0, standbys: []))
        #expect(!report.problems.contains { $0.contains("WAIT") })
    }

    // MARK: - JSON

    static func json(_ report: StatusReport) throws -> [String: Any] {
        let data = try JSONEncoder().encode(report)
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    @Test("the primary's archiver: a failure newer than the last success is failing, a warning naming the file, and the metrics say so")
    func archiverFailing() throws {
        typealias Archiver = NodeObservation.Archiver
        // Failed 5 s ago, archived 150 s ago: failing. Failed long before the last success: not.
        let failing = Archiver(
            archivedCount: 41, lastArchivedWal: "000000020000000000000030", secondsSinceArchived: 150, failedCount: 7,
            lastFailedWal: "000000020000000000000031", secondsSinceFailed: 5)
        #expect(failing.failing)
        var recovered = failing
        recovered.secondsSinceArchived = 2
        #expect(!recovered.failing)
        #expect(!Archiver(archivedCount: 3, lastArchivedWal: "x", secondsSinceArchived: 1, failedCount: 0, lastFailedWal: nil, secondsSinceFailed: nil).failing)
        #expect(Archiver(archivedCount: 0, lastArchivedWal: nil, secondsSinceArchived: nil, failedCount: 1, lastFailedWal: "y", secondsSinceFailed: 1).failing)

        var observations = Self.healthy()
        observations[0].archiver = failing
        let report = StatusReport.make(spec: try Self.spec(), observations: observations)
        #expect(report.healthy, "a failing archive is a warning: commits go on")
        #expect(report.warnings.count == 1)
        let warning = try #require(report.warnings.first)
        #expect(warning.hasPrefix("db_0 fails to archive WAL: its last attempt failed 5 s ago (000000020000000000000031), 7 failed attempts"))
        #expect(warning.contains("the last success 2 min ago (000000020000000000000030)") && warning.contains("pg_wal"), "\(warning)")
        #expect(report.table.contains("archive: FAILING, last 000000020000000000000030 2 min ago, 41 archived, 7 failed"), "\(report.table)")
        let archiver = try #require(try Self.json(report)["nodes"].flatMap { ($0 as? [[String: Any]])?.first }?["archiver"] as? [String: Any])
        #expect(archiver["failing"] as? Bool == true && archiver["failedCount"] as? Int == 7 && archiver["lastArchivedWal"] as? String == "000000020000000000000030")
        // A standby's is null; without archiving the table has no archive line.
        let standby = try #require(try Self.json(report)["nodes"].flatMap { ($0 as? [[String: Any]])?.last })
        #expect(standby.keys.contains("archiver") && standby["archiver"] is NSNull)
        #expect(!StatusReport.make(spec: try Self.spec(), observations: Self.healthy()).table.contains("archive:"))

        let metrics = WatchMetrics(spec: try Self.spec()).render(
            .init(observations: observations, sinceLastTick: 0.1, interval: 0.5), HealthState.Tick())
        for line in [
            #"pgcluster_node_archive_failing{cluster="demo",node="db_0"} 1.0"#, #"pgcluster_node_archived_total{cluster="demo",node="db_0"} 41"#,
            #"pgcluster_node_archive_failed_total{cluster="demo",node="db_0"} 7"#, #"pgcluster_node_archive_age_seconds{cluster="demo",node="db_0"} 150.0"#,
            #"pgcluster_node_archive_failing{cluster="demo",node="db_1"} 0.0"#, #"pgcluster_node_archive_age_seconds{cluster="demo",node="db_1"} nan"#,
        ] {
            #expect(metrics.contains(line), "\(line) not in:\n\(metrics)")
        }
    }

    @Test("/metrics: a standby's lag in bytes is the number of bytes (it was the integer's bit pattern read as a Double)")
    func lagBytesMetric() throws {
        let metrics = WatchMetrics(spec: try Self.spec()).render(
            .init(observations: Self.healthy(), sinceLastTick: 0.1, interval: 0.5), HealthState.Tick())
        func value(_ node: String) -> Double? {
            let prefix = #"pgcluster_node_lag_bytes{cluster="demo",node=""# + node + #""} "#
            return metrics.split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { Double($0.dropFirst(prefix.count)) }
        }
        // db_0 at 0/3000100; db_2 replayed 0/2F00000.
        #expect(value("db_2") == 1_048_832, "\(metrics)")
        #expect(value("db_1") == 256 && value("db_0") == 0, "\(metrics)")
    }

    @Test("with no primary answering, the synchronous mode in --json is unknown, not async")
    func unknownSynchronous() throws {
        var observations = Self.healthy()
        observations[0] = NodeObservation(node: observations[0].node, error: "connection refused")
        let json = try Self.json(StatusReport.make(spec: try Self.spec(), observations: observations))
        let synchronous = try #require(json["synchronous"] as? [String: Any])
        #expect(synchronous["mode"] as? String == "unknown" && synchronous["count"] as? Int == 0, "\(synchronous)")
        let healthy = try Self.json(StatusReport.make(spec: try Self.spec(), observations: Self.healthy()))
        #expect((healthy["synchronous"] as? [String: Any])?["mode"] as? String == "any")
    }

    @Test("JSON has exactly the documented keys")
    func jsonKeys() throws {
        let report = StatusReport.make(spec: try Self.spec(), observations: Self.healthy())
        let object = try Self.json(report)
        #expect(
            Set(object.keys) == [
                "name", "primary", "timeline", "synchronous", "paused", "nodes",
                // Issue 25: the verdict and its reasons, for scripts that do not parse the table.
                "healthy", "problems", "warnings",
            ])
        #expect(object["healthy"] as? Bool == true)
        #expect(object["problems"] as? [String] == [])
        #expect(object["warnings"] as? [String] == [])
        let synchronous = try #require(object["synchronous"] as? [String: Any])
        #expect(Set(synchronous.keys) == ["mode", "count", "standbys"])
        #expect(synchronous["mode"] as? String == "any")
        #expect(synchronous["count"] as? Int == 1)
        #expect(synchronous["standbys"] as? [String] == ["db_1", "db_2"])
        let nodes = try #require(object["nodes"] as? [[String: Any]])
        #expect(nodes.count == 3)
        let nodeKeys: Set<String> = [
            "name", "host", "port", "role", "timeline", "lsn", "receiveLsn", "replayLsn", "lagBytes", "syncState",
            "upstream", "streaming",
            // Issue 19: why a node is down or silent, and how long a silent one was waited for.
            "waitedSeconds", "reason",
            // Issue 15: days left on the node's TLS certificate (null with TLS off or the node down).
            "certificateDaysLeft",
            // Issue 25: replay lag in seconds, and a setting waiting for a restart.
            "lagSeconds", "pendingRestart",
            // Issue 24: the primary's WAL archiver (null without archiving).
            "archiver",
        ]
        for node in nodes { #expect(Set(node.keys) == nodeKeys) }
        #expect(object["name"] as? String == "demo")
        #expect(object["primary"] as? String == "db_0")
        #expect(object["timeline"] as? Int == 2)
        let db1 = try #require(nodes.first { $0["name"] as? String == "db_1" })
        #expect(db1["lagBytes"] as? Int == 256)
        #expect(db1["upstream"] as? String == "db_0")
        #expect(db1["streaming"] as? Bool == true)
        #expect(db1["replayLsn"] as? String == "0/3000000")
    }

    @Test("JSON: a degraded cluster says healthy false with its problems; lag in seconds; pending restarts warned")
    func jsonVerdictLagAndPending() throws {
        var observations = Self.healthy()
        observations[0].replication[1].replayLagSeconds = 1.5
        observations[1].pendingRestart = true
        observations[0].pendingRestart = true
        observations[2] = Obs.down("db_2", port: 15434, error: "connection refused")
        let report = StatusReport.make(spec: try Self.spec(), observations: observations)
        let object = try Self.json(report)
        #expect(object["healthy"] as? Bool == false)
        #expect(object["problems"] as? [String] == ["db_2 is down: connection refused"])
        #expect(
            object["warnings"] as? [String] == [
                "db_0, db_1 run with a setting that waits for a restart (pending_restart): pgcluster restart --pending"
            ])
        let nodes = try #require(object["nodes"] as? [[String: Any]])
        func node(_ name: String) throws -> [String: Any] { try #require(nodes.first { $0["name"] as? String == name }) }
        #expect(try node("db_0")["pendingRestart"] as? Bool == true)
        #expect(try node("db_1")["pendingRestart"] as? Bool == true)
        #expect(try node("db_2")["pendingRestart"] as? Bool == false)
        // The primary has no lag; a standby idle and caught up has none either (replay_lag null, 0 bytes behind
        // is 0 s); one down is unknown.
        #expect(try node("db_0")["lagSeconds"] is NSNull)
        #expect(try node("db_2")["lagSeconds"] is NSNull)

        observations = Self.healthy()
        observations[0].replication[1].replayLagSeconds = 1.5
        observations[2].replayLsn = observations[0].currentLsn
        let caughtUp = try Self.json(StatusReport.make(spec: try Self.spec(), observations: observations))
        let rows = try #require(caughtUp["nodes"] as? [[String: Any]])
        #expect(rows[1]["lagSeconds"] is NSNull, "db_1: replay_lag null and 256 bytes behind is unknown")
        #expect(rows[2]["lagSeconds"] as? Double == 1.5, "db_2: replay_lag as pg_stat_replication says")
        observations[0].replication[0].replayLagSeconds = nil
        observations[1].replayLsn = observations[0].currentLsn
        let idle = try Self.json(StatusReport.make(spec: try Self.spec(), observations: observations))
        #expect((idle["nodes"] as? [[String: Any]])?[1]["lagSeconds"] as? Double == 0)
    }

    @Test("JSON writes null for absent values instead of leaving keys out")
    func jsonNulls() throws {
        var observations = Self.healthy()
        observations[0] = Obs.down("db_0", role: .primary, port: 15432)
        let report = StatusReport.make(spec: try Self.spec(), observations: observations)
        let object = try Self.json(report)
        #expect(object["primary"] is NSNull)
        #expect(object["timeline"] is NSNull)
        let nodes = try #require(object["nodes"] as? [[String: Any]])
        let db0 = try #require(nodes.first { $0["name"] as? String == "db_0" })
        #expect(db0["role"] as? String == "down")
        #expect(db0["streaming"] as? Bool == false)
        for key in ["timeline", "lsn", "receiveLsn", "replayLsn", "lagBytes", "syncState", "upstream"] {
            #expect(db0[key] is NSNull, "\(key) should be null")
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let text = String(decoding: try encoder.encode(report), as: UTF8.self)
        #expect(text.contains(#""primary":null"#))
        #expect(text.contains(#""lagBytes":null"#))
    }
}
