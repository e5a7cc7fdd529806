/// Updates to what pgcluster remembers in local.dir/state.json.
public enum ClusterRecord {
    /// Records the operator's chosen mode and what the primary was given.
    public static func saveSynchronous(
        spec: ClusterSpec, primary: String, mode: SynchronousMode, standbys: [String]?,
        applied: (mode: SynchronousMode, standbys: [String])
    ) throws(ClusterError) {
        try ClusterState(
            primary: primary, synchronous: .init(mode, standbys: standbys),
            applied: .init(applied.mode, standbys: applied.standbys), nodes: try members(spec: spec)
        ).save(to: LocalLayout(spec: spec).stateFile)
    }

    /// Records a new primary, keeping the operator's chosen mode.
    public static func savePrimary(
        spec: ClusterSpec, primary: String, applied: (mode: SynchronousMode, standbys: [String])
    ) throws(ClusterError) {
        try ClusterState(
            primary: primary, synchronous: try synchronous(spec: spec),
            applied: .init(applied.mode, standbys: applied.standbys), nodes: try members(spec: spec)
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

    /// The nodes recorded (kept by every writer), or the spec's when none were recorded yet.
    static func members(spec: ClusterSpec) throws(ClusterError) -> [ClusterState.Member] {
        try load(spec: spec)?.nodes ?? spec.nodes.map(ClusterState.Member.init)
    }

    /// Records the nodes the cluster has now (`apply`, after adding or removing one).
    public static func saveMembers(spec: ClusterSpec, primary: String, members: [ClusterState.Member]) throws(ClusterError) {
        var state = try load(spec: spec) ?? ClusterState(primary: primary, synchronous: .init(spec.replication.synchronous))
        state.nodes = members
        try state.save(to: LocalLayout(spec: spec).stateFile)
    }
}
