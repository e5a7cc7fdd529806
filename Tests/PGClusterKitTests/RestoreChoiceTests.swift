import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// The pure parts of backups and point-in-time recovery: reading `--to`, reading
/// `pgbackrest info --output=json`, and choosing the backup a target needs.
@Suite("Restore choice")
struct RestoreChoiceTests {
    static let utc = TimeZone(identifier: "UTC")!

    @Test(
        "--to reads latest, LSNs and times with or without a zone",
        arguments: [
            ("latest", "latest"),
            ("0/3000060", "0/3000060"),
            ("16/B374D848", "16/B374D848"),
            ("2026-12-05 17:30:00", "2026-12-05 17:30:00.000000+00"),
            ("2026-12-05T17:30:00Z", "2026-12-05 17:30:00.000000+00"),
            ("2026-12-05 17:30:00.25+00", "2026-12-05 17:30:00.250000+00"),
            ("2026-12-05 17:30:00.123456+01:00", "2026-12-05 16:30:00.123456+00"),
            ("2026-12-05 17:30:00-0530", "2026-12-05 23:00:00.000000+00"),
            ("2026-12-05 17:30", "2026-12-05 17:30:00.000000+00"),
            ("2027-01-01 00:00:00.000001+00", "2027-01-01 00:00:00.000001+00"),
        ])
    func parses(_ text: String, _ expected: String) throws {
        let target = try #require(RestoreTarget(text, timeZone: Self.utc))
        #expect(target.description == expected)
    }

    @Test(
        "--to refuses what is neither",
        arguments: ["", "yesterday", "2026-13-01 00:00:00", "2026-02-30 10:00:00", "2026-12-05 25:00:00", "0/XYZ", "1/2/3",
                    "2026-12-05 17:30:00.1234567", "2026-12-05 17:30:00+16"])
    func refuses(_ text: String) {
        #expect(RestoreTarget(text, timeZone: Self.utc) == nil)
    }

    static func backup(_ label: String, stop: Int64, lsnStop: String, type: String = "full") -> BackupEntry {
        BackupEntry(label: label, type: type, start: stop - 5, stop: stop, lsnStart: LSN("0/1000000"), lsnStop: LSN(lsnStop))
    }

    static let catalog = BackupCatalog(
        stanza: "c", statusCode: 0, statusMessage: "ok",
        backups: [
            backup("F1", stop: 1_000, lsnStop: "0/5000000"),
            backup("F1_I2", stop: 2_000, lsnStop: "0/9000000", type: "incr"),
        ])

    @Test("the newest backup that ended before the target; latest takes the newest")
    func choosesTheBackup() throws {
        func label(_ target: RestoreTarget) throws -> String { try RestoreChoice.plan(target, catalog: Self.catalog).get().backup.label }
        #expect(try label(.latest) == "F1_I2")
        #expect(try label(.time(seconds: 1_500, microseconds: 0)) == "F1")
        #expect(try label(.time(seconds: 2_001, microseconds: 0)) == "F1_I2")
        // A backup that ended within the target's second may have ended after it.
        #expect(try label(.time(seconds: 2_000, microseconds: 999_999)) == "F1")
        #expect(try label(.lsn(LSN("0/9000000")!)) == "F1_I2")
        #expect(try label(.lsn(LSN("0/8FFFFFF")!)) == "F1")
        let plan = try RestoreChoice.plan(.time(seconds: 1_500, microseconds: 250_000), catalog: Self.catalog).get()
        #expect(plan.targetArguments == ["--type=time", "--target=1970-01-01 00:25:00.250000+00", "--target-action=promote"])
        #expect(try RestoreChoice.plan(.latest, catalog: Self.catalog).get().targetArguments == ["--type=default"])
    }

    @Test("a target before the first backup ends, or an empty repository, is refused with what to do")
    func refusals() {
        func refusal(_ target: RestoreTarget, _ catalog: BackupCatalog = Self.catalog) -> String? {
            if case .failure(let error) = RestoreChoice.plan(target, catalog: catalog) { return error.message }
            return nil
        }
        #expect(refusal(.time(seconds: 1_000, microseconds: 0))?.contains("before the end of the first backup (F1") == true)
        #expect(refusal(.lsn(LSN("0/4000000")!))?.contains("before the end of the first backup (F1, ended at 0/5000000)") == true)
        let empty = BackupCatalog(stanza: "c", statusCode: 2, statusMessage: "no valid backups", backups: [])
        #expect(refusal(.latest, empty)?.contains("take one with `pgcluster backup`") == true)
        var damaged = Self.catalog
        damaged.backups = damaged.backups.map { var b = $0; b.error = true; return b }
        #expect(refusal(.latest, damaged) != nil)
    }

