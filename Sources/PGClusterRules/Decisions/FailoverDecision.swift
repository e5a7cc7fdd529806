/// The failover choice as a pure function: from what the nodes said to a plan, or to
/// a refusal with its reason. Nothing here talks to a server, so every rule is tested
/// by tables (Tests/PGClusterKitTests/FailoverDecisionTests.swift).
public enum FailoverDecision {
    /// The synchronous configuration the dead primary had: its mode and the standbys it listed.
    public struct SyncConfig: Sendable, Equatable {
        public var mode: SynchronousMode
        public var standbys: [String]

        public init(mode: SynchronousMode, standbys: [String]) {
            self.mode = mode
            self.standbys = standbys
        }
    }

    public struct Request: Sendable, Equatable {
        public var candidate: String?
        public var allowDataLoss: Bool

        public init(candidate: String? = nil, allowDataLoss: Bool = false) {
            self.candidate = candidate
            self.allowDataLoss = allowDataLoss
        }
    }

    public struct Plan: Sendable, Equatable {
        public var candidate: String
        /// The candidate's furthest WAL (received or replayed).
        public var candidateLsn: LSN
        /// The furthest WAL any reachable standby has.
        public var freshestLsn: LSN
        public var timeline: Int?
        /// Why this candidate, in words.
        public var reason: String
        /// Reachable standbys to re-point at the candidate.
        public var rePoint: [String]
        /// Standbys on an older timeline: never the candidate; re-pointed all the same, and
        /// reported as needing `pgcluster rejoin` if they cannot follow.
        public var otherTimeline: [String]
        /// Nodes that did not answer.
        public var unreachable: [String]
        /// Standbys with more WAL than a candidate promoted with --allow-data-loss: their
        /// timeline goes past the fork, so they cannot follow it and are not re-pointed;
        /// each needs `pgcluster rejoin` (a rewind).
        public var ahead: [String]
        /// Risks accepted or worth saying (async mode, --allow-data-loss).
        public var warnings: [String]

        public init(
            candidate: String, candidateLsn: LSN, freshestLsn: LSN, timeline: Int?, reason: String, rePoint: [String],
            otherTimeline: [String], unreachable: [String], warnings: [String], ahead: [String] = []
        ) {
            self.ahead = ahead
            self.candidate = candidate
            self.candidateLsn = candidateLsn
            self.freshestLsn = freshestLsn
            self.timeline = timeline
            self.reason = reason
            self.rePoint = rePoint
            self.otherTimeline = otherTimeline
            self.unreachable = unreachable
            self.warnings = warnings
        }
    }

    public struct Refusal: Error, Sendable, Equatable, CustomStringConvertible {
        public var reason: String
        public var exitCode: ExitKind
        public var description: String { reason }
    }

