/// Carries out ``SynchronousSettlement/plan(spec:primary:following:remembered:alreadySet:down:)``
/// on the live primary.
extension SynchronousSettlement {
    /// Plans and, where it changed, sets it on the primary (ALTER SYSTEM + reload).
    public static func settle(
        spec: ClusterSpec, credentials: Credentials, primary: NodeSpec, following: [String],
        remembered: ClusterState.Synchronous, alreadySet: (mode: SynchronousMode, standbys: [String])?, down: [String]
    ) async throws(ClusterError) -> SynchronousSettlement {
        let settlement = plan(
            spec: spec, primary: primary.name, following: following, remembered: remembered, alreadySet: alreadySet,
            down: down)
        if settlement.changed {
            try await QuorumChange(
                credentials: credentials, primary: primary, mode: settlement.mode, standbys: settlement.standbys, intent: spec
            ).set()
        }
        return settlement
    }

    /// `rejoin` and `start`: the primary's synchronous names over the standbys that stream
    /// from it now, per the remembered mode; applied (waited for in pg_stat_replication) and
    /// recorded. With `onlyWhenChanged`, nothing is done when the primary has them already
    /// (`changed` false then).
    public static func relist(
        spec: ClusterSpec, credentials: Credentials, primary: NodeSpec, timeline: Int?, onlyWhenChanged: Bool
    ) async throws(ClusterError) -> SynchronousSettlement {
        let remembered = try await ClusterRecord.synchronous(spec: spec)
        let now = await Observer(credentials: credentials).observe(primary)
        let following = now.streamingStandbys
        let down = spec.nodes.map(\.name).filter { $0 != primary.name && !following.contains($0) }
        var settlement = plan(
            spec: spec, primary: primary.name, following: Array(following), remembered: remembered, alreadySet: nil, down: down)
        if onlyWhenChanged, settlement.mode.standbyNames(settlement.standbys) == now.synchronousStandbyNames {
            settlement.changed = false
            return settlement
        }
        try await QuorumChange(
            credentials: credentials, primary: primary, mode: settlement.mode, standbys: settlement.standbys, timeout: 30, intent: spec
        ).apply()
        try await ClusterRecord.savePrimary(
            spec: spec, primary: primary.name, applied: (settlement.mode, settlement.standbys), timeline: timeline)
        return settlement
    }
}
