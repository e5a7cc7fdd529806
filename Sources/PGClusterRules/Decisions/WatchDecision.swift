/// The watcher's next step as a pure function: from one tick's observations, the
/// postmaster each unreachable node has, the time, and the watcher's own memory, to ONE
/// action (README.md, "Automatic failover"; docs/ARCHITECTURE.md, "pgcluster watch"). Nothing here touches a server; every rule is tested by
/// tables in Tests/PGClusterKitTests/WatchDecisionTests.swift. ``Watcher`` carries the
/// action out through the same code as the commands.
public enum WatchDecision {
    /// Whether a postmaster runs for a node's data directory, as its host says.
    public enum Postmaster: String, Sendable, Equatable {
        case running
        /// Its host answers and no postmaster runs there: the server is proven down.
        case stopped
        /// Its host does not answer: nothing is proven.
        case unknown
    }

    public struct Node: Sendable, Equatable {
        public var observation: NodeObservation
        public var postmaster: Postmaster

        public init(_ observation: NodeObservation, postmaster: Postmaster) {
            self.observation = observation
            self.postmaster = postmaster
        }

        public var name: String { observation.node.name }
    }

    /// One tick: what was seen, and what pgcluster remembers.
    public struct Input: Sendable {
        public var nodes: [Node]
        /// The node pgcluster last made primary (state.json), or the spec's.
        public var recordedPrimary: String
        /// What the primary was last given (mode and listed standbys).
        public var applied: ClusterState.Synchronous
        /// What `watch` lowered (durability available), nil when nothing is lowered.
        public var lowered: ClusterState.Synchronous?
        /// A synchronous change recorded as pending and not confirmed: the guard proves the
        /// quorum under it too.
        public var pending: ClusterState.Pending?
        /// The timeline pgcluster recorded for `recordedPrimary`, if it did.
        public var recordedTimeline: Int?

        var record: PrimaryRules.Record { .init(primary: recordedPrimary, timeline: recordedTimeline, pending: pending) }
        public var paused: Bool
        /// Seconds on the watcher's monotonic clock, once the observations are in.
        public var now: Double
        /// When this tick's probes started: a primary that did not answer them has been
        /// silent since then at least. Nil: `now`.
        public var probedAt: Double?

        public init(
            nodes: [Node], recordedPrimary: String, applied: ClusterState.Synchronous, lowered: ClusterState.Synchronous? = nil,
            paused: Bool = false, now: Double, probedAt: Double? = nil, pending: ClusterState.Pending? = nil,
            recordedTimeline: Int? = nil
        ) {
            self.pending = pending
            self.recordedTimeline = recordedTimeline
            self.probedAt = probedAt
            self.nodes = nodes
            self.recordedPrimary = recordedPrimary
            self.applied = applied
            self.lowered = lowered
            self.paused = paused
            self.now = now
        }
    }

    /// What the watcher remembers between ticks.
    public struct Memory: Sendable, Equatable {
        /// Since when (watcher's clock) no primary has answered; nil while one does.
        public var primaryLostSince: Double?
        /// When the probe that last found the primary answering started: a primary is silent
        /// since then, not since the first probe that missed it (up to an interval later).
        public var primaryLastAnswered: Double?
        /// Nodes that must be rejoined before they serve again: the primaries this watcher
        /// failed over from, and standbys that could not follow.
        public var needsRejoin: Set<String> = []
        /// A node whose start or rejoin failed is left alone until then (watcher's clock).
        public var retryAfter: [String: Double] = [:]

        public init(primaryLostSince: Double? = nil, needsRejoin: Set<String> = [], retryAfter: [String: Double] = [:]) {
            self.primaryLostSince = primaryLostSince
            self.needsRejoin = needsRejoin
            self.retryAfter = retryAfter
        }
    }

