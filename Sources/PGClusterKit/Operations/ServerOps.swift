import Foundation

/// The SQL-level steps failover, switchover and rejoin are made of. They work over
/// libpq alone, so they serve every backend.
public struct ServerOps: Sendable {
    public let spec: ClusterSpec
    public let credentials: Credentials
    public let renderer: Renderer

    public init(spec: ClusterSpec, credentials: Credentials, templates: TemplateSet = .embedded) {
        self.spec = spec
        self.credentials = credentials
        self.renderer = Renderer(spec: spec, templates: templates)
    }

    var observer: Observer { Observer(credentials: credentials) }

    /// Runs statements in order on one node, on a thread of their own, within `timeout`.
    @discardableResult
    public func execute(_ node: NodeSpec, _ statements: [String], timeout: Double = 10) async throws(ClusterError) -> QueryResult {
        try await Self.execute(
            statements, on: observer.target(node, connectTimeout: max(1, Int(min(timeout, 5)))), name: node.name,
            timeout: timeout)
    }

    /// Runs statements in order on one server, on a thread of their own, within `timeout`;
    /// errors name the server `name`.
    @discardableResult
    public static func execute(
        _ statements: [String], on target: ConnectionTarget, name: String, timeout: Double = 10
    ) async throws(ClusterError) -> QueryResult {
        let sessions = ServerSessions.current
        let outcome: Result<QueryResult, PGError>? = await Blocking.run(timeout: timeout) {
            do throws(PGError) {
                return .success(
                    try ServerSessions.with(target, sessions) { connection throws(PGError) in
                        var last = QueryResult(columns: [], rows: [])
                        for statement in statements { last = try connection.query(statement) }
                        return last
                    })
            } catch {
                return .failure(error)
            }
        }
        switch outcome {
        case .success(let result)?: return result
        case .failure(let error)?: throw ClusterError("\(name): \(error)")
        case nil: throw ClusterError("\(name): no answer within \(timeout) s")
        }
    }

    /// Polls `check` every 20 ms until it returns true or `timeout` passes.
    public func waitFor(
        _ what: String, timeout: Double, _ check: () async -> Bool
    ) async throws(ClusterError) {
        let deadline = ContinuousClock.now + .seconds(timeout)
        while ContinuousClock.now < deadline {
            if await check() { return }
            try Cancelled.check(before: "waiting until \(what)")
            try? await Task.sleep(for: .milliseconds(20))
        }
        if await check() { return }
        throw ClusterError("timed out after \(timeout) s waiting until \(what)")
    }

    /// Runs `statements`, then `query` every 5 ms until `done` says so, all on one
    /// connection (a handshake, with TLS, costs more than the query): nil after `timeout`.
    /// A lost connection is opened again.
    public func poll(
        _ node: NodeSpec, after statements: [String] = [], _ query: String, timeout: Double,
        until done: @escaping @Sendable (QueryResult) -> Bool
    ) async throws(ClusterError) -> QueryResult? {
        let target = observer.target(node, connectTimeout: max(1, Int(min(timeout, 5))))
        let sessions = ServerSessions.current
        let outcome: Result<QueryResult?, PGError>? = await Blocking.run(timeout: timeout + 5) {
            let deadline = Date().addingTimeInterval(timeout)
            var pending = statements
            var lastError: PGError?
            while Date() < deadline {
                do throws(PGError) {
                    let found = try ServerSessions.with(target, sessions) { connection throws(PGError) -> QueryResult? in
                        for statement in pending { try connection.query(statement) }
                        pending = []
                        while Date() < deadline {
                            let result = try connection.query(query)
                            if done(result) { return result }
                            usleep(5_000)
                        }
                        return nil
                    }
                    if let found { return .success(found) }
                } catch {
                    lastError = error
                    if !pending.isEmpty { return .failure(error) }
                    usleep(20_000)
                }
            }
            return lastError.map { .failure($0) } ?? .success(nil)
        }
        switch outcome {
        case .success(let result)?: return result
        case .failure(let error)?: throw ClusterError("\(node.name): \(error)")
        case nil: return nil
        }
    }

