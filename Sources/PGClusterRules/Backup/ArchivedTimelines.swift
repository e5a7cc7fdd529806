/// A promotion picks its new timeline as one past the newest history file it can find: in
/// pg_wal, and through `restore_command` in the WAL archive. Asking the archive costs an
/// archive-get per file (0.13–0.34 s each over ssh to a repository host), twice per
/// promotion, so pgcluster freezes standbys without `restore_command` and looks at the
/// archive itself, once, beside the other failover steps. What the candidate must then be
/// given, so that it never takes a timeline the archive already holds (pgBackRest would
/// refuse the second `0000000N.history`, and archiving would stop), is decided here.
public enum ArchivedTimelines {
    /// The timelines whose history files a repository listing names: `0000000A.history`
    /// (uppercase hex, as PostgreSQL writes them), any other line ignored. Sorted, unique.
    public static func parse(_ listing: String) -> [Int] {
        let names = listing.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        let timelines = names.compactMap { name -> Int? in
            guard name.count == 16, name.hasSuffix(".history") else { return nil }
            let hex = name.prefix(8)
            guard hex.allSatisfy({ $0.isHexDigit && !$0.isLowercase }) else { return nil }
            return Int(hex, radix: 16)
        }
        return Array(Set(timelines)).sorted()
    }

    /// The archived timelines newer than the candidate's: their history files go into its
    /// pg_wal before the promotion, so that it picks a timeline past all of them, as it would
    /// had it asked the archive.
    public static func toFetch(candidateTimeline: Int, archived: [Int]) -> [Int] {
        archived.filter { $0 > candidateTimeline }.sorted()
    }

    /// The history file's name for `timeline`.
    public static func historyFile(_ timeline: Int) -> String {
        let hex = String(timeline, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 8 - hex.count)) + hex + ".history"
    }
}