    public indirect enum Action: Sendable, Equatable {
        /// All is well, or nothing may be done (said once when it changes).
        case nothing(String)
        /// A primary is lost but not yet for long enough, or standbys still reach it.
        case wait(String)
        /// Fail over (``Failover``); the reason is logged and recorded.
        case failover(String)
        /// A failover would break a rule: reported each interval, nothing done.
        case refuse(String)
        /// Kill the node's postmaster: it must not serve (a second primary, or a silent
        /// primary about to be failed over).
        case fence(String, why: String)
        /// pg_rewind the node into a standby of the live primary (``Rejoin``).
        case rejoin(String, why: String)
        /// Start a stopped standby (``StartNodes``: never a second primary).
        case start(String)
        /// durability available: empty synchronous_standby_names, record what it was.
        case lowerSynchronous(String)
        /// Put the lowered mode back.
        case restoreSynchronous(String)
        /// Paused: what would have been done.
        case paused(Action)

        /// Whether carrying it out changes the cluster (and so needs the lock).
        public var changes: Bool {
            switch self {
            case .nothing, .wait, .refuse, .paused: false
            default: true
            }
        }

        /// Whether, found due while a long step runs (a rejoin: pg_rewind, or the copy after
        /// a failed one, has no deadline), it stops that step: the primary's fate (failover,
        /// fence) and commits that would hang (lowering) cannot wait for a copy to end. A
        /// rewind is cheap to begin again; a lost primary is not.
        public var stopsLongStep: Bool {
            switch self {
            case .failover, .fence, .lowerSynchronous: true
            default: false
            }
        }
    }

    public static func next(_ input: Input, memory: inout Memory, settings: WatchSettings) -> Action {
        let action = decide(input, memory: &memory, settings: settings)
        return input.paused && action.changes ? .paused(action) : action
    }

    static func decide(_ input: Input, memory: inout Memory, settings: WatchSettings) -> Action {
        let primaries = input.nodes.filter(\.observation.isPrimary)
        if primaries.count > 1 {
            memory.primaryLostSince = nil
            return secondPrimary(primaries, all: input.nodes.map(\.observation), record: input.record)
        }
        if let live = primaries.first,
            PrimaryRules.isStale(live.observation, among: input.nodes.map(\.observation), record: input.record)
        {
            // A deposed primary back from the dead while the real one is gone: it must not
            // serve; once fenced, the failover rules choose among the standbys.
            return .fence(
                live.name,
                why: "it answers as a primary on timeline \(live.observation.timeline.map(String.init) ?? "?"), but other nodes "
                    + "know a newer one: a deposed primary, it must never serve")
        }
        if let live = primaries.first {
            memory.primaryLostSince = nil
            memory.primaryLastAnswered = input.probedAt ?? input.now
            return withLivePrimary(live, input, memory: memory, settings: settings)
        }
        return withoutPrimary(input, memory: &memory, settings: settings)
    }

    /// Two primaries: the one the rules keep (``PrimaryRules/kept(_:)``: the newest timeline,
    /// then the furthest WAL, whatever the record says) stays; the oldest other is fenced.
    /// When every one is deposed (another node knows a newer timeline: the real primary is
    /// silent), the oldest is fenced all the same. Level on both: refused.
    static func secondPrimary(_ primaries: [Node], all: [NodeObservation], record: PrimaryRules.Record) -> Action {
        let recorded = record.primary
        let list = primaries.map { "\($0.name) (timeline \($0.observation.timeline.map(String.init) ?? "?"))" }
            .joined(separator: ", ")
        let oldest = primaries.min { PrimaryRules.ranksAbove($1.observation, $0.observation) }!
        guard let keep = PrimaryRules.kept(all, record: record) else {
            if primaries.allSatisfy({ PrimaryRules.isStale($0.observation, among: all, record: record) }) {
                return .fence(
                    oldest.name, why: "\(list) answer as primaries, and other nodes (or pgcluster's record) know a newer timeline than any: deposed, "
                        + "they must never serve")
            }
            return .refuse(
                "\(list) answer as primaries on one timeline at one position: pgcluster cannot tell which one "
                    + "holds the data to keep. Stop the wrong one, then: pgcluster rejoin NODE --force")
        }
        let intruder = primaries.filter { $0.name != keep.node.name }
            .min { PrimaryRules.ranksAbove($1.observation, $0.observation) }!
        let recordNote = keep.node.name == recorded ? "" : " (the record said \(recorded): the newest timeline wins)"
        return .fence(intruder.name, why: "a second primary beside \(keep.node.name)\(recordNote): \(list); it must never serve")
    }

