import Foundation

/// What `rejoin` discarded with pg_rewind: the WAL the old primary wrote on its timeline
/// after the new primary's timeline forked from it. Transactions committed there are
/// gone (they never reached the node that was promoted).
public struct RewoundWAL: Sendable, Equatable, Encodable {
    /// The old primary's timeline, on which the discarded WAL was written.
    public var timeline: Int
    /// Where the timelines forked (pg_rewind: "servers diverged at WAL location ...").
    public var from: LSN
    /// The old primary's last WAL record (its shutdown checkpoint, or the end of recovery).
    public var to: LSN
    /// Bytes of WAL between the two.
    public var bytes: UInt64
    /// The transactions committed and prepared there, as pg_waldump counted them before
    /// the rewind (JSON `commits` and `prepared`); nil when they could not be counted. Bytes
    /// alone do not say it: a crashed primary's recovery and shutdown write checkpoint
    /// records there too.
    public var counts: PGWaldump.Counts?

    enum CodingKeys: String, CodingKey { case timeline, from, to, bytes, commits, prepared }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(timeline, forKey: .timeline)
        try container.encode(from, forKey: .from)
        try container.encode(to, forKey: .to)
        try container.encode(bytes, forKey: .bytes)
        try container.encodeIfPresent(counts?.commits, forKey: .commits)
        try container.encodeIfPresent(counts?.prepared, forKey: .prepared)
    }

    /// Reads the fork point from pg_rewind's output and the old primary's end of WAL from
    /// its pg_controldata taken before the rewind (after a clean shutdown, as pg_rewind
    /// needs). Pure; nil when either is missing.
    public static func parse(controlData: String, rewindOutput: String) -> RewoundWAL? {
        guard
            let match = rewindOutput.firstMatch(
                of: #/servers diverged at WAL location ([0-9A-Fa-f]+/[0-9A-Fa-f]+) on timeline ([0-9]+)/#),
            let from = LSN(String(match.1)), let timeline = Int(match.2),
            let end = endOfWAL(controlData: controlData)
        else { return nil }
        return RewoundWAL(timeline: timeline, from: from, to: end, bytes: end.bytes(after: from), counts: nil)
    }

    /// Where a cleanly shut down server's WAL ends, as pg_rewind reckons it: its last
    /// checkpoint, or the minimum recovery point of a standby when that is later. nil
    /// when the server did not shut down cleanly (then the control file does not know).
    public static func endOfWAL(controlData: String) -> LSN? {
        guard let state = ControlData.value("Database cluster state", in: controlData),
            state == "shut down" || state == "shut down in recovery",
            let checkpoint = ControlData.value("Latest checkpoint location", in: controlData).flatMap(LSN.init)
        else { return nil }
        let minimum = ControlData.value("Minimum recovery ending location", in: controlData).flatMap(LSN.init) ?? LSN(0)
        return max(checkpoint, minimum)
    }

    /// True when pg_controldata says the server stopped without a shutdown checkpoint
    /// (crashed or killed while a primary).
    public static func needsCrashRecovery(controlData: String) -> Bool {
        ControlData.value("Database cluster state", in: controlData) == "in production"
    }

    /// One line for the text report.
    public func text(node: String, primary: String) -> String {
        guard bytes > 0 else {
            return "discarded: nothing of \(node)'s WAL beyond its shutdown checkpoint (timeline \(timeline) forked at \(from))"
        }
        let range = "discarded: \(node)'s WAL on timeline \(timeline) from \(from) (where \(primary)'s timeline forked) "
            + "to \(to) (its last record), \(formatBytes(bytes))"
        guard let counts else { return range + "; any transaction committed there is gone (they could not be counted)" }
        let preparedGone =
            switch counts.prepared {
            case 0: ""
            case 1: "; 1 prepared transaction (PREPARE TRANSACTION) is gone too"
            case let count: "; \(count) prepared transactions (PREPARE TRANSACTION) are gone too"
            }
        switch counts.commits {
        case 0 where counts.prepared == 0: return range + "; no transaction was committed or prepared there: none is lost"
        case 0: return range + "; no transaction was committed there" + preparedGone
        case 1: return range + "; 1 transaction committed there is gone" + preparedGone
        case let count: return range + "; \(count) transactions committed there are gone" + preparedGone
        }
    }
}

/// `pg_waldump`, to count what a rewind discards before it does.
public enum PGWaldump {
    /// Arguments for per-kind statistics of the transaction records on `timeline` from
    /// `start` (where the new primary's timeline forked) to `end` (the last record).
    public static func transactionStatistics(walDir: String, timeline: Int, from start: LSN, to end: LSN) -> [String] {
        ["--path=\(walDir)", "--timeline=\(timeline)", "--start=\(start)", "--end=\(end)", "--rmgr=Transaction", "--stats=record"]
    }

    /// What a rewind discards, by kind.
    public struct Counts: Sendable, Equatable {
        /// COMMIT and COMMIT_PREPARED records.
        public var commits: Int
        /// PREPARE records: two-phase transactions a coordinator was told would commit.
        public var prepared: Int

        public static let zero = Counts(commits: 0, prepared: 0)
    }

    /// The counts in `--stats=record` output (`Transaction/COMMIT   12 ( 85.71) ...`);
    /// zero for a kind without a line (pg_waldump lists only the kinds it met, and prints
    /// nothing at all when it met no transaction record). A failed run counts only when its
    /// error is at `end` or past it: with `--end` on the first record of a segment (a
    /// shutdown that switched segments first) PostgreSQL 15's pg_waldump prints the whole
    /// range's statistics, then fails reading the page that holds `end`. nil otherwise.
    public static func counts(status: Int32, output: String, end: LSN) -> Counts? {
        let lines = output.split(whereSeparator: \.isNewline)
        if status != 0 {
            guard let error = lines.last(where: { $0.hasPrefix("pg_waldump: error:") }),
                let last = error.matches(of: #/[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}/#).last.flatMap({ LSN(String(error[$0.range])) }),
                last >= end
            else { return nil }
        }
        var counts = Counts.zero
        var sawTable = false
        for line in lines where !line.hasPrefix("pg_waldump:") {
            let fields = line.split(whereSeparator: \.isWhitespace)
            guard let name = fields.first else { continue }
            if name == "Type" { sawTable = true }
            guard fields.count > 1, let count = Int(fields[1]) else { continue }
            switch name {
            case "Transaction/COMMIT", "Transaction/COMMIT_PREPARED": counts.commits += count
            case "Transaction/PREPARE": counts.prepared += count
            default: break
            }
        }
        let printedNothing = lines.allSatisfy { $0.hasPrefix("pg_waldump:") || $0.allSatisfy(\.isWhitespace) }
        return sawTable || (status == 0 && printedNothing) ? counts : nil
    }
}
