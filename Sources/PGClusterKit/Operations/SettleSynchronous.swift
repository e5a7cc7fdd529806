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
}
