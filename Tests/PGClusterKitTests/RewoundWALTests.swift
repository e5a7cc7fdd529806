import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// What rejoin reports as discarded, from pg_controldata (before the rewind) and pg_rewind's output.
@Suite("Rewound WAL report")
struct RewoundWALTests {
    static func controlData(state: String, checkpoint: String, minRecovery: String = "0/0") -> String {
        """
        pg_control version number:            1300
        Database cluster state:               \(state)
        Latest checkpoint location:           \(checkpoint)
        Latest checkpoint's REDO location:    \(checkpoint)
        Latest checkpoint's TimeLineID:       1
        Minimum recovery ending location:     \(minRecovery)
        Min recovery ending loc's timeline:   0
        """
    }

    static let rewindOutput = """
        pg_rewind: servers diverged at WAL location 0/3000148 on timeline 1
        pg_rewind: rewinding from last common checkpoint at 0/2000060 on timeline 1
        pg_rewind: Done!
        """

    @Test("a cleanly shut down old primary: from the fork to its shutdown checkpoint")
    func clean() throws {
        let rewound = try #require(
            RewoundWAL.parse(controlData: Self.controlData(state: "shut down", checkpoint: "0/3A00028"), rewindOutput: Self.rewindOutput))
        #expect(rewound == RewoundWAL(timeline: 1, from: LSN(0x300_0148), to: LSN(0x3A0_0028), bytes: 0x3A0_0028 - 0x300_0148, counts: nil))
        let text = rewound.text(node: "db_0", primary: "db_1")
        #expect(text.contains("db_0's WAL on timeline 1 from 0/3000148 (where db_1's timeline forked) to 0/3A00028"), "\(text)")
        #expect(text.contains("10.0 MB"), "\(text)")
    }

    @Test("a former standby: its minimum recovery point when later than its checkpoint")
    func minRecoveryPoint() throws {
        let data = Self.controlData(state: "shut down in recovery", checkpoint: "0/3000060", minRecovery: "0/3100000")
        let rewound = try #require(RewoundWAL.parse(controlData: data, rewindOutput: Self.rewindOutput))
        #expect(rewound.to == LSN(0x310_0000))
    }

    @Test("a crashed server's control file does not know its end: nothing reported, crash recovery needed first")
    func crashed() {
        let data = Self.controlData(state: "in production", checkpoint: "0/2000060")
        #expect(RewoundWAL.parse(controlData: data, rewindOutput: Self.rewindOutput) == nil)
        #expect(RewoundWAL.needsCrashRecovery(controlData: data))
        #expect(!RewoundWAL.needsCrashRecovery(controlData: Self.controlData(state: "shut down", checkpoint: "0/2000060")))
    }

    @Test("no rewind required, or output without the fork: nothing reported")
    func noFork() {
        let data = Self.controlData(state: "shut down", checkpoint: "0/3A00028")
        #expect(RewoundWAL.parse(controlData: data, rewindOutput: "pg_rewind: no rewind required") == nil)
    }

    @Test("the old primary wrote nothing past the fork but its shutdown checkpoint: said so")
    func nothingPastFork() throws {
        let data = Self.controlData(state: "shut down", checkpoint: "0/3000148")
        let rewound = try #require(RewoundWAL.parse(controlData: data, rewindOutput: Self.rewindOutput))
        #expect(rewound.bytes == 0)
        #expect(rewound.text(node: "db_0", primary: "db_1").contains("nothing"))
    }

    /// pg_waldump 15's `--rmgr=Transaction --stats=record`, as rejoin runs it.
    static let statistics = """
        WAL statistics between 0/4000028 and 0/4018198:
        Type                                           N      (%)          Record size      (%)             FPI size      (%)        Combined size      (%)
        ----                                           -      ---          -----------      ---             --------      ---        -------------      ---
        Transaction/COMMIT                             2 ( 66.67)                  439 ( 80.00)                    0 (  0.00)                  439 ( 80.00)
        Transaction/COMMIT_PREPARED                    1 ( 33.33)                  110 ( 20.00)                    0 (  0.00)                  110 ( 20.00)
                                                --------                      --------                      --------                      --------
        Total                                          3                           549 [100.00%]                   0 [0.00%]                   549 [100%]
        """

    @Test("the commits and prepares in the discarded range, as pg_waldump counts them; none; a failure at the end; unreadable output")
    func commits() throws {
        let end = LSN(0x401_8198)
        let prepare = "        Transaction/PREPARE                            2 ( 10.00)                  300 ( 20.00)                    0 (  0.00)                  300 ( 20.00)\n"
        #expect(PGWaldump.counts(status: 0, output: Self.statistics, end: end) == .init(commits: 3, prepared: 0))
        #expect(PGWaldump.counts(status: 0, output: Self.statistics + "\n" + prepare, end: end) == .init(commits: 3, prepared: 2))
        #expect(PGWaldump.counts(status: 0, output: "", end: end) == .init(commits: 0, prepared: 0), "nothing printed: no transaction record")
        #expect(
            PGWaldump.counts(status: 0, output: Self.statistics.replacingOccurrences(of: "Transaction/COMMIT ", with: "Transaction/ABORT  "), end: end)
                == .init(commits: 1, prepared: 0))
        // --end on a segment's first record: the statistics, then an error at the end.
        let atEnd = Self.statistics + "\npg_waldump: error: error in WAL record at 0/4018170: invalid resource manager ID 62 at 0/4018198"
        #expect(PGWaldump.counts(status: 1, output: atEnd, end: end) == .init(commits: 3, prepared: 0))
        // An error before the end: the range was not read through.
        let early = Self.statistics + "\npg_waldump: error: error in WAL record at 0/4000100: invalid record length at 0/4000170: wanted 24, got 0"
        #expect(PGWaldump.counts(status: 1, output: early, end: end) == nil)
        #expect(PGWaldump.counts(status: 1, output: "pg_waldump: error: could not find file \"000000010000000000000004\"", end: end) == nil)
        #expect(PGWaldump.counts(status: 0, output: "something else", end: end) == nil)
        let arguments = PGWaldump.transactionStatistics(walDir: "/d/pg_wal", timeline: 2, from: LSN(0x300_0148), to: LSN(0x3A0_0028))
        #expect(arguments == ["--path=/d/pg_wal", "--timeline=2", "--start=0/3000148", "--end=0/3A00028", "--rmgr=Transaction", "--stats=record"])

        var rewound = try #require(
            RewoundWAL.parse(controlData: Self.controlData(state: "shut down", checkpoint: "0/3A00028"), rewindOutput: Self.rewindOutput))
        #expect(rewound.text(node: "db_0", primary: "db_1").hasSuffix("any transaction committed there is gone (they could not be counted)"))
        rewound.counts = .zero
        #expect(rewound.text(node: "db_0", primary: "db_1").hasSuffix("10.0 MB; no transaction was committed or prepared there: none is lost"))
        rewound.counts = .init(commits: 1, prepared: 0)
        #expect(rewound.text(node: "db_0", primary: "db_1").hasSuffix("; 1 transaction committed there is gone"))
        rewound.counts = .init(commits: 7, prepared: 0)
        #expect(rewound.text(node: "db_0", primary: "db_1").hasSuffix("; 7 transactions committed there are gone"))
        rewound.counts = .init(commits: 0, prepared: 1)
        #expect(
            rewound.text(node: "db_0", primary: "db_1").hasSuffix(
                "; no transaction was committed there; 1 prepared transaction (PREPARE TRANSACTION) is gone too"))
    }

    @Test("where an ancestor timeline ended in a history")
    func historyEnd() {
        let history = TimelineHistory.parse("1\t0/3000148\tno recovery target specified\n2\t0/5000000\treason\n", timeline: 3)
        #expect(history.end(of: 1) == LSN(0x300_0148))
        #expect(history.end(of: 2) == LSN(0x500_0000))
        #expect(history.end(of: 3) == nil)
        #expect(history.end(of: 4) == nil)
    }
}
