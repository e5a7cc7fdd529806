import Foundation

/// Reads observations from live servers, all nodes at once, each with its own deadline,
/// so that one dead or frozen node costs at most that deadline.
public struct Observer: Sendable {
    public var credentials: Credentials
    public var timeout: Double
    /// Whether to read ``NodeObservation/pendingRestart`` (`status`, `restart`): only
    /// `pg_settings` has it, and building that view is most of the observation's cost
    /// (pgbench on a standby: 1.8 ms a query with it, 0.8 ms without), paid on every node
    /// at every watcher probe and twice per node in a failover, which do not look at it.
    public var pendingRestart: Bool

    public init(credentials: Credentials, timeout: Double = 2, pendingRestart: Bool = false) {
        self.credentials = credentials
        self.timeout = timeout
        self.pendingRestart = pendingRestart
    }

    public func target(_ node: NodeSpec, connectTimeout: Int = 2) -> ConnectionTarget {
        ConnectionTarget(
            host: node.host, port: node.port, user: credentials.superuser.user,
            password: credentials.superuser.password, connectTimeout: connectTimeout,
            rootCertificate: credentials.rootCertificate)
    }

    public func observeAll(_ nodes: [NodeSpec]) async -> [NodeObservation] {
        await withTaskGroup(of: (Int, NodeObservation).self) { group in
            for (index, node) in nodes.enumerated() {
                group.addTask { (index, await observe(node)) }
            }
            var results = [NodeObservation?](repeating: nil, count: nodes.count)
            for await (index, observation) in group { results[index] = observation }
            return results.map { $0! }
        }
    }

    public func observe(_ node: NodeSpec) async -> NodeObservation {
        let target = self.target(node, connectTimeout: max(1, Int(timeout.rounded(.up))))
        let sessions = ServerSessions.current
        // The deadline is `timeout` itself. (It was timeout + 0.5, a margin for libpq's own
        // connect_timeout to speak first; but libpq takes no less than 2 s, so the watcher's
        // 0.5 s probes waited 1 s on a silent server, and a SIGSTOPped primary was fenced
        // half a second late: 2.4–2.5 s after the stop instead of within failoverAfter.)
        let result = await Blocking.run(timeout: timeout) { () -> NodeObservation in
            do throws(PGError) {
                return try ServerSessions.with(target, sessions) { connection throws(PGError) in
                    try Self.read(node, connection, pendingRestart: pendingRestart)
                }
            } catch {
                return NodeObservation(node: node, error: error.message)
            }
        }
        if let result {
            // libpq's own connect_timeout ran out: the server took the connection but said nothing.
            if let error = result.error, error.contains("timeout expired") {
                var silent = result
                silent.waitedSeconds = Double(target.connectTimeout)
                return silent
            }
            return result
        }
        var silent = NodeObservation(node: node, error: "no answer within \(timeout) s")
        silent.waitedSeconds = timeout
        return silent
    }

    /// What a node says of itself. `pg_settings` only when asked (``pendingRestart``): the
    /// apply delay is read with `current_setting`, whose text (`0`, `500ms`, `5s`, `1min`)
    /// reads as an interval. `pg_wal` is listed (names only, `pg_ls_dir`: `pg_ls_waldir`
    /// stats every file) only when its history files say the timeline: a standby with no
    /// WAL receiver on one. A busy primary's pg_wal holds thousands of segments (2,000:
    /// 7.4 ms a listing with `pg_ls_waldir`, 2.7 ms with `pg_ls_dir`), and the watcher
    /// probes every node twice a second.
    static func selfQuery(pendingRestart: Bool) -> String {
        """
        SELECT pg_is_in_recovery() AS in_recovery,
          CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS current_lsn,
          pg_last_wal_receive_lsn()::text AS receive_lsn,
          pg_last_wal_replay_lsn()::text AS replay_lsn,
          CASE WHEN pg_is_in_recovery() THEN NULL
               ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END AS primary_tli,
          (SELECT timeline_id FROM pg_control_checkpoint()) AS checkpoint_tli,
          CASE WHEN pg_is_in_recovery() AND r.received_tli IS NULL THEN
            (SELECT max(('x' || substr(name, 1, 8))::bit(32)::int) FROM pg_ls_dir('pg_wal') AS name
               WHERE name ~ '^[0-9A-F]{8}[.]history$') END AS history_tli,
          current_setting('synchronous_standby_names') AS ssn,
          current_setting('primary_conninfo') AS conninfo,
          (EXTRACT(epoch FROM current_setting('recovery_min_apply_delay')::interval) * 1000)::int AS apply_delay,
          CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() END AS pause_state,
          CASE WHEN NOT pg_is_in_recovery() THEN NULL
               WHEN pg_last_wal_receive_lsn() IS NULL OR pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0
               ELSE EXTRACT(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END AS replay_delay,
          \(pendingRestart ? "EXISTS (SELECT 1 FROM pg_settings WHERE pending_restart)" : "NULL") AS pending_restart,
          current_setting('restore_command') AS restore_command,
          r.status, r.sender_host, r.sender_port, r.received_tli, r.slot_name,
          a.archived_count, a.last_archived_wal,
          EXTRACT(epoch FROM clock_timestamp() - a.last_archived_time)::float8 AS archived_age,
          a.failed_count, a.last_failed_wal,
          EXTRACT(epoch FROM clock_timestamp() - a.last_failed_time)::float8 AS failed_age
        FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver AS r ON r.pid IS NOT NULL
          LEFT JOIN pg_stat_archiver AS a ON NOT pg_is_in_recovery() AND current_setting('archive_mode') <> 'off'
        """
    }

