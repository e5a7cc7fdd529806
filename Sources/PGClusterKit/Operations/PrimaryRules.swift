/// The one rule for who is the primary, shared by failover, watch, start and rejoin
/// (docs/ARCHITECTURE.md, "Newest timeline wins"). Pure.
public enum PrimaryRules {
    /// Of nodes that answer as read-write primaries, the one whose data the cluster keeps:
    /// the newest timeline, then the highest WAL position, whatever the record says (a
    /// record can lag behind a promotion that happened, never the other way round). Nil
    /// when two are level on both: nothing on the servers tells them apart.
    public static func newest(_ primaries: [NodeObservation]) -> NodeObservation? {
        let ranked = primaries.sorted(by: ranksAbove)
        guard let first = ranked.first else { return nil }
        if ranked.count > 1, !ranksAbove(first, ranked[1]) { return nil }
        return first
    }

    /// Whether `a` holds newer data than `b`: a newer timeline, or on the same one a
    /// further WAL position.
    static func ranksAbove(_ a: NodeObservation, _ b: NodeObservation) -> Bool {
        let (ta, tb) = (a.timeline ?? 0, b.timeline ?? 0)
        if ta != tb { return ta > tb }
        return (a.bestLsn ?? LSN(0)) > (b.bestLsn ?? LSN(0))
    }

    /// A lone live primary that must not be adopted: another node that answers knows a
    /// newer timeline than it (a standby that followed a later promotion), so it is a
    /// deposed primary back from the dead, not the end of an unfinished failover.
    public static func isStale(_ live: NodeObservation, among observations: [NodeObservation]) -> Bool {
        let newest = observations.filter(\.reachable).compactMap(\.timeline).max() ?? 0
        return (live.timeline ?? 0) < newest
    }
}
