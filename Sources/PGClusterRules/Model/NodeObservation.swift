import Foundation

/// What one node said about itself at one moment. The cluster's truth is these,
/// not the files pgcluster keeps.
public struct NodeObservation: Sendable, Equatable {
    public struct WalReceiver: Sendable, Equatable {
        public var status: String
        public var senderHost: String?
        public var senderPort: Int?
        public var receivedTimeline: Int?
        public var slot: String?

        public init(status: String, senderHost: String?, senderPort: Int?, receivedTimeline: Int?, slot: String?) {
            self.status = status
            self.senderHost = senderHost
            self.senderPort = senderPort
            self.receivedTimeline = receivedTimeline
            self.slot = slot
        }
    }

    /// One row of the primary's pg_stat_replication.
    public struct ReplicationRow: Sendable, Equatable {
        public var applicationName: String
        public var state: String
        public var syncState: String
        public var replayLsn: LSN?
        public var flushLsn: LSN?
        public var replayLagSeconds: Double?

        public init(
            applicationName: String, state: String, syncState: String, replayLsn: LSN?, flushLsn: LSN?,
            replayLagSeconds: Double?
        ) {
            self.applicationName = applicationName
            self.state = state
            self.syncState = syncState
            self.replayLsn = replayLsn
            self.flushLsn = flushLsn
            self.replayLagSeconds = replayLagSeconds
        }
    }

    public var node: NodeSpec
    /// Nil when the node answered; otherwise why not.
    public var error: String?
    public var inRecovery: Bool = false
    public var timeline: Int?
    /// The primary's current write position.
    public var currentLsn: LSN?
    public var receiveLsn: LSN?
    public var replayLsn: LSN?
    public var walReceiver: WalReceiver?
    public var replication: [ReplicationRow] = []
    public var synchronousStandbyNames: String = ""
    public var primaryConninfo: String = ""
    /// A standby's `recovery_min_apply_delay`, in milliseconds: it replays that far behind.
    public var applyDelayMs: Int = 0
    /// A standby's `pg_get_wal_replay_pause_state()`: nil, or `pause requested` / `paused`.
    public var replayPause: String?
    /// A standby's replay delay in seconds: while it has received WAL it has not replayed,
    /// the time since the last transaction it replayed committed (on the primary's clock);
    /// 0 when it has replayed all it received. Nil on a primary.
    public var replayDelaySeconds: Double?
    /// pg_settings has a row with pending_restart: a setting changed in the node's files
    /// takes effect only when it restarts.
    public var pendingRestart = false
    /// The `restore_command` it runs with ('' when none; nil when not read). With `backup:`,
    /// an empty one on a node that is not in a failover or switchover was left by one that
    /// was interrupted.
    public var restoreCommand: String?
    /// A primary's WAL archiver (pg_stat_archiver) while archive_mode is on; nil on a
    /// standby, without archiving, or when not read.
    public var archiver: Archiver?

    /// pg_stat_archiver, as a primary reports it.
    public struct Archiver: Sendable, Equatable, Encodable {
        /// WAL files archived since the server started (or its statistics were reset).
        public var archivedCount: Int
        public var lastArchivedWal: String?
        /// Seconds since the last file was archived; nil before the first.
        public var secondsSinceArchived: Double?
        /// Failed attempts to archive (PostgreSQL retries each file until it succeeds).
        public var failedCount: Int
        public var lastFailedWal: String?
        /// Seconds since the last failed attempt; nil before the first.
        public var secondsSinceFailed: Double?

        public init(
            archivedCount: Int, lastArchivedWal: String?, secondsSinceArchived: Double?, failedCount: Int,
            lastFailedWal: String?, secondsSinceFailed: Double?
        ) {
            self.archivedCount = archivedCount
            self.lastArchivedWal = lastArchivedWal
            self.secondsSinceArchived = secondsSinceArchived
            self.failedCount = failedCount
            self.lastFailedWal = lastFailedWal
            self.secondsSinceFailed = secondsSinceFailed
        }

        /// Its last attempt failed: a failure newer than the last success (or no success yet).
        /// PostgreSQL keeps every WAL file from the failed one on in pg_wal until it succeeds.
        public var failing: Bool {
            guard let failed = secondsSinceFailed else { return false }
            guard let archived = secondsSinceArchived else { return true }
            return failed < archived
        }

        enum CodingKeys: String, CodingKey {
            case archivedCount, lastArchivedWal, secondsSinceArchived, failedCount, lastFailedWal, secondsSinceFailed, failing
        }

        public func encode(to encoder: any Encoder) throws {
            // Every key present, null where there is no value (as the rest of `status --json`).
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(archivedCount, forKey: .archivedCount)
            try c.encode(lastArchivedWal, forKey: .lastArchivedWal)
            try c.encode(secondsSinceArchived, forKey: .secondsSinceArchived)
            try c.encode(failedCount, forKey: .failedCount)
            try c.encode(lastFailedWal, forKey: .lastFailedWal)
            try c.encode(secondsSinceFailed, forKey: .secondsSinceFailed)
            try c.encode(failing, forKey: .failing)
        }
    }

    public init(node: NodeSpec, error: String? = nil) {
        self.node = node
        self.error = error
    }

    /// Seconds the probe waited before giving up, when it timed out (nil otherwise).
    public var waitedSeconds: Double?

    public var reachable: Bool { error == nil }

    /// What a probe that got no answer proves. `down` only when it is proven: the node's
    /// port refused the connection. A timeout, a route that failed, or a server that
    /// answered with an error (starting up, shutting down) proves nothing: `noAnswer`.
    /// Status and the watcher both classify through this (with the watcher adding what the
    /// node's host says of its postmaster, ``Health/classify(_:postmaster:)``).
    public var health: Health { Health.classify(self, postmaster: nil) }

    public enum Health: String, Sendable, Equatable {
        case primary
        case standby
        /// Proven: the connection was refused, or its host answered and no postmaster runs.
        case down
        /// Not proven either way: the probe timed out or its transport failed.
        case noAnswer = "no answer"

        /// - Parameter postmaster: what the node's host said (true: a postmaster runs for its
        ///   data directory, false: none runs, nil: not asked or the host could not be asked).
        public static func classify(_ observation: NodeObservation, postmaster: Bool?) -> Health {
            if observation.reachable { return observation.inRecovery ? .standby : .primary }
            switch postmaster {
            case false?: return .down
            case true?: return .noAnswer
            case nil: return observation.refused ? .down : .noAnswer
            }
        }
    }

    /// Whether the probe's connection was refused (nothing listens on the node's port).
    public var refused: Bool {
        guard let error, waitedSeconds == nil else { return false }
        return error.range(of: "connection refused", options: .caseInsensitive) != nil
    }
    public var isPrimary: Bool { reachable && !inRecovery }
    public var isStandby: Bool { reachable && inRecovery }
    public var streaming: Bool { walReceiver?.status == "streaming" }

    /// On a primary: the application names of the standbys streaming from it.
    public var streamingStandbys: Set<String> {
        Set(replication.filter { $0.state == "streaming" }.map(\.applicationName))
    }

    /// The furthest WAL this node has: written (primary) or received/replayed (standby).
    public var bestLsn: LSN? {
        if let currentLsn { return currentLsn }
        return [receiveLsn, replayLsn].compactMap { $0 }.max()
    }
}