    /// The `primary_conninfo` the configuration files give (the last of its lines; none: the
    /// empty default), as ALTER SYSTEM left it, whether or not this session took the reload yet.
    static let configuredConninfo = """
        SELECT coalesce((SELECT setting FROM pg_file_settings WHERE name = 'primary_conninfo' \
        ORDER BY seqno DESC LIMIT 1), '')
        """

    /// Cuts a standby off from whatever it streams from, and waits until its WAL receiver
    /// has stopped: from then on it acknowledges nothing and its LSNs stand still.
    public func freeze(_ node: NodeSpec) async throws(ClusterError) {
        let stopped = try await poll(
            node, after: archiveOff + ["ALTER SYSTEM SET primary_conninfo = ''", "SELECT pg_reload_conf()"],
            "SELECT count(*) FROM pg_stat_wal_receiver WHERE pid IS NOT NULL", timeout: 10
        ) { $0.scalar == "0" }
        if stopped == nil { throw ClusterError("timed out after 10 s waiting until \(node.name)'s WAL receiver stopped") }
    }

    /// With `backup:`, a frozen standby gets no WAL from the archive either (its position
    /// stands still), and a promotion or a timeline switch does not wait on archive-gets
    /// (0.13–0.34 s each over ssh): `restore_command` is emptied until ``archiveOn(_:)``.
    /// The choice of the new timeline, which would ask the archive, is made safe by the
    /// failover itself (``ArchivedTimelines``).
    ///
    /// Its own reload, before the one that stops the WAL receiver: a startup process that
    /// finds its receiver gone tries the archive at once, and takes a reload only between
    /// tries, so one reload for both would often run one last archive-get (0.4 s over ssh).
    var archiveOff: [String] { spec.backup == nil ? [] : ["ALTER SYSTEM SET restore_command = ''", "SELECT pg_reload_conf()"] }

    /// With `backup:`: `restore_command` emptied on `node` (a reload), as the freeze does;
    /// a switchover's candidate, before the old primary stops.
    public func archiveOff(_ node: NodeSpec) async throws(ClusterError) {
        guard !archiveOff.isEmpty else { return }
        try await execute(node, archiveOff)
    }

    /// The node reads the archive again (the rendered `restore_command`), where a freeze had
    /// emptied it; nothing without `backup:`. Best effort: a node that cannot be reached
    /// is named in a warning with the statement that puts it back.
    public func archiveOn(_ nodes: [NodeSpec]) async {
        guard spec.backup != nil else { return }
        let results = await parallel(nodes) { node throws(ClusterError) in try await archiveOn(node) }
        for (node, error) in results {
            guard let error else { continue }
            Console.warn(
                "\(node.name) may still have an empty restore_command (\(error.message)): once it answers, "
                    + "ALTER SYSTEM RESET restore_command; SELECT pg_reload_conf(); there")
        }
    }

    /// Wakes the primary's WAL archiver, which after three failed tries a second apart waits
    /// up to a minute before the next: a reload does (the archiver's SIGHUP sets its latch),
    /// and it tries the failed file again at once. Best effort.
    public func wakeArchiver(_ primary: NodeSpec) async {
        _ = try? await execute(primary, ["SELECT pg_reload_conf()"], timeout: 5)
    }

