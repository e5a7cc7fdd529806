/// Whether this watcher's spec and the cluster's recorded members agree on which nodes
/// exist and where they live. With `store.etcd` every watcher reads the same members (what
/// `init` and `apply` recorded); a watcher started from an older or newer copy of the spec
/// would otherwise watch another set of nodes without anyone noticing. A node in the spec
/// but not recorded waits for `apply`; one recorded but not in this spec is not watched by
/// this watcher: both are said, with the fix.
public enum Membership {
    /// One line saying how they differ, or nil when they agree (or nothing is recorded, as
    /// in states written before `apply` recorded members).
    public static func disagreement(spec nodes: [NodeSpec], recorded: [ClusterState.Member]?) -> String? {
        guard let recorded, !recorded.isEmpty else { return nil }
        let specByName = Dictionary(nodes.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let recordedNames = Set(recorded.map(\.name))
        var parts: [String] = []
        let missing = recorded.map(\.name).filter { specByName[$0] == nil }
        if !missing.isEmpty {
            parts.append("recorded but not in this spec (not watched here): \(missing.joined(separator: ", "))")
        }
        let unrecorded = nodes.map(\.name).filter { !recordedNames.contains($0) }
        if !unrecorded.isEmpty {
            parts.append("in this spec but not recorded (left alone until `pgcluster apply` adds them): \(unrecorded.joined(separator: ", "))")
        }
        let moved = recorded.compactMap { member -> String? in
            guard let node = specByName[member.name], node.host != member.host || node.port != member.port else { return nil }
            return "\(member.name) is \(member.host):\(member.port) on record, \(node.host):\(node.port) here"
        }
        if !moved.isEmpty { parts.append("elsewhere: " + moved.joined(separator: "; ")) }
        guard !parts.isEmpty else { return nil }
        return "this watcher's spec and the cluster's recorded members differ: " + parts.joined(separator: "; ")
            + ". Give every watcher the spec the cluster was last applied from"
    }
}
