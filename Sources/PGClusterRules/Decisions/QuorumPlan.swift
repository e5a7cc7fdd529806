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