    /// The shape pgBackRest 2.45 prints (trimmed to the fields pgcluster reads and a few it does not).
    static let infoJSON = #"""
        [{"archive":[{"database":{"id":1,"repo-key":1},"id":"15-1","max":"000000030000000000000009","min":"000000010000000000000001"}],
          "backup":[{"archive":{"start":"000000010000000000000005","stop":"000000010000000000000006"},
            "backrest":{"format":5,"version":"2.45"},"database":{"id":1,"repo-key":1},"error":false,
            "info":{"delta":22960956,"repository":{"delta":4508918,"size":4508918},"size":22960956},
            "label":"20261205-172119F","link":null,"lsn":{"start":"0/5000028","stop":"0/6000050"},"prior":null,"reference":null,
            "timestamp":{"start":1796491279,"stop":1796491283},"type":"full"}],
          "cipher":"none","db":[{"id":1,"repo-key":1,"system-id":7444444444444444444,"version":"15"}],"name":"bksrc",
          "repo":[{"cipher":"none","key":1,"status":{"code":0,"message":"ok"}}],
          "status":{"code":0,"lock":{"backup":{"held":false}},"message":"ok"}}]
        """#

    @Test("pgbackrest info's JSON: each backup, its sizes, WAL and LSN range, and the archive's range")
    func parsesInfo() throws {
        let catalog = try BackupCatalog.parse(Self.infoJSON, stanza: "bksrc")
        #expect(catalog.statusCode == 0 && !catalog.stanzaMissing)
        #expect(catalog.walMin == "000000010000000000000001" && catalog.walMax == "000000030000000000000009")
        let backup = try #require(catalog.backups.first)
        #expect(backup.label == "20261205-172119F" && backup.type == "full")
        #expect(backup.size == 22_960_956 && backup.repositorySize == 4_508_918)
        #expect(backup.lsnStop == LSN("0/6000050") && backup.walStart == "000000010000000000000005")
        #expect(backup.stop == 1_796_491_283)
        #expect(backup.timeline == 1 && catalog.systemId == SystemIdentifier(7_444_444_444_444_444_444))
        // 000000030000000000000009: segment 9 of log 0 ends at 0/A000000.
        #expect(catalog.archiveEnd(segmentBytes: 16 << 20) == LSN("0/A000000"))
        #expect(catalog.archiveEnd(segmentBytes: 4 << 20) == LSN("0/2800000"))
        var far = catalog
        far.walMax = "0000000300000002000003FF"
        #expect(far.archiveEnd(segmentBytes: 4 << 20) == LSN("3/0"), "the last 4 MB segment of 2/…")
        #expect(far.archiveEnd(segmentBytes: 16 << 20) == nil, "no 16 MB segment 0x3FF under one log id")
        #expect(catalog.archiveEnd(segmentBytes: 3 << 20) == nil)
        // With the nodes gone, the size is read from the backups' LSNs and WAL file names.
        #expect(catalog.inferredSegmentBytes == 16 << 20, "\(catalog.backups.map { ($0.walStart, $0.lsnStart, $0.walStop, $0.lsnStop) })")
        var small = catalog
        small.backups[0].walStart = "000000010000000000000001"
        small.backups[0].lsnStart = LSN("0/400028")
        small.backups[0].walStop = "000000010000000000000001"
        small.backups[0].lsnStop = LSN("0/400100")
        #expect(small.inferredSegmentBytes == 4 << 20, "segment 1 at 0/400028: only 4 MB fits")
        small.backups[0].walStart = "000000010000000000000000"
        small.backups[0].lsnStart = LSN("0/28")
        small.backups[0].walStop = "000000010000000000000000"
        small.backups[0].lsnStop = LSN("0/100")
        #expect(small.inferredSegmentBytes == nil, "the first segment fits every size")
        #expect(catalog.text.contains("20261205-172119F  full  2026-12-05 17:21:19  2026-12-05 17:21:23  21.9 MB  4.3 MB"))
        // `backups --json`: the system id as a string (19 digits lose their last ones as a
        // JSON number in jq 1.6 or JavaScript), and read back exactly.
        let json = String(decoding: try JSONEncoder().encode(catalog), as: UTF8.self)
        #expect(json.contains(#""systemId":"7444444444444444444""#), "\(json)")
        #expect(try JSONDecoder().decode(BackupCatalog.self, from: Data(json.utf8)) == catalog)

        let missing = try BackupCatalog.parse(
            #"[{"archive":[],"backup":[],"name":"bksrc","status":{"code":1,"message":"missing stanza path"}}]"#, stanza: "bksrc")
        #expect(missing.stanzaMissing && missing.backups.isEmpty)
        #expect(throws: ClusterError.self) { try BackupCatalog.parse("not json", stanza: "x") }
    }

    /// Backups on timelines 1 and 2 (the first 8 hex digits of their first WAL file).
    static func onTimeline(_ label: String, _ timeline: Int, lsnStop: String, stop: Int64) -> BackupEntry {
        var entry = backup(label, stop: stop, lsnStop: lsnStop)
        entry.walStart = String(format: "%08X", timeline) + "0000000000000001"
        return entry
    }

    @Test("a history file: each ancestor and where the next timeline left it; comments and blank lines skipped")
    func readsHistory() {
        let history = TimelineHistory.parse("1\t0/5000000\tno recovery target specified\n\n# note\n2\t0/9000A0\tbefore 0/9000A0\n", timeline: 3)
        #expect(history.ancestors == [.init(timeline: 1, end: LSN("0/5000000")!), .init(timeline: 2, end: LSN("0/9000A0")!)])
        #expect(history.holds(timeline: 3, upTo: LSN("FF/0")))
        #expect(history.holds(timeline: 1, upTo: LSN("0/5000000")))
        #expect(!history.holds(timeline: 1, upTo: LSN("0/5000001")))
        #expect(!history.holds(timeline: 4, upTo: LSN("0/1")))
        #expect(!history.holds(timeline: 1, upTo: nil))
    }

    @Test("after an in-place restore to before the newest backup, that backup is left behind: an older one on the history is taken")
    func skipsAbandonedTimeline() throws {
        // F1 on timeline 1 ended at 0/3000000; F2 on timeline 1 ended at 0/16000050; the
        // restore forked timeline 2 off timeline 1 at 0/14003BA8 (before F2); F3 on timeline 2.
        var catalog = Self.catalog
        catalog.backups = [
            Self.onTimeline("F1", 1, lsnStop: "0/3000000", stop: 1_000),
            Self.onTimeline("F2", 1, lsnStop: "0/16000050", stop: 2_000),
        ]
        let history = TimelineHistory(timeline: 2, ancestors: [.init(timeline: 1, end: LSN("0/14003BA8")!)])
        #expect(try RestoreChoice.plan(.latest, catalog: catalog, history: history).get().backup.label == "F1")
        #expect(try RestoreChoice.plan(.time(seconds: 3_000, microseconds: 0), catalog: catalog, history: history).get().backup.label == "F1")
        #expect(try RestoreChoice.plan(.lsn(LSN("0/20000000")!), catalog: catalog, history: history).get().backup.label == "F1")
        // Without the history (timeline 1 only) the newest is right.
        #expect(try RestoreChoice.plan(.latest, catalog: catalog).get().backup.label == "F2")
        catalog.backups.append(Self.onTimeline("F3", 2, lsnStop: "0/18000000", stop: 3_000))
        #expect(try RestoreChoice.plan(.latest, catalog: catalog, history: history).get().backup.label == "F3")
        // Nothing on the history: refused, naming the backup left behind and the fork.
        catalog.backups = [Self.onTimeline("F2", 1, lsnStop: "0/16000050", stop: 2_000)]
        guard case .failure(let refusal) = RestoreChoice.plan(.latest, catalog: catalog, history: history) else {
            Issue.record("a backup off the history was taken")
            return
        }
        #expect(refusal.message.contains("no backup lies on timeline 2"))
        #expect(refusal.message.contains("F2, was taken on timeline 1 after timeline 2 branched off it at 0/14003BA8"))
    }

    @Test("a target recovery could never reach is refused up front: a future time, an LSN past the primary or the archive")
    func unreachable() {
        let now = Date(timeIntervalSince1970: 10_000)
        func refusal(_ target: RestoreTarget, primary: String? = nil, archive: String? = nil) -> String? {
            RestoreChoice.unreachable(target, now: now, primaryLsn: primary.flatMap(LSN.init), archiveEnd: archive.flatMap(LSN.init))?.message
        }
        #expect(refusal(.latest) == nil)
        #expect(refusal(.time(seconds: 9_999, microseconds: 999_999)) == nil)
        #expect(refusal(.time(seconds: 10_000, microseconds: 1))?.contains("is in the future (now: 1970-01-01 02:46:40 UTC)") == true)
        #expect(refusal(.lsn(LSN("0/5000000")!), primary: "0/5000000") == nil)
        #expect(refusal(.lsn(LSN("0/5000001")!), primary: "0/5000000")?.contains("past the end of the WAL: the primary is at 0/5000000") == true)
        // With no primary answering, the archive's end bounds it.
        #expect(refusal(.lsn(LSN("0/A000001")!), archive: "0/A000000")?.contains("past the end of the WAL archive") == true)
        #expect(refusal(.lsn(LSN("0/9000000")!), archive: "0/A000000") == nil)
        #expect(refusal(.lsn(LSN("FF/0")!)) == nil)
    }
}

/// A standby's configuration never below its primary's in the settings PostgreSQL checks.
@Suite("hot standby floor")
struct HotStandbyFloorTests {
    @Test("a setting lower than the primary's (the spec's last line, or PostgreSQL's default) is raised in a closing block; others left")
    func raises() {
        let conf = "port = 5432\nmax_connections = '50'   # from the spec\n# max_worker_processes = 2\nmax_wal_senders = 12\n"
        let raised = HotStandbyFloor.raise(
            conf, to: ["max_connections": 100, "max_worker_processes": 8, "max_wal_senders": 10, "max_locks_per_transaction": 128])
        #expect(raised.changes.map(\.0) == ["max_connections", "max_locks_per_transaction"])
        #expect(raised.text.hasPrefix(conf))
        #expect(raised.text.hasSuffix("max_connections = 100\nmax_locks_per_transaction = 128\n"))
        #expect(HotStandbyFloor.raise(conf, to: ["max_connections": 50]).changes.isEmpty)
        #expect(HotStandbyFloor.raise(conf, to: [:]).text == conf)
    }
}
