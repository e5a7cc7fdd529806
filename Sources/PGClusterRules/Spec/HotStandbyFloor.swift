import Foundation

/// PostgreSQL refuses to start a hot standby whose `max_connections`,
/// `max_worker_processes`, `max_wal_senders`, `max_prepared_transactions` or
/// `max_locks_per_transaction` is lower than its primary's ("recovery aborted because of
/// insufficient parameter settings"). A rendered standby configuration is raised to the
/// primary's live values where the spec's are lower: a lowered value is `apply`'s to roll
/// out (the primary first), not `start`'s.
public enum HotStandbyFloor {
    public static let settings = [
        "max_connections", "max_worker_processes", "max_wal_senders", "max_prepared_transactions", "max_locks_per_transaction",
    ]

    /// PostgreSQL 15's defaults, for a setting the configuration does not name.
    static let defaults = [
        "max_connections": 100, "max_worker_processes": 8, "max_wal_senders": 10, "max_prepared_transactions": 0,
        "max_locks_per_transaction": 64,
    ]

    /// `conf` with a closing block that sets each setting of `floors` whose value in `conf`
    /// (its last line, else PostgreSQL's default) is lower; and what was raised, in order.
    public static func raise(_ conf: String, to floors: [String: Int]) -> (text: String, changes: [(String, Int)]) {
        var changes: [(String, Int)] = []
        for name in settings {
            guard let floor = floors[name] else { continue }
            let current = value(of: name, in: conf) ?? defaults[name] ?? 0
            if floor > current { changes.append((name, floor)) }
        }
        guard !changes.isEmpty else { return (conf, []) }
        var text = conf.hasSuffix("\n") ? conf : conf + "\n"
        text += "\n# A standby needs these at least as high as on its primary; the spec's lower values wait\n"
        text += "# for `pgcluster apply`, which lowers the primary first.\n"
        for (name, value) in changes { text += "\(name) = \(value)\n" }
        return (text, changes)
    }

    /// The value of the last `name = value` line (quotes allowed, comments skipped).
    static func value(of name: String, in conf: String) -> Int? {
        var found: Int?
        for line in conf.split(whereSeparator: \.isNewline) {
            let code = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let parts = code.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces) == name else { continue }
            let raw = parts[1].trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "'"))
            if let number = Int(raw) { found = number }
        }
        return found
    }
}
