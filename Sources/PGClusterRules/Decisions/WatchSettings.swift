/// The spec's `watch:` block: how `pgcluster watch` probes and when it acts (README.md, "Automatic failover"; docs/ARCHITECTURE.md, "pgcluster watch").
public struct WatchSettings: Sendable, Equatable {
    /// What `watch` may do to the synchronous mode while no synchronous standby streams.
    public enum Durability: String, Sendable, Equatable, CaseIterable {
        /// Never lowered: commits wait until a synchronous standby streams again.
        case strict
        /// Emptied while none streams (so commits return), recorded, restored when one does.
        case available
    }

    /// What happens to a failed primary when it comes back.
    public enum RejoinPolicy: String, Sendable, Equatable, CaseIterable {
        /// pg_rewind it into a standby of the new primary.
        case auto
        /// Keep it stopped and report it: an operator runs `pgcluster rejoin`.
        case manual
    }

    /// Seconds between probes.
    public var interval: Double
    /// Seconds a primary that does not answer must stay lost before failover.
    public var failoverAfter: Double
    public var durability: Durability
    public var rejoin: RejoinPolicy
    /// With store.etcd: seconds of the watchers' leadership lease (accepted now, used with etcd).
    public var leaseTTL: Double

    public init(
        interval: Double = 0.5, failoverAfter: Double = 2, durability: Durability = .strict, rejoin: RejoinPolicy = .auto,
        leaseTTL: Double = 5
    ) {
        self.interval = interval
        self.failoverAfter = failoverAfter
        self.durability = durability
        self.rejoin = rejoin
        self.leaseTTL = leaseTTL
    }

    /// `wal_receiver_timeout`: half of `failoverAfter`, so that a standby has given up a
    /// silent primary (its WAL receiver is gone) before the watcher may fail over, and
    /// `watch` can tell "only I lost it" from "everyone lost it".
    public var replicationTimeout: String {
        "\(max(200, Int((failoverAfter * 1000 / 2).rounded())))ms"
    }

    /// Parses a duration in seconds: a number (`0.5`, `2`) or with a unit (`500ms`, `2s`, `1min`).
    public static func seconds(_ text: String) -> Double? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        for (unit, factor) in [("ms", 0.001), ("min", 60.0), ("s", 1.0)] where trimmed.hasSuffix(unit) {
            return Double(trimmed.dropLast(unit.count).trimmingCharacters(in: .whitespaces)).map { $0 * factor }
        }
        return Double(trimmed)
    }
}
