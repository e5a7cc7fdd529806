/// The one rule for who is the primary, shared by failover, watch, start and rejoin
/// (docs/ARCHITECTURE.md, "Newest timeline wins"). Pure.
public enum PrimaryRules {
    /// Of nodes that answer as read-write primaries, the one whose data the cluster keeps:
    /// the newest timeline, whatever the record says (a record can lag behind a promotion
    /// that happened, never the other way round). Two on the same timeline are two forks
    /// that happen to share its number (each promoted from the one before without knowing
    /// of the other): the recorded primary wins then, when the record names it on that
    /// timeline, else the higher WAL position. Nil when nothing tells them apart.
    public static func newest(_ primaries: [NodeObservation], record: Record? = nil) -> NodeObservation? {
        let top = primaries.compactMap(\.timeline).max()
        let onTop = primaries.filter { $0.timeline == top }
        if onTop.count > 1, let record, let recorded = onTop.first(where: { $0.node.name == record.primary }),
            record.timeline == nil || record.timeline == top
        {
            return recorded
        }
        let ranked = primaries.sorted(by: ranksAbove)
        guard let first = ranked.first else { return nil }
        if ranked.count > 1, !ranksAbove(first, ranked[1]) { return nil }
        return first
    }

    /// The read-write node the cluster keeps as its primary, among everything observed: of
    /// the primaries that are not stale (no node that answers knows a newer timeline than
    /// theirs), the ``newest(_:)``. Nil when none answers, when every one is stale (the real
    /// primary is silent), or when two are level.
    public static func kept(_ observations: [NodeObservation], record: Record? = nil) -> NodeObservation? {
        newest(observations.filter(\.isPrimary).filter { !isStale($0, among: observations, record: record) }, record: record)
    }

    /// What the store remembers of the primary: who pgcluster last made primary, and on
    /// which timeline. Evidence when the nodes that saw the newer timeline are all down.
    public struct Record: Sendable, Equatable {
        public var primary: String
        public var timeline: Int?
        /// A promotion recorded as intended and not confirmed (``ClusterState/Pending``).
        public var pending: ClusterState.Pending?

        public init(primary: String, timeline: Int?, pending: ClusterState.Pending? = nil) {
            self.primary = primary
            self.timeline = timeline
            self.pending = pending
        }

        public init(_ state: ClusterState) {
            self.init(primary: state.primary, timeline: state.timeline, pending: state.pending)
        }

        /// A node being promoted by a failover that has not confirmed it yet.
        public var promoting: String? { pending?.promotesTo == nil ? nil : pending?.primary }
    }

    /// Whether `a` holds newer data than `b`: a newer timeline, or on the same one a
    /// further WAL position.
    public static func ranksAbove(_ a: NodeObservation, _ b: NodeObservation) -> Bool {
        let (ta, tb) = (a.timeline ?? 0, b.timeline ?? 0)
        if ta != tb { return ta > tb }
        return (a.bestLsn ?? LSN(0)) > (b.bestLsn ?? LSN(0))
    }

    /// A lone live primary that must not be adopted: another node that answers knows a
    /// newer timeline than it (a standby that followed a later promotion), so it is a
    /// deposed primary back from the dead, not the end of an unfinished failover.
    /// The record counts too: a node that is not the recorded primary and is on an older
    /// timeline than the one pgcluster recorded is deposed, even when every node that knows
    /// the newer timeline is down.
    public static func isStale(_ live: NodeObservation, among observations: [NodeObservation], record: Record? = nil) -> Bool {
        var newest = observations.filter(\.reachable).compactMap(\.timeline).max() ?? 0
        if let record, record.primary != live.node.name, let timeline = record.timeline { newest = max(newest, timeline) }
        // A promotion intended (and maybe done) to a newer timeline makes an older primary
        // deposed, unless the node it was for answers as a standby on an older timeline: it
        // was not promoted (a promotion asked for finishes in milliseconds, also when the
        // command that asked died), and the intent was left by a command that stopped before
        // asking. The rules are applied under the cluster lock, so no command is promoting now.
        if let pending = record?.pending, pending.primary != live.node.name, let timeline = pending.promotesTo,
            !notPromoted(pending.primary, to: timeline, among: observations)
        {
            newest = max(newest, timeline)
        }
        return (live.timeline ?? 0) < newest
    }

    /// Whether `node` answers as a standby on a timeline older than `timeline`.
    public static func notPromoted(_ node: String, to timeline: Int, among observations: [NodeObservation]) -> Bool {
        guard let observation = observations.first(where: { $0.node.name == node }), observation.reachable,
            observation.inRecovery, let now = observation.timeline
        else { return false }
        return now < timeline
    }

    /// Why a live primary is the end of a failover that did not finish, or nil when it is
    /// simply the primary. Signs: a standby still frozen (only a failover empties
    /// primary_conninfo), or a primary other than the one pgcluster recorded.
    public static func unfinished(live: NodeObservation, observations: [NodeObservation], recordedPrimary: String?) -> String? {
        let frozen = observations.filter { $0.isStandby && $0.primaryConninfo.isEmpty }.map(\.node.name)
        if !frozen.isEmpty {
            return "\(frozen.joined(separator: ", ")) \(frozen.count == 1 ? "is" : "are") still frozen"
        }
        if let recordedPrimary, recordedPrimary != live.node.name {
            return "\(live.node.name) was promoted but the failover was not recorded (the last recorded primary is \(recordedPrimary))"
        }
        return nil
    }