    static func withLivePrimary(_ live: Node, _ input: Input, memory: Memory, settings: WatchSettings) -> Action {
        let observations = input.nodes.map(\.observation)
        if let why = PrimaryRules.unfinished(
            live: live.observation, observations: observations, recordedPrimary: input.recordedPrimary)
        {
            return .failover("an interrupted failover to \(live.name): \(why)")
        }

        // Commits must not hang (available), and the mode comes back as soon as it can.
        let streaming = live.observation.streamingStandbys
        if settings.durability == .available {
            if let lowered = input.lowered {
                let members = (lowered.standbys ?? []).filter(streaming.contains)
                if members.count >= max(1, lowered.synchronousMode.count) {
                    return .restoreSynchronous(
                        "\(members.sorted().joined(separator: ", ")) \(members.count == 1 ? "streams" : "stream") again: "
                            + "restoring \(lowered.synchronousMode.standbyNames(lowered.standbys ?? []))")
                }
            } else if input.applied.synchronousMode != .async {
                let listed = input.applied.standbys ?? []
                let members = listed.filter(streaming.contains)
                if members.count < input.applied.synchronousMode.count {
                    return .lowerSynchronous(
                        "\(members.isEmpty ? "no" : "only \(members.count)") synchronous standby streams "
                            + "(\(input.applied.synchronousMode) over \(listed.joined(separator: ", "))): "
                            + "commits on \(live.name) would wait; durability: available lowers it until one does")
                }
            }
        }

        // Stopped nodes: a failed primary is rejoined (or left stopped), a standby started.
        for node in input.nodes where node.name != live.name && !node.observation.reachable && node.postmaster == .stopped {
            if let until = memory.retryAfter[node.name], until > input.now { continue }
            if memory.needsRejoin.contains(node.name) {
                if settings.rejoin == .auto {
                    return .rejoin(node.name, why: "it cannot serve as it is (a former primary, or it could not follow)")
                }
                continue
            }
            return .start(node.name)
        }
        let waiting = memory.needsRejoin.filter { name in
            input.nodes.contains { $0.name == name && !$0.observation.reachable }
        }
        if settings.rejoin == .manual, !waiting.isEmpty {
            let names = waiting.sorted()
            return .nothing(
                "\(names.joined(separator: ", ")) stays stopped (rejoin: manual): "
                    + names.map { "pgcluster rejoin \($0)" }.joined(separator: "; "))
        }
        return .nothing("\(live.name) is the primary")
    }