    /// Wakes the primary's failing archiver (``wakeArchiver(_:)``) and waits, `within`
    /// seconds at most, until it has archived past its failure. Returns the archiver as last
    /// seen: `failing` still true when it did not recover in time.
    public func wakeUntilArchiving(_ primary: NodeSpec, within seconds: Double = 10) async -> NodeObservation.Archiver? {
        await wakeArchiver(primary)
        let deadline = ContinuousClock.now + .seconds(seconds)
        var archiver = await observer.observe(primary).archiver
        while archiver?.failing == true && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(100))
            archiver = await observer.observe(primary).archiver
        }
        return archiver
    }

    /// ``archiveOn(_:)`` for one node, failing when it cannot (nothing without `backup:`).
    public func archiveOn(_ node: NodeSpec) async throws(ClusterError) {
        guard spec.backup != nil else { return }
        try await execute(node, ["ALTER SYSTEM RESET restore_command", "SELECT pg_reload_conf()"], timeout: 5)
    }

    /// Readies a chosen standby to replay all it received: resumes a paused replay and lifts a
    /// `recovery_min_apply_delay` (a candidate with one is promoted only when named), saying so.
    public func prepareReplay(_ standby: NodeObservation) async throws(ClusterError) {
        let node = standby.node
        if standby.applyDelayMs > 0 {
            Console.progress("[\(node.name)] lifting recovery_min_apply_delay (\(standby.applyDelayMs) ms) to promote it")
            try await execute(node, ["ALTER SYSTEM SET recovery_min_apply_delay = 0", "SELECT pg_reload_conf()"])
        }
        if let pause = standby.replayPause {
            Console.progress("[\(node.name)] WAL replay was \(pause) (pg_wal_replay_pause): resuming it to promote")
            try await execute(node, ["SELECT pg_wal_replay_resume()"])
        }
    }

    /// The standbys that will follow `primary` whose replay is paused: resumed (and said),
    /// at once. A paused standby cannot switch to the new timeline: it was left "needs
    /// rejoin", and a watcher would rewind it, where a resume was all it needed. Best effort:
    /// one that cannot be resumed shows as not following.
    public func resumeReplay(_ standbys: [NodeObservation], toFollow primary: NodeSpec) async {
        let paused = standbys.filter { $0.replayPause != nil && $0.node != primary }
        _ = await parallel(paused.map(\.node)) { node throws(ClusterError) in
            Console.progress("[\(node.name)] WAL replay was paused (pg_wal_replay_pause): resuming it, to follow \(primary.name) onto its new timeline")
            try await execute(node, ["SELECT pg_wal_replay_resume()"], timeout: 5)
        }
    }

    /// Waits until the standby has replayed everything it received, saying every 2 s how much
    /// is left; a replay paused meanwhile is resumed (and said).
    ///
    /// Everything it *can* replay: a primary that died while writing a record that spans WAL
    /// pages had sent its first pages, which the standby received, and no standby will ever
    /// replay that incomplete record (received stays ahead of replayed for good: the
    /// failover waited out its timeout and promoted nothing). So the wait also ends when the
    /// startup process waits for more WAL (`RecoveryWalStream`, `RecoveryRetrieveRetryInterval`)
    /// and its replay position has stood still for ``settled`` seconds. What is left is no
    /// acknowledged commit: a commit is acknowledged once a quorum standby has flushed its
    /// record's end, and WAL is written in order, so every record before that end is complete
    /// and replayable. The bytes so left unreplayed are said.
    public func waitForReplay(_ node: NodeSpec, timeout: Double = 60, settled: Double = 0.3) async throws(ClusterError) {
        let query = """
            SELECT pg_last_wal_receive_lsn() IS NULL OR pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn(),
              pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint, pg_get_wal_replay_pause_state(),
              pg_last_wal_replay_lsn()::text, (SELECT wait_event FROM pg_stat_activity WHERE backend_type = 'startup' LIMIT 1)
            """
        let clock = ContinuousClock()
        let began = clock.now
        var said = began
        var left = "?"
        var paused = false
        // The replay position the startup process was last seen waiting for WAL at, and since when.
        var waitingAt: (lsn: String, since: ContinuousClock.Instant)?
        var incomplete: Int64 = 0
        do {
            try await waitFor("\(node.name) replayed all it received", timeout: timeout) {
                guard let row = (try? await execute(node, [query], timeout: 2))?.rows.first, row.count == 5 else { return false }
                if row[0] == "t" { return true }
                left = row[1] ?? "?"
                paused = row[2] != "not paused"
                if let pause = row[2], paused {
                    Console.progress("[\(node.name)] WAL replay is \(pause): resuming it")
                    _ = try? await execute(node, ["SELECT pg_wal_replay_resume()"], timeout: 2)
                }
                let waitsForWAL = ["RecoveryWalStream", "RecoveryRetrieveRetryInterval"].contains(row[4] ?? "")
                if !paused, waitsForWAL, let replayed = row[3] {
                    if let seen = waitingAt, seen.lsn == replayed {
                        if clock.now - seen.since >= .seconds(settled) {
                            incomplete = Int64(left) ?? 0
                            return true
                        }
                    } else {
                        waitingAt = (replayed, clock.now)
                    }
                } else {
                    waitingAt = nil
                }
                if clock.now - said >= .seconds(2) {
                    said = clock.now
                    Console.progress("[\(node.name)] replaying what it received: \(left) bytes left after \(Int((clock.now - began).seconds)) s")
                }
                return false
            }
        } catch {
            throw ClusterError(
                "\(error.message): \(left) bytes not yet replayed" + (paused ? ", and its replay stays paused" : ""),
                details: ["nothing was promoted; the standbys were put back on their upstream", "check \(node.name)'s log"])
        }
        if incomplete > 0 {
            Console.progress(
                "[\(node.name)] replayed every complete record; the last \(incomplete) bytes it received are the start of a record "
                    + "its primary never finished writing (no commit is in them), which no standby can replay")
        }
    }

    /// Promotes a standby and waits until it accepts writes. `pg_promote(true)` re-checks
    /// only every 100 ms; asking without waiting and polling every 10 ms ends sooner.
    public func promote(_ node: NodeSpec, timeout: Double = 60) async throws(ClusterError) {
        try await HeldLocks.verify(before: "promoting \(node.name)")
        let target = observer.target(node, connectTimeout: 5)
        let sessions = ServerSessions.current
        let outcome: Result<Bool, PGError>? = await Blocking.run(timeout: timeout + 5) {
            do throws(PGError) {
                return .success(
                    try ServerSessions.with(target, sessions) { connection throws(PGError) in
                        guard try connection.query("SELECT pg_promote(false)").scalar == "t" else { return false }
                        // pg_promote(true) would look every 100 ms; the end of recovery takes a few.
                        let deadline = Date().addingTimeInterval(timeout)
                        while Date() < deadline {
                            if try connection.query("SELECT pg_is_in_recovery()").scalar == "f" { return true }
                            usleep(2_000)
                        }
                        return false
                    })
            } catch {
                return .failure(error)
            }
        }
        switch outcome {
        case .success(true)?: return
        case .success(false)?, nil:
            throw ClusterError("\(node.name): promotion did not finish within \(Int(timeout)) s", details: ["check its log"])
        case .failure(let error)?:
            throw ClusterError("\(node.name): pg_promote failed: \(error)")
        }
    }

    /// On a (new) primary: a physical slot, reserving WAL now, for each standby that will follow it.
    /// A slot invalidated because its standby stayed away past `replication.maxSlotWalKeep`
    /// (`wal_status` lost, and nobody streams through it) is made again: the standby catches
    /// up from the WAL archive (`restore_command`, with `backup:`), then streams through the
    /// new slot, which keeps WAL from its creation on. PostgreSQL 15 lets a physical
    /// standby stream through an invalidated slot again once the WAL it asks for exists;
    /// remaking the slot does not depend on that, and reserves WAL at once.
    public func ensureSlots(on primary: NodeSpec, for standbys: [NodeSpec]) async throws(ClusterError) {
        guard spec.replication.slots, !standbys.isEmpty else { return }
        let lost = standbys.map { ConfigText.sqlLiteral(renderer.slotName($0)) }.joined(separator: ", ")
        let dropped = try await execute(
            primary,
            [
                "SELECT slot_name, pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                    + "WHERE slot_name IN (\(lost)) AND wal_status = 'lost' AND NOT active"
            ])
        for row in dropped.rows {
            Console.progress(
                "[\(primary.name)] replication slot \(row.first.flatMap { $0 } ?? "?") was invalidated (its standby stayed away past "
                    + "replication.maxSlotWalKeep): made again; the standby catches up from the WAL archive, then streams")
        }
        let statements = standbys.map { standby in
            let slot = ConfigText.sqlLiteral(renderer.slotName(standby))
            return "SELECT pg_create_physical_replication_slot(\(slot), true) "
                + "WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = \(slot))"
        }
        try await execute(primary, statements)
    }

    /// Drops slots on `primary` that no standby of the spec uses any more (its own, once it is primary).
    public func dropSlot(on primary: NodeSpec, for node: NodeSpec) async throws(ClusterError) {
        let slot = ConfigText.sqlLiteral(renderer.slotName(node))
        try await execute(
            primary,
            ["SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = \(slot) AND NOT active"])
    }

    /// Points a running standby at `upstream` by ALTER SYSTEM and reload (no restart on PostgreSQL 13+).
    public func rePoint(_ node: NodeSpec, to upstream: NodeSpec) async throws(ClusterError) {
        var statements = [
            "ALTER SYSTEM SET primary_conninfo = \(ConfigText.sqlLiteral(renderer.primaryConninfo(node, upstream: upstream)))"
        ]
        if spec.replication.slots {
            statements.append("ALTER SYSTEM SET primary_slot_name = \(ConfigText.sqlLiteral(renderer.slotName(node)))")
        } else {
            statements.append("ALTER SYSTEM RESET primary_slot_name")
        }
        statements.append("SELECT pg_reload_conf()")
        try await execute(node, statements)
    }

    /// Waits until every named standby streams from `primary` (by its pg_stat_replication)
    /// and, when given, on `timeline`. Returns those that did not in time. The primary is
    /// asked on one connection; each standby once it shows there, for its timeline. One
    /// still not streaming is woken (``nudge(_:)``) 0.15, 0.3, 0.6, 1.2 and 2.4 s in
    /// (``nudgesAfter``); later it would ask again by itself sooner than a nudge would help,
    /// and a standby that catches up from the archive for minutes would log a reload every time.
    public func confirmStreaming(
        _ standbys: [NodeSpec], from primary: NodeSpec, timeline: Int?, timeout: Double
    ) async -> [NodeSpec] {
        guard !standbys.isEmpty else { return [] }
        let began = ContinuousClock.now
        let deadline = began + .seconds(timeout)
        var pending = standbys
        var confirmed: Set<String> = []
        var nudges = Self.nudgesAfter.map { began + .seconds($0) }
        while !pending.isEmpty && ContinuousClock.now < deadline {
            let names = pending.map(\.name)
            var left = max(0.1, (deadline - ContinuousClock.now).seconds)
            if let next = nudges.first { left = min(left, max(0.02, (next - ContinuousClock.now).seconds)) }
            // Wait (on one connection) until at least one more of them streams.
            let rows = try? await poll(
                primary, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'", timeout: left
            ) { result in result.rows.contains { names.contains($0.first.flatMap { $0 } ?? "") } }
            let streaming = Set(rows?.rows.compactMap { $0.first.flatMap { $0 } } ?? [])
            // Each that streams is asked its timeline, all at once.
            let toAsk = timeline == nil ? [] : pending.filter { streaming.contains($0.name) && !confirmed.contains($0.name) }
            let asked = await parallelResults(toAsk) { standby throws(ClusterError) in
                try await execute(standby, ["SELECT received_tli FROM pg_stat_wal_receiver WHERE status = 'streaming'"], timeout: 2).scalar
            }
            let onTimeline = Set(asked.compactMap { node, result in (try? result.get()) == timeline.map(String.init) ? node.name : nil })
            var still: [NodeSpec] = []
            for standby in pending {
                guard streaming.contains(standby.name), timeline == nil || confirmed.contains(standby.name) || onTimeline.contains(standby.name)
                else {
                    still.append(standby)
                    continue
                }
                confirmed.insert(standby.name)
            }
            // Cancelled: the sleep below would return at once; the rest count as lagging.
            if Task.isCancelled { return still }
            if !still.isEmpty, let next = nudges.first, ContinuousClock.now >= next {
                nudges.removeFirst()
                await nudge(still)
            } else if still.count == pending.count {
                try? await Task.sleep(for: .milliseconds(20))
            }
            pending = still
        }
        return pending
    }

    /// When ``confirmStreaming(_:from:timeline:timeout:)`` nudges the standbys still not
    /// streaming: seconds from its start.
    static let nudgesAfter: [Double] = [0.15, 0.3, 0.6, 1.2, 2.4]

    /// Wakes the startup process of each standby whose WAL receiver does not stream. When a
    /// receiver's upstream ends the timeline before the receiver fetched the next one's
    /// history (it connected as the upstream was being promoted), or when it could not
    /// connect (its upstream was not up yet), the startup process sleeps out the rest of
    /// `wal_retrieve_retry_interval` (1 s; 5 s with compose) before it asks again (seen in
    /// about one failover in fifteen with eight standbys: one streamed after 0.96 s). A
    /// reload wakes it at once (PostgreSQL's startup process sets its recovery latch on
    /// SIGHUP), and it asks again with the history it lacked. Best effort, half a second at
    /// most (one that does not answer costs the wait that: 2.5 s over all five nudges): what
    /// fails is left to the standby's own next try.
    func nudge(_ standbys: [NodeSpec]) async {
        _ = await parallel(standbys) { node throws(ClusterError) in
            try await execute(
                node,
                ["SELECT pg_reload_conf() WHERE NOT EXISTS (SELECT FROM pg_stat_wal_receiver WHERE status = 'streaming')"],
                timeout: 0.5)
        }
    }

    /// The history of `node`'s timeline (its `pg_wal/0000000N.history`; none for timeline 1).
    public func timelineHistory(_ node: NodeSpec, timeline: Int) async throws(ClusterError) -> TimelineHistory {
        guard timeline > 1 else { return TimelineHistory(timeline: timeline, ancestors: []) }
        let file = String(format: "pg_wal/%08X.history", timeline)
        let text = try await execute(node, ["SELECT pg_read_file('\(file)')"]).scalar ?? ""
        return TimelineHistory.parse(text, timeline: timeline)
    }

    /// A checkpoint, so that a shutdown that follows has little to write.
    public func checkpoint(_ node: NodeSpec) async throws(ClusterError) {
        try await execute(node, ["CHECKPOINT"], timeout: 120)
    }
}

/// Times the steps of a command, for its report and the history.
public struct StepTimer: Sendable {
    public struct Step: Sendable, Codable, Equatable {
        public var name: String
        public var seconds: Double

        /// `  name ....   0.123 s`, for reports.
        public var line: String {
            "  " + name.padding(toLength: max(50, name.count), withPad: " ", startingAt: 0) + String(format: " %7.3f s", seconds)
        }
    }

    private let clock = ContinuousClock()
    private var last: ContinuousClock.Instant
    public let began: ContinuousClock.Instant
    public private(set) var steps: [Step] = []
    /// Whether each step is also printed as progress when it ends. Off where the report
    /// lists the steps anyway and the whole takes a moment (failover, switchover): the
    /// list would be printed twice.
    public var announce: Bool

    public init(announce: Bool = true) {
        self.announce = announce
        began = clock.now
        last = began
    }

    /// Ends the current step under `name`.
    public mutating func lap(_ name: String) {
        let now = clock.now
        steps.append(Step(name: name, seconds: (now - last).seconds))
        last = now
        if announce { Console.progress(steps.last!.line) }
    }

    public var total: Double { (clock.now - began).seconds }
}
