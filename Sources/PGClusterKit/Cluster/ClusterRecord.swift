/// Updates to what pgcluster remembers in local.dir/state.json.
public enum ClusterRecord {
    public static func saveSynchronous(spec: ClusterSpec, primary: String, mode: SynchronousMode, standbys: [String]?) throws(ClusterError) {
        let layout = LocalLayout(spec: spec)
        try ClusterState(primary: primary, synchronous: .init(mode, standbys: standbys)).save(to: layout.stateFile)
    }

    /// The remembered synchronous mode, or the spec's when none was recorded.
    public static func synchronous(spec: ClusterSpec) -> ClusterState.Synchronous {
        ClusterState.load(LocalLayout(spec: spec).stateFile)?.synchronous ?? .init(spec.replication.synchronous)
    }
}
