/// Updates to what pgcluster remembers in local.dir/state.json.
public enum ClusterRecord {
    /// Records the operator's chosen mode and what the primary was given. `paused` is kept;
    /// a mode lowered by `watch` is not: what was applied now is the truth.
    public static func saveSynchronous(
        spec: ClusterSpec, primary: String, mode: SynchronousMode, standbys: [String]?,
        applied: (mode: SynchronousMode, standbys: [String])
    ) throws(ClusterError) {
        try ClusterState(
            primary: primary, synchronous: .init(mode, standbys: standbys),
            applied: .init(applied.mode, standbys: applied.standbys), paused: try load(spec: spec)?.paused
        ).save(to: LocalLayout(spec: spec).stateFile)
    }

    /// Records a new primary, keeping the operator's chosen mode and `paused`. A mode lowered
    /// by `watch` is not kept: `applied` says what the new primary was given.
    public static func savePrimary(
        spec: ClusterSpec, primary: String, applied: (mode: SynchronousMode, standbys: [String])
    ) throws(ClusterError) {
        let previous = try load(spec: spec)
        try ClusterState(
            primary: primary, synchronous: previous?.synchronous ?? .init(spec.replication.synchronous),
            applied: .init(applied.mode, standbys: applied.standbys), paused: previous?.paused
        ).save(to: LocalLayout(spec: spec).stateFile)
    }

    /// `pause` / `resume`: whether `watch` may act. Needs a recorded state (after `init`).
    public static func savePaused(spec: ClusterSpec, _ paused: Bool) throws(ClusterError) {
        guard var state = try load(spec: spec) else {
            throw ClusterError(
                "nothing is recorded for cluster \(spec.name) in \(spec.local.dir)",
                details: ["create the cluster first: pgcluster init"])
        }
        state.paused = paused ? true : nil
        try state.save(to: LocalLayout(spec: spec).stateFile)
    }

    /// `watch` lowered the synchronous mode (`lowered` = what was applied before, the primary
    /// now has none) or restored it (`lowered` = nil, `applied` = what it has again).
    public static func saveLowered(
        spec: ClusterSpec, primary: String, applied: ClusterState.Synchronous, lowered: ClusterState.Synchronous?
    ) throws(ClusterError) {
        let previous = try load(spec: spec)
        try ClusterState(
            primary: primary, synchronous: previous?.synchronous ?? .init(spec.replication.synchronous), applied: applied,
            paused: previous?.paused, lowered: lowered
        ).save(to: LocalLayout(spec: spec).stateFile)
    }

    /// The remembered synchronous mode, or the spec's when none was recorded.
    public static func synchronous(spec: ClusterSpec) throws(ClusterError) -> ClusterState.Synchronous {
        try load(spec: spec)?.synchronous ?? .init(spec.replication.synchronous)
    }

    /// What pgcluster remembers, or nil before anything was recorded; an error when damaged.
    public static func load(spec: ClusterSpec) throws(ClusterError) -> ClusterState? {
        try ClusterState.load(LocalLayout(spec: spec).stateFile)
    }
}