    static func withoutPrimary(_ input: Input, memory: inout Memory, settings: WatchSettings) -> Action {
        let old = input.nodes.first { $0.name == input.recordedPrimary }
        let name = input.recordedPrimary
        // Lost since it last answered, when the probe just before this one saw it; else (no
        // recent probe: the watcher was busy, or has just started) since this probe, so that
        // it always gets a full failoverAfter of probes.
        let probed = input.probedAt ?? input.now
        let recent = memory.primaryLastAnswered.flatMap { last in probed - last <= settings.interval * 2 ? last : nil }
        let since = memory.primaryLostSince ?? recent ?? probed
        memory.primaryLostSince = since
        let lost = input.now - since
        let asynchronous = input.applied.synchronousMode == .async || input.lowered != nil
        let sync = guardConfig(input)
        let observations = input.nodes.map(\.observation)

        func failover(_ why: String) -> Action {
            switch FailoverDecision.decide(
                observations: observations, sync: sync.sync, request: .init(), alsoPossible: sync.alsoPossible,
                recordedTimeline: input.recordedTimeline) {
            case .failure(let refusal): return .refuse(refusal.reason)
            case .success(let plan): return .failover("\(why); \(plan.candidate) is \(plan.reason)")
            }
        }

        // A node a failover was promoting, silent: it may be a primary nobody recorded. It
        // must be proven stopped (fenced) before anything else is promoted beside it.
        if let promoting = input.record.promoting, promoting != name,
            let node = input.nodes.first(where: { $0.name == promoting }), !node.observation.reachable
        {
            switch node.postmaster {
            case .running:
                return .fence(promoting, why: "a failover was promoting it and it does not answer: it may be a primary nobody recorded")
            case .unknown:
                return .refuse(
                    "a failover was promoting \(promoting), which cannot be asked (its host does not answer): it may be a primary "
                        + "nobody recorded, so nothing is promoted beside it. Bring its host back, or stop it there")
            case .stopped:
                break
            }
        }
        // Proven dead: its host answers and no postmaster runs. At once.
        if old?.postmaster == .stopped {
            return failover("\(name) is down: no postmaster runs for its data directory")
        }
        let how = old?.postmaster == .running ? "its postmaster runs but it does not answer" : "its host does not answer"
        let seconds = { (s: Double) in String(format: "%.1f", s) }
        if lost < settings.failoverAfter {
            return .wait("\(name) lost for \(seconds(lost)) s of \(seconds(settings.failoverAfter)) (\(how))")
        }
        // Only the watcher lost it? Then it is not lost.
        let still = input.nodes.filter { $0.observation.isStandby && $0.observation.streaming }.map(\.name)
        if !still.isEmpty {
            return .wait(
                "\(name) does not answer pgcluster, but \(still.joined(separator: ", ")) still "
                    + "\(still.count == 1 ? "streams" : "stream") from it: no failover while a standby reaches it")
        }
        if asynchronous, old?.postmaster != .running {
            return .refuse(
                "\(name) is lost, but replication is asynchronous\(input.lowered != nil ? " (lowered by durability: available)" : "") "
                    + "and \(name) cannot be proven stopped (its host does not answer): failing over could leave two primaries "
                    + "and lose commits. Stop it (or its host), or run: pgcluster failover")
        }
        if old?.postmaster == .running {
            // Its host answers: kill it first, so that it is proven down when the failover runs;
            // but not when the failover would be refused anyway.
            if case .failure(let refusal) = FailoverDecision.decide(
                observations: observations, sync: sync.sync, request: .init(), alsoPossible: sync.alsoPossible,
                recordedTimeline: input.recordedTimeline) {
                return .refuse(refusal.reason)
            }
            return .fence(name, why: "lost for \(seconds(lost)) s (\(how)), and no standby streams from it")
        }
        return failover("\(name) lost for \(seconds(lost)) s (\(how)), and no standby streams from it")
    }

    /// The configuration the quorum guard reasons on, as ``Failover`` does: what the dead
    /// primary was given, over every member but itself.
    static func guardConfig(_ input: Input) -> (sync: FailoverDecision.SyncConfig, alsoPossible: [FailoverDecision.SyncConfig]) {
        FailoverDecision.guardConfigs(
            applied: input.applied, pending: input.pending, nodes: input.nodes.map(\.name), deadPrimary: input.recordedPrimary)
    }
}

extension WatchDecision.Action {
    /// The event name logged for it.
    public var event: String {
        switch self {
        case .nothing: "ok"
        case .wait: "wait"
        case .failover: "failover"
        case .refuse: "refused"
        case .fence: "fence"
        case .rejoin: "rejoin"
        case .start: "start"
        case .lowerSynchronous: "lower-synchronous"
        case .restoreSynchronous: "restore-synchronous"
        case .paused: "paused"
        }
    }

    /// The node it concerns, if one.
    public var node: String? {
        switch self {
        case .fence(let name, _), .rejoin(let name, _), .start(let name): name
        case .paused(let action): action.node
        default: nil
        }
    }

    /// In words.
    public var details: String {
        switch self {
        case .nothing(let why), .wait(let why), .failover(let why), .refuse(let why), .lowerSynchronous(let why),
            .restoreSynchronous(let why):
            why
        case .fence(let name, let why): "fencing \(name): \(why)"
        case .rejoin(let name, let why): "rejoining \(name): \(why)"
        case .start(let name): "\(name) is stopped: starting it as a standby"
        case .paused(let action): "paused, would \(action.event): \(action.details) (pgcluster resume)"
        }
    }
}