    /// The one live primary, nil when none answers. Refused: two or more (a split brain that
    /// failover and start must not add to), or a lone primary that is stale (``isStale``).
    public static func livePrimary(_ observations: [NodeObservation], record: Record? = nil) throws(ClusterError)
        -> NodeObservation?
    {
        let primaries = observations.filter(\.isPrimary)
        if primaries.count == 1, isStale(primaries[0], among: observations, record: record) {
            let live = primaries[0]
            throw ClusterError.refused(
                "\(live.node.name) answers as a primary on timeline \(live.timeline.map(String.init) ?? "?"), but other nodes "
                    + "(or pgcluster's record) know a newer timeline: it is a deposed primary, and its writes since then are not the cluster's. "
                    + "Stop it (pgcluster stop \(live.node.name)), then run failover again; bring it back with: "
                    + "pgcluster rejoin \(live.node.name)")
        }
        guard primaries.count > 1 else { return primaries.first }
        let ordered = primaries.sorted(by: ranksAbove)
        let list = ordered.map { "\($0.node.name) (timeline \($0.timeline.map(String.init) ?? "?"))" }.joined(separator: ", ")
        throw ClusterError.refused(
            "\(primaries.count) nodes answer as primaries: \(list). pgcluster adds no third and attaches no standby to either; "
                + "decide which one holds the data you keep (normally the newest timeline, \(ordered[0].node.name)), "
                + "then make the other a standby of it: pgcluster rejoin \(ordered[1].node.name) --force")
    }

    /// A node that answers as a primary is rejoined only when another primary exists and the
    /// operator accepts (`--force`) that its writes since the two parted are discarded. Returns
    /// the warning to give when it goes ahead forced.
    public static func refuseRejoin(_ node: NodeSpec, observations: [NodeObservation], force: Bool) throws(ClusterError) -> String? {
        guard let own = observations.first(where: { $0.node.name == node.name }), own.isPrimary else { return nil }
        let others = observations.filter { $0.isPrimary && $0.node.name != node.name }
        guard let other = others.first else {
            throw ClusterError.refused(
                "\(node.name) is the primary, and no other node is: there is nothing to rejoin it to. "
                    + "To move the primary elsewhere use `pgcluster switchover`")
        }
        guard force else {
            let tl = { (o: NodeObservation) in o.timeline.map { "timeline \($0)" } ?? "timeline ?" }
            throw ClusterError(
                "\(node.name) accepts writes as a primary (\(tl(own))) while \(other.node.name) is a primary too (\(tl(other))): "
                    + "rejoining rewinds \(node.name) onto \(other.node.name) and discards every write it took since they parted",
                exitCode: .refused,
                details: [
                    "check which one holds the data you keep (pgcluster status; the newest timeline is normally the real primary)",
                    "stop the applications that write to \(node.name), then: pgcluster rejoin \(node.name) --force",
                ])
        }
        return "\(node.name) is a primary beside \(other.node.name); rejoining it anyway (--force): its writes since they parted are discarded"
    }

    /// A switchover's candidate: the named one, or the streaming standby with the most WAL
    /// replayed (ties: priority, then name); priority 0 never unless named. Pure.
    public static func switchoverCandidate(
        primary: NodeObservation, standbys: [NodeObservation], named: String?
    ) throws(ClusterError) -> NodeObservation {
        let streaming = primary.streamingStandbys
        if let named {
            guard named != primary.node.name else {
                throw ClusterError("--candidate \(named) is the primary already: name a standby", exitCode: .refused)
            }
            guard let node = standbys.first(where: { $0.node.name == named }) else {
                throw ClusterError("--candidate \(named) is not a standby that answers", exitCode: .refused)
            }
            guard streaming.contains(named) else {
                throw ClusterError.refused("--candidate \(named) does not stream from \(primary.node.name): it could not receive everything")
            }
            return node
        }
        let eligible = standbys.filter { streaming.contains($0.node.name) && $0.node.priority > 0 }
        guard
            let best = eligible.max(by: { a, b in
                let (la, lb) = (a.replayLsn ?? LSN(0), b.replayLsn ?? LSN(0))
                if la != lb { return la < lb }
                if a.node.priority != b.node.priority { return a.node.priority < b.node.priority }
                return a.node.name > b.node.name
            })
        else {
            throw ClusterError.refused("no standby streams from \(primary.node.name) with a priority above 0: nothing to switch over to")
        }
        return best
    }

    /// Whether a switchover may point the other standbys at its candidate before it stops the
    /// old primary. They then stream through the candidate (cascading), follow it onto its new
    /// timeline by themselves when it is promoted, and acknowledge its first commits with
    /// nothing left to re-point. Only when the old primary's commits are still acknowledged
    /// while the candidate alone streams from it: no synchronous standby, or one of a list
    /// that has the candidate on it (`listed` nil: every standby). Otherwise writes would
    /// wait on the old primary until its stop. Pure.
    public static func cascadeBeforeStop(mode: SynchronousMode, listed: [String]?, candidate: String) -> Bool {
        switch mode.count {
        case 0: true
        case 1: listed?.contains(candidate) ?? true
        default: false
        }
    }
}

/// How `rejoin` brings a node back, as its report says.
public enum RejoinMethod: String, Sendable, Equatable {
    case rewind = "pg_rewind"
    case nothingToRewind = "no rewind needed"
    case clone = "pg_basebackup"
    case cloneAfterFailedRewind = "pg_basebackup (pg_rewind failed)"
    case cloneAfterUnfinishedRewind = "pg_basebackup (an earlier pg_rewind did not finish)"
    case cloneAfterUnfinishedClone = "pg_basebackup (an earlier copy did not finish)"

    /// Whether the node's data is copied afresh.
    public var clones: Bool { self != .rewind && self != .nothingToRewind }
}
