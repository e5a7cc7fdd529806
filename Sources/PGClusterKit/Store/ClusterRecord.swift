/// Updates to what pgcluster remembers about a cluster, in its store (``Stores/of(_:)``:
/// local.dir, or etcd). Each is one atomic change of the state.
public enum ClusterRecord {
    /// Records the operator's chosen mode and what the primary was given. `paused` is kept;
    /// a mode lowered by `watch` is not: what was applied now is the truth.
    public static func saveSynchronous(
        spec: ClusterSpec, primary: String, mode: SynchronousMode, standbys: [String]?,
        applied: (mode: SynchronousMode, standbys: [String])
    ) async throws(ClusterError) {
        let applied = ClusterState.Synchronous(applied.mode, standbys: applied.standbys)
        try await Stores.of(spec).updateState { previous in
            var state = ClusterState(primary: primary, synchronous: .init(mode, standbys: standbys), applied: applied)
            state.keep(from: previous)
            state.nodes = state.nodes ?? spec.nodes.map(ClusterState.Member.init)
            return state
        }
    }

    /// Records a new primary, keeping the operator's chosen mode and `paused`. A mode lowered
    /// by `watch` is not kept: `applied` says what the new primary was given.
    public static func savePrimary(
        spec: ClusterSpec, primary: String, applied: (mode: SynchronousMode, standbys: [String]), timeline: Int?
    ) async throws(ClusterError) {
        let applied = ClusterState.Synchronous(applied.mode, standbys: applied.standbys)
        let fallback = ClusterState.Synchronous(spec.replication.synchronous)
        try await Stores.of(spec).updateState { previous in
            var state = ClusterState(primary: primary, synchronous: previous?.synchronous ?? fallback, applied: applied)
            state.timeline = timeline
            state.keep(from: previous)
            state.nodes = state.nodes ?? spec.nodes.map(ClusterState.Member.init)
            return state
        }
    }

    /// Intent before action: records that `primary` is about to be given `synchronous`,
    /// before it is. Cleared by the next writer that records what the primary has.
    public static func savePending(
        spec: ClusterSpec, primary: String, synchronous: ClusterState.Synchronous, promotesTo: Int? = nil
    ) async throws(ClusterError) {
        let fallback = ClusterState.Synchronous(spec.replication.synchronous)
        try await Stores.of(spec).updateState { previous in
            var state = previous ?? ClusterState(primary: primary, synchronous: fallback, applied: fallback)
            state.pending = .init(primary: primary, synchronous: synchronous, promotesTo: promotesTo)
            return state
        }
    }

    /// A failover or switchover that stopped before it asked for its promotion takes its
    /// intent back (``savePending(spec:primary:synchronous:promotesTo:)``): the primary it
    /// left in place is the primary, not a deposed one. Only that intent; a newer one stays.
    public static func dropPending(spec: ClusterSpec, promoting: String, to timeline: Int?) async throws(ClusterError) {
        try await Stores.of(spec).updateState { previous throws(ClusterError) in
            guard var state = previous else { throw ClusterError("nothing is recorded for cluster \(spec.name)") }
            if state.pending?.primary == promoting, state.pending?.promotesTo == timeline { state.pending = nil }
            return state
        }
    }

    /// `pause` / `resume`: whether `watch` may act. Needs a recorded state (after `init`).
    public static func savePaused(spec: ClusterSpec, _ paused: Bool) async throws(ClusterError) {
        let store = Stores.of(spec)
        let label = store.label
        try await store.updateState { previous throws(ClusterError) in
            guard var state = previous else {
                throw ClusterError(
                    "nothing is recorded for cluster \(spec.name) in \(label)", details: ["create the cluster first: pgcluster init"])
            }
            state.paused = paused ? true : nil
            return state
        }
    }

    /// `watch` lowered the synchronous mode (`lowered` = what was applied before, the primary
    /// now has none) or restored it (`lowered` = nil, `applied` = what it has again).
    public static func saveLowered(
        spec: ClusterSpec, primary: String, applied: ClusterState.Synchronous, lowered: ClusterState.Synchronous?
    ) async throws(ClusterError) {
        let fallback = ClusterState.Synchronous(spec.replication.synchronous)
        try await Stores.of(spec).updateState { previous in
            var state = ClusterState(primary: primary, synchronous: previous?.synchronous ?? fallback, applied: applied)
            state.keep(from: previous)
            state.lowered = lowered
            return state
        }
    }

    /// The remembered synchronous mode, or the spec's when none was recorded.
    public static func synchronous(spec: ClusterSpec) async throws(ClusterError) -> ClusterState.Synchronous {
        try await load(spec: spec)?.synchronous ?? .init(spec.replication.synchronous)
    }

    /// What pgcluster remembers, or nil before anything was recorded; an error when damaged.
    public static func load(spec: ClusterSpec) async throws(ClusterError) -> ClusterState? {
        try await Stores.of(spec).loadState()
    }

    /// The nodes recorded (kept by every writer), or the spec's when none were recorded yet.
    static func members(spec: ClusterSpec) async throws(ClusterError) -> [ClusterState.Member] {
        try await load(spec: spec)?.nodes ?? spec.nodes.map(ClusterState.Member.init)
    }

    /// Records the nodes the cluster has now (`apply`, after adding or removing one).
    public static func saveMembers(spec: ClusterSpec, primary: String, members: [ClusterState.Member]) async throws(ClusterError) {
        let fallback = ClusterState.Synchronous(spec.replication.synchronous)
        try await Stores.of(spec).updateState { previous in
            var state = previous ?? ClusterState(primary: primary, synchronous: fallback)
            state.nodes = members
            return state
        }
    }
}

extension ClusterState {
    /// What every writer keeps from the state before it: the pause, and any fields it does
    /// not itself decide (a newer pgcluster's). A lowered mode is not kept: each writer says
    /// what the primary has now.
    mutating func keep(from previous: ClusterState?) {
        paused = previous?.paused
        nodes = previous?.nodes
        // The primary's timeline stays known while the primary stays the same.
        if timeline == nil, previous?.primary == primary { timeline = previous?.timeline }
    }
}