    static let replicationQuery = """
        SELECT application_name, state, sync_state, replay_lsn::text, flush_lsn::text,
          EXTRACT(epoch FROM replay_lag)::float8 AS replay_lag
        FROM pg_stat_replication ORDER BY application_name
        """

    static func read(_ node: NodeSpec, _ connection: PGConnection, pendingRestart: Bool = false) throws(PGError) -> NodeObservation {
        let row = try connection.query(selfQuery(pendingRestart: pendingRestart))
        var observation = NodeObservation(node: node)
        observation.inRecovery = row.value(0, "in_recovery") == "t"
        observation.currentLsn = row.value(0, "current_lsn").flatMap(LSN.init)
        observation.receiveLsn = row.value(0, "receive_lsn").flatMap(LSN.init)
        observation.replayLsn = row.value(0, "replay_lsn").flatMap(LSN.init)
        observation.synchronousStandbyNames = row.value(0, "ssn") ?? ""
        observation.primaryConninfo = row.value(0, "conninfo") ?? ""
        observation.applyDelayMs = row.value(0, "apply_delay").flatMap { Int($0) } ?? 0
        observation.replayPause = row.value(0, "pause_state").flatMap { $0 == "not paused" ? nil : $0 }
        observation.replayDelaySeconds = row.value(0, "replay_delay").flatMap(Double.init)
        observation.pendingRestart = row.value(0, "pending_restart") == "t"
        observation.restoreCommand = row.value(0, "restore_command")
        if let archived = row.value(0, "archived_count").flatMap({ Int($0) }) {
            observation.archiver = .init(
                archivedCount: archived, lastArchivedWal: row.value(0, "last_archived_wal"),
                secondsSinceArchived: row.value(0, "archived_age").flatMap(Double.init),
                failedCount: row.value(0, "failed_count").flatMap { Int($0) } ?? 0, lastFailedWal: row.value(0, "last_failed_wal"),
                secondsSinceFailed: row.value(0, "failed_age").flatMap(Double.init))
        }
        if let status = row.value(0, "status") {
            observation.walReceiver = .init(
                status: status, senderHost: row.value(0, "sender_host"),
                senderPort: row.value(0, "sender_port").flatMap { Int($0) },
                receivedTimeline: row.value(0, "received_tli").flatMap { Int($0) },
                slot: row.value(0, "slot_name"))
        }
        // A standby's timeline: the one it streams on; without a WAL receiver (frozen, or its
        // primary just died) the newest timeline it knows a history file of. The last
        // restartpoint's timeline alone can be far behind.
        let checkpointTimeline = row.value(0, "checkpoint_tli").flatMap { Int($0) } ?? 1
        let historyTimeline = row.value(0, "history_tli").flatMap { Int($0) } ?? 1
        observation.timeline =
            row.value(0, "primary_tli").flatMap { Int($0) } ?? observation.walReceiver?.receivedTimeline
            ?? max(checkpointTimeline, historyTimeline)
        if !observation.inRecovery {
            let rows = try connection.query(replicationQuery)
            observation.replication = rows.rows.indices.map { i in
                NodeObservation.ReplicationRow(
                    applicationName: rows.value(i, "application_name") ?? "",
                    state: rows.value(i, "state") ?? "",
                    syncState: rows.value(i, "sync_state") ?? "",
                    replayLsn: rows.value(i, "replay_lsn").flatMap(LSN.init),
                    flushLsn: rows.value(i, "flush_lsn").flatMap(LSN.init),
                    replayLagSeconds: rows.value(i, "replay_lag").flatMap(Double.init))
            }
        }
        return observation
    }
}
