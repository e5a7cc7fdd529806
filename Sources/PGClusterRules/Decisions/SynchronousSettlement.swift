/// The synchronous names a primary keeps after a failover, switchover or rejoin: the
/// remembered mode over the standbys that follow it, and never one that does not (every
/// commit would hang on it). When fewer follow than the mode needs, the count is lowered
/// so commits go through, and `problems` says what blocks and the command that fixes it:
/// the command then exits 1, since the cluster cannot commit under its mode.
public struct SynchronousSettlement: Sendable, Equatable {
    public var mode: SynchronousMode
    public var standbys: [String]
    /// Whether synchronous_standby_names had to be set (it differed from what was set before).
    public var changed: Bool
    public var warnings: [String]
    public var problems: [String]

    /// Pure: what to keep, given who follows.
    public static func plan(
        spec: ClusterSpec, primary: String, following: [String], remembered: ClusterState.Synchronous,
        alreadySet: (mode: SynchronousMode, standbys: [String])?, down: [String]
    ) -> SynchronousSettlement {
        let members = (remembered.standbys ?? spec.nodes.map(\.name)).filter { $0 != primary }
        let byPriority = spec.nodes.filter { members.contains($0.name) }
            .sorted { ($0.priority, $1.name) > ($1.priority, $0.name) }.map(\.name)
        let ordered = byPriority.filter(following.contains)
        let final = FailoverDecision.newSynchronous(
            mode: remembered.synchronousMode, remaining: ordered, durability: spec.watch.durability,
            others: byPriority.isEmpty ? spec.nodes.map(\.name).filter { $0 != primary } : byPriority)
        let changed = alreadySet.map { $0.mode != final.mode || $0.standbys != final.standbys } ?? true
        var problems: [String] = []
        let wanted = remembered.synchronousMode
        let kept = final.mode == wanted && final.standbys.count >= wanted.count
        if wanted != .async && kept && ordered.count < wanted.count {
            let missing = final.standbys.filter { !ordered.contains($0) }
            problems.append(
                "commits on \(primary) WAIT: durability strict keeps \(wanted) over \(final.standbys.joined(separator: ", ")), "
                    + "and only \(ordered.count) of them \(ordered.count == 1 ? "follows" : "follow"). "
                    + "Bring them back: " + missing.map { "pgcluster rejoin \($0)" }.joined(separator: "; ")
                    + " (or accept fewer copies: durability available)")
        } else if wanted != .async && wanted.count > final.standbys.count {
            let missing = Array(Set(down)).sorted().filter { $0 != primary }
            let who = final.standbys.isEmpty
                ? "none does" : "only " + final.standbys.joined(separator: ", ") + (final.standbys.count == 1 ? " does" : " do")
            problems.append(
                "\(primary) cannot commit under \(wanted): it needs \(wanted.count) standby(s) following, and \(who)"
                    + "; synchronous_standby_names is '\(final.mode.standbyNames(final.standbys))' until more follow. "
                    + (missing.isEmpty
                        ? "Add a standby to the cluster"
                        : "Bring them back: " + missing.map { "pgcluster rejoin \($0)" }.joined(separator: "; ")))
        }
        return SynchronousSettlement(
            mode: final.mode, standbys: final.standbys, changed: changed,
            warnings: problems.isEmpty ? final.warning.map { [$0] } ?? [] : [],
            problems: problems)
    }
}