    /// - Parameters:
    ///   - sync: what the dead primary was last recorded to have.
    ///   - alsoPossible: settings it may have had instead: a change recorded as pending and
    ///     never confirmed (intent before action). The quorum must be provable under each.
    ///   - recordedTimeline: the timeline pgcluster recorded the dead primary on: standbys on
    ///     an older one missed its promotion, and are no candidates.
    public static func decide(
        observations: [NodeObservation], sync: SyncConfig, request: Request, alsoPossible: [SyncConfig] = [],
        recordedTimeline: Int? = nil
    ) -> Result<Plan, Refusal> {
        func refuse(_ reason: String, _ code: ExitKind = .refused) -> Result<Plan, Refusal> {
            .failure(Refusal(reason: reason, exitCode: code))
        }

        // 1. A live primary: nothing to fail over from.
        if let live = observations.first(where: \.isPrimary) {
            return refuse(
                "\(live.node.name) answers as a primary: refusing to fail over from a live primary. "
                    + "For a planned change use `pgcluster switchover`")
        }
        let standbys = observations.filter(\.isStandby)
        let unreachable = observations.filter { !$0.reachable }.map(\.node.name)
        guard !standbys.isEmpty else {
            return refuse("no standby answers (down: \(unreachable.joined(separator: ", "))): nothing can be promoted", .failure)
        }

        // 2. Quorum guard: with ANY/FIRST k over S, every acknowledged commit is on at least
        //    k members of S; with |S| - k + 1 of them reachable, one of those is among them.
        //    Under every setting the primary may have had (a pending change included).
        var warnings: [String] = []
        let reachable = Set(standbys.map(\.node.name))
        var configs = [sync]
        for other in alsoPossible where !configs.contains(other) { configs.append(other) }
        for (index, config) in configs.enumerated() {
            let members = config.standbys
            guard config.mode != .async && !members.isEmpty else { continue }
            let k = min(config.mode.count, members.count)
            let needed = members.count - k + 1
            let present = members.filter(reachable.contains)
            if present.count < needed {
                let missing = members.filter { !reachable.contains($0) }
                let text = "quorum cannot be proven: synchronous_standby_names "
                    + (index == 0 ? "was" : "may have been (a change recorded as pending, never confirmed)")
                    + " \(config.mode) over \(members.joined(separator: ", ")), so \(needed) of them must answer to be "
                    + "sure the freshest is among them, but only \(present.count) do; unreachable: \(missing.joined(separator: ", "))"
                if !request.allowDataLoss {
                    return refuse(text + ". Bring them back, or accept losing acknowledged commits with --allow-data-loss")
                }
                warnings.append(text + " (accepted with --allow-data-loss)")
            }
        }
        if configs.allSatisfy({ $0.mode == .async || $0.standbys.isEmpty }) {
            warnings.append(
                "replication was asynchronous: commits acknowledged after the freshest standby's position may be lost")
        }

        // 3. Timelines: only standbys on the newest timeline can be compared and promoted; the
        //    newest includes the one the dead primary was recorded on. A standby behind it
        //    missed that promotion: promoting it would drop that timeline's commits and fork
        //    the history anew under a timeline number that may already be taken.
        var newest = standbys.compactMap(\.timeline).max()
        if let recordedTimeline, let seen = newest, recordedTimeline > seen {
            let text = "every standby that answers is on timeline \(seen) or older, but the primary was on timeline "
                + "\(recordedTimeline): they missed its promotion, and promoting one would drop what was written since"
            if !request.allowDataLoss {
                return refuse(text + ". Bring back a node that followed it, or accept the loss with --allow-data-loss")
            }
            warnings.append(text + " (accepted with --allow-data-loss)")
        } else if let recordedTimeline, newest == nil {
            newest = recordedTimeline
        }
        let current = standbys.filter { newest == nil || $0.timeline == newest }
        let behindTimeline = standbys.filter { newest != nil && $0.timeline != newest }.map(\.node.name)

        // 4. The freshest position any of them has; the candidate must have it.
        func lsn(_ o: NodeObservation) -> LSN { o.bestLsn ?? LSN(0) }
        let freshest = current.map(lsn).max() ?? LSN(0)
        // A standby that replays on purpose behind (recovery_min_apply_delay) is a safety
        // net against mistakes, not a candidate; it is promoted only when named.
        let eligible = current.filter { $0.node.priority > 0 && $0.applyDelayMs == 0 }
        let ranked = eligible.sorted { a, b in
            if lsn(a) != lsn(b) { return lsn(a) > lsn(b) }
            if a.node.priority != b.node.priority { return a.node.priority > b.node.priority }
            return a.node.name < b.node.name
        }

        let chosen: NodeObservation
        var reason: String
        if let name = request.candidate {
            guard let named = observations.first(where: { $0.node.name == name }) else {
                let known = observations.map(\.node.name).joined(separator: ", ")
                return refuse("--candidate \(name): no such node (nodes: \(known))", .usage)
            }
            guard named.isStandby else {
                return refuse("--candidate \(name) does not answer as a standby (\(named.error ?? "not in recovery"))")
            }
            guard named.node.priority > 0 else {
                return refuse("--candidate \(name) has priority 0: it is never promoted", .usage)
            }
            if behindTimeline.contains(name) {
                return refuse("--candidate \(name) is on timeline \(named.timeline ?? 0), older than \(newest ?? 0): it missed a promotion")
            }
            chosen = named
            reason = "named with --candidate"
        } else {
            guard let best = ranked.first else {
                return refuse(
                    "no standby may be promoted: every reachable one has priority 0, replays with a delay "
                        + "(recovery_min_apply_delay), or is on an older timeline; name one with --candidate")
            }
            chosen = best
            let ties = ranked.filter { lsn($0) == lsn(best) }
            reason = ties.count == 1
                ? "the freshest standby (\(lsn(best)))"
                : "freshest (\(lsn(best))), tied with \(ties.dropFirst().map(\.node.name).joined(separator: ", ")); "
                    + (ties[1].node.priority != best.node.priority ? "higher priority (\(best.node.priority))" : "first by name")
        }
        if lsn(chosen) < freshest {
            let ahead = current.filter { lsn($0) == freshest }.map(\.node.name).joined(separator: ", ")
            var text = "\(chosen.node.name) is behind: it has \(lsn(chosen)), but \(ahead) has \(freshest) "
                + "(\(freshest.bytes(after: lsn(chosen))) bytes more)"
            let delayed = current.filter { lsn($0) == freshest && $0.applyDelayMs > 0 }.map(\.node.name)
            if request.candidate == nil, let name = delayed.first {
                text += "; \(name) replays with recovery_min_apply_delay and is promoted only when named: --candidate \(name)"
            }
            if !request.allowDataLoss {
                return refuse(text + "; promoting it would lose those commits. Accept that with --allow-data-loss")
            }
            warnings.append(text + " (accepted with --allow-data-loss)")
        }

        let others = standbys.filter { $0.node.name != chosen.node.name }
        return .success(
            Plan(
                candidate: chosen.node.name, candidateLsn: lsn(chosen), freshestLsn: freshest,
                timeline: chosen.timeline, reason: reason,
                rePoint: others.filter { lsn($0) <= lsn(chosen) }.map(\.node.name),
                otherTimeline: behindTimeline, unreachable: unreachable, warnings: warnings,
                ahead: others.filter { lsn($0) > lsn(chosen) }.map(\.node.name)))
    }

