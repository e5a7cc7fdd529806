import Foundation

/// Where `pgcluster restore --to` recovers to: the end of the archive, a moment, or a WAL position.
public enum RestoreTarget: Sendable, Equatable, CustomStringConvertible {
    case latest
    /// A moment, to the microsecond: seconds since 1970 (UTC) and microseconds.
    case time(seconds: Int64, microseconds: Int)
    case lsn(LSN)

    /// Reads `latest`, an LSN (`0/3000060`) or a time: `2026-12-05 17:30:00`,
    /// `2026-12-05T17:30:00.123456Z`, `2026-12-05 17:30:00+01:00`. A time without a zone is
    /// this machine's local time (`timeZone`).
    public init?(_ text: String, timeZone: TimeZone = .current) {
        let text = text.trimmingCharacters(in: .whitespaces)
        if text == "latest" {
            self = .latest
            return
        }
        if text.wholeMatch(of: #/[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}/#) != nil, let lsn = LSN(text) {
            self = .lsn(lsn)
            return
        }
        let pattern = #/([0-9]{4})-([0-9]{2})-([0-9]{2})[ T]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,6}))?)? ?(Z|[+-][0-9]{2}(?::?[0-9]{2})?)?/#
        guard let match = text.wholeMatch(of: pattern) else { return nil }
        var zone = timeZone
        if let given = match.8 {
            if given == "Z" {
                zone = TimeZone(identifier: "UTC")!
            } else {
                let digits = given.dropFirst().filter(\.isNumber)
                let hours = Int(digits.prefix(2))!, minutes = digits.count > 2 ? Int(digits.dropFirst(2))! : 0
                guard hours <= 15, minutes < 60 else { return nil }
                let offset = (hours * 3600 + minutes * 60) * (given.hasPrefix("-") ? -1 : 1)
                zone = TimeZone(secondsFromGMT: offset)!
            }
        }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let parts = DateComponents(
            year: Int(match.1)!, month: Int(match.2)!, day: Int(match.3)!, hour: Int(match.4)!, minute: Int(match.5)!,
            second: match.6.map { Int($0)! } ?? 0)
        guard (1...12).contains(parts.month!), (1...31).contains(parts.day!), parts.hour! < 24, parts.minute! < 60,
            parts.second! < 60, let date = calendar.date(from: parts),
            calendar.component(.day, from: date) == parts.day
        else { return nil }
        let micros = match.7.map { Int($0.padding(toLength: 6, withPad: "0", startingAt: 0))! } ?? 0
        self = .time(seconds: Int64(date.timeIntervalSince1970.rounded()), microseconds: micros)
    }

    /// The target as PostgreSQL reads `recovery_target_time` (UTC), or the LSN.
    public var description: String {
        switch self {
        case .latest: return "latest"
        case .lsn(let lsn): return lsn.description
        case .time(let seconds, let micros): return Self.utcText(seconds) + String(format: ".%06d+00", micros)
        }
    }

    /// `YYYY-MM-DD HH:MM:SS` in UTC.
    public static func utcText(_ seconds: Int64) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents(
            [.year, .month, .day, .hour, .minute, .second], from: Date(timeIntervalSince1970: TimeInterval(seconds)))
        return String(format: "%04d-%02d-%02d %02d:%02d:%02d", c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
    }
}

/// Which backup a restore starts from, and pgBackRest's arguments for the target: a pure
/// decision on the repository's catalog, so a target it cannot reach is refused before
/// anything is written.
public enum RestoreChoice {
    public struct Plan: Sendable, Equatable {
        /// The backup set (`--set`).
        public var backup: BackupEntry
        /// pgBackRest's restore options for the target (`--type`, `--target`, `--target-action`).
        public var targetArguments: [String]
    }

    /// The newest backup that ended before the target (a backup is consistent only from its
    /// end); `latest` takes the newest backup and replays all the archive holds.
    /// pgBackRest records whole seconds, so a backup that ended in the target's second is
    /// not taken: it may have ended after the target.
    ///
    /// Recovery follows the archive's newest timeline (`history`, PostgreSQL's
    /// `recovery_target_timeline = latest`), so only a backup on that timeline's history can
    /// start it: one taken on an ancestor after the point where it was left (an in-place
    /// restore to before a newer backup leaves that backup behind) is not taken. Without
    /// `history` (the archive has timeline 1 only) every backup is on it.
    public static func plan(_ target: RestoreTarget, catalog: BackupCatalog, history: TimelineHistory? = nil)
        -> Result<Plan, ClusterError>
    {
        let intact = catalog.backups.filter { !$0.error }
        let usable = intact.filter { backup in history?.holds(timeline: backup.timeline, upTo: backup.lsnStop) ?? true }
        guard let newest = usable.last else {
            if let history, let left = intact.last {
                return .failure(
                    ClusterError(
                        "no backup lies on timeline \(history.timeline), the newest in the archive: the newest backup, \(left.label), "
                            + "was taken on timeline \(left.timeline) after \(history.forkDescription(left.timeline)); "
                            + "take a new one with `pgcluster backup`"))
            }
            return .failure(
                ClusterError(
                    "no backup in the repository for stanza \(catalog.stanza): take one with `pgcluster backup` first"))
        }
        switch target {
        case .latest:
            return .success(Plan(backup: newest, targetArguments: ["--type=default"]))
        case .time(let seconds, _):
            guard let backup = usable.last(where: { $0.stop < seconds }) else {
                let first = usable[0]
                return .failure(
                    ClusterError(
                        "the target time \(target) is before the end of the first backup (\(first.label), ended \(RestoreTarget.utcText(first.stop + 1)) UTC): "
                            + "there is nothing to restore from; give a later time, or latest"))
            }
            return .success(
                Plan(backup: backup, targetArguments: ["--type=time", "--target=\(target)", "--target-action=promote"]))
        case .lsn(let lsn):
            guard let backup = usable.last(where: { ($0.lsnStop ?? LSN(UInt64.max)) <= lsn }) else {
                let first = usable[0]
                return .failure(
                    ClusterError(
                        "the target LSN \(lsn) is before the end of the first backup (\(first.label), ended at \(first.lsnStop?.description ?? "?")): "
                            + "give a later LSN, or latest"))
            }
            return .success(
                Plan(backup: backup, targetArguments: ["--type=lsn", "--target=\(lsn)", "--target-action=promote"]))
        }
    }
}

