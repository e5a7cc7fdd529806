import Foundation

/// Sets `synchronous_standby_names` on a live primary and waits until
/// pg_stat_replication shows the mode took effect.
public struct QuorumChange: Sendable {
    public var credentials: Credentials
    public var primary: NodeSpec
    public var mode: SynchronousMode
    /// The standbys listed, in priority order for FIRST.
    public var standbys: [String]
    public var timeout: Double
    /// The cluster whose store records the change as pending before the primary sees it
    /// (intent before action); nil only where nothing is recorded yet (a node being built).
    public var intent: ClusterSpec?
    /// With a failover or switchover: the timeline `primary` is about to be promoted to,
    /// recorded with the intent (the promotion is part of it).
    public var promotesTo: Int?

    public init(
        credentials: Credentials, primary: NodeSpec, mode: SynchronousMode, standbys: [String], timeout: Double = 30,
        intent: ClusterSpec?
    ) {
        self.intent = intent
        self.credentials = credentials
        self.primary = primary
        self.mode = mode
        self.standbys = standbys
        self.timeout = timeout
    }

    public var value: String { mode.standbyNames(standbys) }

    /// The sync_state each streaming standby should show under `mode` over `listed`.
    /// With FIRST k the first k streaming standbys of the list are `sync`, the other
    /// listed ones `potential`; with ANY k every listed one is `quorum`; the rest `async`.
    public static func expectedSyncStates(mode: SynchronousMode, listed: [String], streaming: [String]) -> [String: String] {
        var states: [String: String] = [:]
        for name in streaming { states[name] = "async" }
        switch mode {
        case .async:
            break
        case .any:
            for name in listed where states[name] != nil { states[name] = "quorum" }
        case .first(let k):
            let present = listed.filter { states[$0] != nil }
            for (i, name) in present.enumerated() { states[name] = i < k ? "sync" : "potential" }
        }
        if listed.isEmpty { for name in streaming { states[name] = "async" } }
        return states
    }

    /// Whether enough listed standbys (the mode's count) have flushed `lsn`: then every
    /// commit acknowledged before the change is on the new set too. Pure.
    public static func caughtUp(mode: SynchronousMode, listed: [String], rows: [NodeObservation.ReplicationRow], to lsn: LSN?)
        -> Bool
    {
        guard mode != .async, !listed.isEmpty, let lsn else { return true }
        let holding = rows.filter { listed.contains($0.applicationName) && ($0.flushLsn ?? LSN(0)) >= lsn }
        return holding.count >= min(mode.count, listed.count)
    }

    /// Sets it (ALTER SYSTEM) and reloads, without waiting for the standbys. The change is
    /// recorded as pending first: if pgcluster dies, or the wait that follows fails, the
    /// failover guard still reasons on it until a writer records what the primary has.
    public func set() async throws(ClusterError) {
        // With an intent, its write asks the store whether the lock is still ours (it is
        // fenced by the epoch): one request, not a read and then the write.
        let step = "setting synchronous_standby_names on \(primary.name)"
        if let intent {
            try await HeldLocks.verify(before: step) { () async throws(ClusterError) in
                try await ClusterRecord.savePending(
                    spec: intent, primary: primary.name, synchronous: .init(mode, standbys: standbys), promotesTo: promotesTo)
            }
        } else {
            try await HeldLocks.verify(before: step)
        }
        let target = Observer(credentials: credentials).target(primary, connectTimeout: 5)
        do {
            try await ServerOps.execute(
                [
                    "ALTER SYSTEM SET synchronous_standby_names = \(ConfigText.sqlLiteral(value))",
                    "ALTER SYSTEM SET synchronous_commit = 'on'",
                    "SELECT pg_reload_conf()",
                ], on: target, name: primary.name)
        } catch {
            throw ClusterError("cannot set synchronous_standby_names: \(error.message)")
        }
    }

    /// Sets it and waits for pg_stat_replication to agree; returns the rows seen last.
    @discardableResult
    public func apply() async throws(ClusterError) -> [NodeObservation.ReplicationRow] {
        try await set()
        do {
            return try await waitUntilApplied()
        } catch {
            var error = error
            if intent != nil {
                error.details.append(
                    "the new setting is recorded as pending: until a quorum command succeeds, failover must prove the quorum "
                        + "under both the previous setting and this one")
            }
            throw error
        }
    }

    func waitUntilApplied() async throws(ClusterError) -> [NodeObservation.ReplicationRow] {
        let observer = Observer(credentials: credentials)
        let deadline = ContinuousClock.now + .seconds(timeout)
        var last = NodeObservation(node: primary)
        // Commits acknowledged before the change are on enough of the OLD set; the new one
        // counts for the failover guard only once enough of its members hold everything
        // written up to the change (until then the change stays pending, and the guard
        // proves the quorum under both).
        var switchLsn: LSN?
        while ContinuousClock.now < deadline {
            last = await observer.observe(primary)
            if last.reachable, last.synchronousStandbyNames == value {
                if switchLsn == nil { switchLsn = last.currentLsn }
                let streaming = last.replication.filter { $0.state == "streaming" }
                let expected = Self.expectedSyncStates(mode: mode, listed: standbys, streaming: streaming.map(\.applicationName))
                if streaming.allSatisfy({ expected[$0.applicationName] == $0.syncState }),
                    Self.caughtUp(mode: mode, listed: standbys, rows: streaming, to: switchLsn)
                {
                    return last.replication
                }
            }
            try Cancelled.check(before: "confirming synchronous_standby_names = '\(value)' on \(primary.name)")
            try? await Task.sleep(for: .milliseconds(50))
        }
        let seen = last.replication.map { "\($0.applicationName)=\($0.syncState)" }.joined(separator: ", ")
        throw ClusterError(
            "\(primary.name): synchronous_standby_names = '\(value)' did not take effect within \(Int(timeout)) s",
            details: ["pg_stat_replication shows: \(seen.isEmpty ? "no standbys" : seen)", last.error.map { "error: \($0)" } ?? ""]
                .filter { !$0.isEmpty })
    }
}
