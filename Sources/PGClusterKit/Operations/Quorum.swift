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

    /// Sets it (ALTER SYSTEM) and reloads, without waiting for the standbys. The change is
    /// recorded as pending first: if pgcluster dies, or the wait that follows fails, the
    /// failover guard still reasons on it until a writer records what the primary has.
    public func set() async throws(ClusterError) {
        try await HeldLocks.verify(before: "setting synchronous_standby_names on \(primary.name)")
        if let intent {
            try await ClusterRecord.savePending(spec: intent, primary: primary.name, synchronous: .init(mode, standbys: standbys))
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
        while ContinuousClock.now < deadline {
            last = await observer.observe(primary)
            if last.reachable, last.synchronousStandbyNames == value {
                let streaming = last.replication.filter { $0.state == "streaming" }
                let expected = Self.expectedSyncStates(mode: mode, listed: standbys, streaming: streaming.map(\.applicationName))
                if streaming.allSatisfy({ expected[$0.applicationName] == $0.syncState }) { return last.replication }
            }
            try? await Task.sleep(for: .milliseconds(50))
        }
        let seen = last.replication.map { "\($0.applicationName)=\($0.syncState)" }.joined(separator: ", ")
        throw ClusterError(
            "\(primary.name): synchronous_standby_names = '\(value)' did not take effect within \(Int(timeout)) s",
            details: ["pg_stat_replication shows: \(seen.isEmpty ? "no standbys" : seen)", last.error.map { "error: \($0)" } ?? ""]
                .filter { !$0.isEmpty })
    }
}

/// The live primary among observations, or why there is none to use.
public enum PrimaryLookup {
    public static func find(_ observations: [NodeObservation]) throws(ClusterError) -> NodeObservation {
        let primaries = observations.filter(\.isPrimary)
        if primaries.count == 1 { return primaries[0] }
        if primaries.isEmpty {
            let down = observations.filter { !$0.reachable }.map(\.node.name)
            throw ClusterError(
                "no primary answers" + (down.isEmpty ? "" : " (down: \(down.joined(separator: ", ")))"),
                details: ["if the primary is gone, promote a standby with: pgcluster failover"])
        }
        throw ClusterError(
            "more than one node is a primary: \(primaries.map(\.node.name).joined(separator: ", "))",
            details: ["stop the one that should not be, then bring it back with: pgcluster rejoin NODE"])
    }
}

/// `pgcluster quorum`: choose whom the primary waits for, check it is safe, apply it.
public struct QuorumPlan: Sendable, Equatable {
    public var primary: String
    public var mode: SynchronousMode
    /// Listed standbys, highest failover priority first (the order FIRST k uses).
    public var standbys: [String]
    /// Listed standbys that stream right now.
    public var streaming: [String]
    /// Standbys left out because they do not answer.
    public var leftOut: [String]

    /// Decides the standby list and refuses what cannot work. Pure.
    /// - Parameters:
    ///   - requested: `--standbys`, or nil for every standby that answers.
    ///   - force: accept fewer streaming standbys than the mode needs (commits wait meanwhile).
    public static func make(
        spec: ClusterSpec, observations: [NodeObservation], mode: SynchronousMode, requested: [String]?, force: Bool
    ) throws(ClusterError) -> QuorumPlan {
        let primary = try PrimaryLookup.find(observations)
        let others = observations.filter { $0.node.name != primary.node.name }
        let ordered = others.sorted { ($0.node.priority, $1.node.name) > ($1.node.priority, $0.node.name) }
        var listed: [NodeObservation]
        var leftOut: [String] = []
        if let requested {
            listed = []
            for name in requested {
                guard let observation = others.first(where: { $0.node.name == name }) else {
                    let reason = name == primary.node.name ? "is the primary" : "is not a node of \(spec.file)"
                    throw ClusterError("--standbys: '\(name)' \(reason)", exitCode: .usage)
                }
                if !listed.contains(where: { $0.node.name == name }) { listed.append(observation) }
            }
        } else {
            listed = ordered.filter(\.isStandby)
            leftOut = ordered.filter { !$0.isStandby }.map(\.node.name)
        }
        let streamingNames = primary.streamingStandbys
        let streaming = listed.map(\.node.name).filter(streamingNames.contains)
        if mode != .async {
            if mode.count > listed.count {
                var refusal = ClusterError.refused(
                    "\(mode) needs at least \(mode.count) standbys to list, but only \(listed.count) can be listed"
                        + (listed.isEmpty ? "" : " (\(listed.map(\.node.name).joined(separator: ", ")))")
                        + (leftOut.isEmpty ? "" : "; not answering: \(leftOut.joined(separator: ", "))"))
                // Standbys that are down are listed only when named: say how, when that is enough.
                let all = ordered.map(\.node.name)
                if !leftOut.isEmpty && mode.count <= all.count {
                    refusal.details.append(
                        "to list the ones that do not answer too, name them: --standbys \(all.joined(separator: ",")) --force "
                            + "(every commit on \(primary.node.name) then WAITS until \(mode.count) of them stream)")
                }
                throw refusal
            }
            if streaming.count < mode.count && !force {
                throw ClusterError.refused(
                    "only \(streaming.count) of the listed standbys stream right now (\(streaming.isEmpty ? "none" : streaming.joined(separator: ", "))), "
                        + "but \(mode) needs \(mode.count): every commit on \(primary.node.name) would WAIT until more stream. "
                        + "Add --force to set it anyway")
            }
        }
        return QuorumPlan(
            primary: primary.node.name, mode: mode, standbys: listed.map(\.node.name), streaming: streaming,
            leftOut: leftOut)
    }
}