extension RestoreChoice {
    /// A target recovery could never reach, refused before anything is written (an
    /// in-place restore would otherwise stop the cluster for it): a time after `now`, or an
    /// LSN past the live primary's WAL (`primaryLsn`, read after a commit of pgcluster's own,
    /// so that the archive holds a commit past any earlier time) or, with no primary
    /// answering, past the end of the archive's last WAL file (`archiveEnd`). nil when it
    /// may be reached; a time between the archive's last commit and now cannot be told
    /// apart without the primary, and fails in recovery.
    public static func unreachable(_ target: RestoreTarget, now: Date, primaryLsn: LSN?, archiveEnd: LSN?) -> ClusterError? {
        switch target {
        case .latest:
            return nil
        case .time(let seconds, let micros):
            let at = Double(seconds) + Double(micros) / 1_000_000
            guard at > now.timeIntervalSince1970 else { return nil }
            return ClusterError(
                "the target time \(target) is in the future (now: \(RestoreTarget.utcText(Int64(now.timeIntervalSince1970))) UTC): "
                    + "recovery could never reach it; give an earlier time, or latest")
        case .lsn(let lsn):
            if let primaryLsn {
                guard lsn > primaryLsn else { return nil }
                return ClusterError(
                    "the target LSN \(lsn) is past the end of the WAL: the primary is at \(primaryLsn); give an earlier LSN, or latest")
            }
            guard let archiveEnd, lsn >= archiveEnd else { return nil }
            return ClusterError(
                "the target LSN \(lsn) is past the end of the WAL archive (its last file ends at \(archiveEnd)); give an earlier LSN, or latest")
        }
    }
}

/// A timeline's history file (`0000000N.history` in pg_wal and in the WAL archive): each
/// ancestor timeline and the LSN where the next one branched off it (its end).
public struct TimelineHistory: Sendable, Equatable {
    public struct Fork: Sendable, Equatable {
        public var timeline: Int
        public var end: LSN
        public init(timeline: Int, end: LSN) {
            self.timeline = timeline
            self.end = end
        }
    }
    public var timeline: Int
    public var ancestors: [Fork]

    public init(timeline: Int, ancestors: [Fork]) {
        self.timeline = timeline
        self.ancestors = ancestors
    }

    /// Reads a history file's text: `1<TAB>0/3000000<TAB>reason` per ancestor; blank lines
    /// and `#` comments skipped, as PostgreSQL does.
    public static func parse(_ text: String, timeline: Int) -> TimelineHistory {
        let forks = text.split(whereSeparator: \.isNewline).compactMap { line -> Fork? in
            let fields = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
            guard let first = fields.first, !first.hasPrefix("#"), fields.count >= 2, let parent = Int(first),
                let end = LSN(String(fields[1]))
            else { return nil }
            return Fork(timeline: parent, end: end)
        }
        return TimelineHistory(timeline: timeline, ancestors: forks)
    }

    /// Whether WAL of `timeline` up to `stop` is part of this timeline's history: it is this
    /// timeline, or an ancestor left at or after `stop`.
    public func holds(timeline other: Int, upTo stop: LSN?) -> Bool {
        if other == timeline { return true }
        guard let fork = ancestors.first(where: { $0.timeline == other }), let stop else { return false }
        return stop <= fork.end
    }

    /// Where the ancestor `other` ended in this history: its WAL from there on is not part of
    /// this timeline. nil for this timeline itself, or a timeline it does not descend from.
    public func end(of other: Int) -> LSN? {
        ancestors.first { $0.timeline == other }?.end
    }

    /// "its fork at 0/5000000" for an ancestor; "it left this history" otherwise.
    func forkDescription(_ other: Int) -> String {
        guard let fork = ancestors.first(where: { $0.timeline == other }) else {
            return "a branch this timeline does not descend from"
        }
        return "timeline \(timeline) branched off it at \(fork.end)"
    }
}
