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
        return RewoundWAL(timeline: timeline, from: from, to: end, bytes: end.bytes(after: from))
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
        return "discarded: \(node)'s WAL on timeline \(timeline) from \(from) (where \(primary)'s timeline forked) "
            + "to \(to) (its last record), \(formatBytes(bytes)); transactions committed there are gone"
    }
}