    /// What the quorum guard reasons on, for failover and watch alike: what the dead primary
    /// was last given (`applied`: the mode and the exact standbys; nil standbys mean every
    /// node), and a change recorded as pending that may have reached it (intent before
    /// action). Never the dead primary itself, nor a pending change's own primary.
    public static func guardConfigs(
        applied: ClusterState.Synchronous, pending: ClusterState.Pending?, nodes: [String], deadPrimary: String?
    ) -> (sync: SyncConfig, alsoPossible: [SyncConfig]) {
        let members = (applied.standbys ?? nodes).filter { $0 != deadPrimary }
        let sync = SyncConfig(mode: applied.synchronousMode, standbys: members)
        guard let pending else { return (sync, []) }
        let pendingMembers = (pending.synchronous.standbys ?? nodes).filter { $0 != deadPrimary && $0 != pending.primary }
        let other = SyncConfig(mode: pending.synchronous.synchronousMode, standbys: pendingMembers)
        return (sync, other == sync ? [] : [other])
    }

    /// The synchronous setting for the new primary: the remembered mode over the standbys
    /// that remain (never the dead primary, never the unreachable), with the count capped at
    /// how many remain so that commits do not block on nodes that are gone.
    ///
    /// With `durability: strict` the mode is never lowered: when fewer remain than it needs,
    /// the other members (`others`: the nodes it was over, by priority; the dead primary
    /// among them) are listed too, with the count unchanged, so that commits WAIT until
    /// enough of them stream again rather than being acknowledged by fewer.
    public static func newSynchronous(
        mode: SynchronousMode, remaining: [String], durability: WatchSettings.Durability = .available, others: [String] = []
    ) -> (mode: SynchronousMode, standbys: [String], warning: String?) {
        if durability == .strict, mode != .async, remaining.count < mode.count {
            let k = mode.count
            let listed = remaining + others.filter { !remaining.contains($0) }
            guard !listed.isEmpty else { return (mode, remaining, "no standby can be listed: commits wait") }
            return (
                mode, listed,
                "durability strict: \(mode) is kept over \(listed.joined(separator: ", ")) though only \(remaining.count) "
                    + "\(remaining.count == 1 ? "follows" : "follow"): commits WAIT until \(k) stream"
            )
        }
        switch mode {
        case .async:
            return (.async, remaining, nil)
        case .any(let k), .first(let k):
            if remaining.isEmpty {
                return (.async, [], "no standby remains: commits are not replicated until one rejoins")
            }
            let capped = min(k, remaining.count)
            let newMode: SynchronousMode = if case .any = mode { .any(capped) } else { .first(capped) }
            let warning = capped < k ? "only \(remaining.count) standby(s) remain: \(mode) lowered to \(newMode) until more rejoin" : nil
            return (newMode, remaining, warning)
        }
    }
}
