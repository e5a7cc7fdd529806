import Foundation

/// `pgcluster failover`: the primary is gone; promote the freshest standby and re-point
/// the others, losing nothing acknowledged (README.md, "How failover decides"; docs/ARCHITECTURE.md, "How one command flows").
///
/// The choice is ``FailoverDecision``'s; this type only observes, carries the plan out
/// and reports. Each step is timed.
public struct Failover: Sendable {
    public let spec: ClusterSpec
    public let credentials: Credentials
    public let ops: ServerOps
    /// Server control, for fencing an old primary that still runs but does not answer.
    public let control: (any ServerControl)?
    public var request: FailoverDecision.Request
    public var dryRun: Bool
    /// Seconds each node may take to answer an observation (`watch` gives less).
    public var observeTimeout: Double = 2
    /// Recorded in history as who failed over: nil for a person's command, `watch`.
    public var by: String?
    /// Told the moment the candidate accepts writes (the watcher logs it: `promoted`).
    public var onPromoted: (@Sendable (String) -> Void)?
    /// What the caller observed of every spec node a moment ago (the watcher's probe that
    /// decided this failover): used instead of a first observation of its own, which would
    /// cost another round of connections on the critical path. Ignored unless it covers
    /// exactly the spec's nodes.
    public var observed: [NodeObservation]?
    /// The cluster's state as the caller read it while nobody else could write it (the
    /// watcher's tick): used instead of a read of its own (with etcd, a request on the
    /// critical path). nil: read it; `.some(nil)`: nothing is recorded.
    public var recorded: ClusterState??
    /// Where the hooks go instead of running here (the watcher's ``HookQueue``: its loop
    /// does not wait for a hook); nil: run before `run()` returns, their failures in the
    /// report's warnings.
    public var hooksElsewhere: (@Sendable (RoleChange) -> Void)?

    public init(
        spec: ClusterSpec, credentials: Credentials, control: (any ServerControl)?, request: FailoverDecision.Request,
        dryRun: Bool, templates: TemplateSet = .embedded
    ) {
        self.spec = spec
        self.credentials = credentials
        self.ops = ServerOps(spec: spec, credentials: credentials, templates: templates)
        self.control = control
        self.request = request
        self.dryRun = dryRun
    }

    /// What was seen, decided and done.
    public struct Report: Sendable, Encodable {
        public struct NodeLine: Sendable, Encodable {
            public var name: String
            public var role: String
            public var timeline: Int?
            public var receiveLsn: String?
            public var replayLsn: String?
            public var priority: Int
        }

        public var dryRun: Bool
        public var oldPrimary: String?
        public var candidate: String
        public var reason: String
        public var candidateLsn: String
        public var freshestLsn: String
        public var timeline: Int?
        public var nodes: [NodeLine]
        public var rePointed: [String]
        public var needsRejoin: [String]
        public var synchronous: String
        /// What was done to fence the old primary, if anything.
        public var fenced: String?
        public var warnings: [String]
        /// Why the cluster cannot commit under its mode after this failover, with the command
        /// that fixes it; empty when it can. Not empty means exit 1.
        public var problems: [String]
        public var steps: [StepTimer.Step]
        public var totalSeconds: Double
    }

    /// The synchronous configuration the dead primary had: what pgcluster last gave it, or
    /// else the remembered mode over every other node (the larger set is the safer guess).
    func rememberedSync(_ state: ClusterState?, oldPrimary: String?)
        -> (ClusterState.Synchronous, FailoverDecision.SyncConfig, [FailoverDecision.SyncConfig])
    {
        let remembered = state?.synchronous ?? .init(spec.replication.synchronous)
        let configs = FailoverDecision.guardConfigs(
            applied: state?.applied ?? remembered, pending: state?.pending, nodes: spec.nodes.map(\.name),
            deadPrimary: oldPrimary)
        return (remembered, configs.sync, configs.alsoPossible)
    }

    /// Its steps on one server share a connection (``ServerSessions``).
    public func run() async throws(ClusterError) -> Report {
        try await ServerSessions.keep { () async throws(ClusterError) -> Report in try await steps() }
    }

    func steps() async throws(ClusterError) -> Report {
        var timer = StepTimer(announce: false)
        let state: ClusterState?
        if let recorded {
            state = recorded
        } else {
            state = try await ClusterRecord.load(spec: spec)
        }
        // Unknown when nothing was recorded: then every node that does not answer is fenced.
        let oldPrimary = state?.primary
        let first: [NodeObservation]
        if let observed, observed.map(\.node.name) == spec.nodes.map(\.name) {
            first = observed
        } else {
            first = await Observer(credentials: credentials, timeout: observeTimeout).observeAll(spec.nodes)
        }
        timer.lap("observe \(spec.nodes.count) nodes")
        // For the quorum guard, an unknown old primary is one of the silent nodes: whichever
        // it was, the others count as missing standbys, so the guard is as strict either way.
        let (remembered, sync, alsoPossible) = rememberedSync(
            state, oldPrimary: oldPrimary ?? first.first { !$0.reachable }?.node.name)

        // A live primary: either an earlier failover stopped part-way (finish it), or there is
        // nothing to fail over from.
        if let live = try PrimaryRules.livePrimary(first, record: state.map(PrimaryRules.Record.init)) {
            if let unfinished = PrimaryRules.unfinished(live: live, observations: first, recordedPrimary: oldPrimary), !dryRun {
                return try await finish(live: live, observations: first, why: unfinished, remembered: remembered, timer: timer)
            }
        }

        // Decide once before touching anything: a refusal here changes nothing.
        let preliminary = try Self.unwrap(FailoverDecision.decide(
            observations: first, sync: sync, request: request, alsoPossible: alsoPossible, recordedTimeline: state?.timeline))
        if dryRun {
            return report(plan: preliminary, observations: first, oldPrimary: oldPrimary, rePointed: [], needsRejoin: [],
                synchronous: "unchanged", fenced: nil, timer: timer)
        }

        // Fence and freeze at once (both are done before anything is promoted): fencing a
        // host that does not answer costs its connect timeout, freezing costs milliseconds.
        async let fencing = fence(first, oldPrimary: oldPrimary, promoting: state.map(PrimaryRules.Record.init)?.promoting)
        // With `backup:` the freeze empties restore_command, so the promotion will not ask the
        // archive which timelines exist: pgcluster asks it, once, meanwhile.
        async let archived = archive.timelines()
        // Freeze every reachable standby: from now on none acknowledges the old primary.
        let reachable = first.filter(\.isStandby)
        let frozen = await parallel(reachable.map(\.node)) { node throws(ClusterError) in try await ops.freeze(node) }
        let fenced = await fencing
        timer.lap("freeze \(reachable.count) standbys" + (fenced.map { "; fence: \($0)" } ?? ""))
        TestInterruption.point("freeze")
        // A standby that cannot be frozen (its WAL receiver hangs) may still move: it is
        // neither compared nor promoted, and the quorum guard counts it as missing.
        let unfrozen = Dictionary(uniqueKeysWithValues: frozen.compactMap { node, error in error.map { (node.name, $0) } })
        for (name, error) in unfrozen { Console.warn("\(name) could not be frozen, leaving it out: \(error.message)") }
        // What this run changed, and so what a refusal puts back: no more.
        let changedByUs = reachable.filter { !$0.primaryConninfo.isEmpty && unfrozen[$0.node.name] == nil }

        // The LSNs now stand still: decide for real, on the frozen standbys as they are now.
        // A node that did not answer before was not frozen: it stays out, counted as missing.
        let again = await Observer(credentials: credentials, timeout: observeTimeout).observeAll(reachable.map(\.node))
        let observations = first.map { before in
            if let error = unfrozen[before.node.name] {
                return NodeObservation(node: before.node, error: "could not be frozen: \(error.message)")
            }
            return again.first { $0.node == before.node } ?? NodeObservation(node: before.node, error: before.error ?? "not observed")
        }
        timer.lap("observe frozen positions")
        let plan: FailoverDecision.Plan
        let candidate: NodeSpec
        let planned: (mode: SynchronousMode, standbys: [String], warning: String?)
        // The standbys that will follow the candidate, and those of them that stream through
        // it before its promotion (below).
        let followers: [NodeSpec]
        var early: [NodeSpec] = []
        // The intent recorded (``QuorumChange/set()``) names the timeline it would promote to;
        // until the promotion is asked for, a failure takes it back.
        var intended: (candidate: String, timeline: Int?)?
        var promoteAsked = false
        do {
            plan = try Self.unwrap(
                FailoverDecision.decide(
                    observations: observations, sync: sync, request: request, alsoPossible: alsoPossible,
                    recordedTimeline: state?.timeline))
            candidate = spec.node(named: plan.candidate)!
            followers = plan.rePoint.compactMap(spec.node(named:))
            let chosen = observations.first { $0.node.name == candidate.name }!
            try await ops.prepareReplay(chosen)
            await ops.resumeReplay(observations.filter { followers.contains($0.node) }, toFollow: candidate)
            try await ops.waitForReplay(candidate)
            timer.lap("\(candidate.name) replays all it received")
            // The synchronous names go in before the promotion, so that not one commit on the
            // new primary is acknowledged outside the remembered mode.
            planned = FailoverDecision.newSynchronous(
                mode: remembered.synchronousMode, remaining: plan.rePoint, durability: spec.watch.durability,
                others: (remembered.standbys ?? spec.nodes.map(\.name)).filter { $0 != candidate.name })
            var intent = QuorumChange(
                credentials: credentials, primary: candidate, mode: planned.mode, standbys: planned.standbys, intent: spec)
            intent.promotesTo = (chosen.timeline ?? 1) + 1
            intended = (candidate.name, intent.promotesTo)
            // Meanwhile the others stream through the candidate: none has WAL it lacks (it is
            // the freshest and replayed all it received), and on its promotion they follow it
            // onto the new timeline on the connection they have, so that its first commits are
            // acknowledged without waiting for a reconnect (a new walsender, a TLS handshake).
            // (Its slots for them first, on its connection, before the intent takes it.)
            let slotted = (try? await ops.ensureSlots(on: candidate, for: followers)) != nil ? followers : []
            async let cascaded = cascade(slotted, through: candidate)
            let set = await outcome { () async throws(ClusterError) in try await intent.set() }
            early = await cascaded
            try set.get()
            timer.lap(
                "synchronous_standby_names on \(candidate.name)"
                    + (early.isEmpty ? "" : "; \(early.count) standbys stream through it"))
            TestInterruption.point("synchronous")
            if spec.backup != nil {
                let fetched = try await archive.learn(await archived, candidate: candidate, timeline: chosen.timeline ?? 1)
                timer.lap(fetched ? "\(candidate.name) given the archive's newer timeline history" : "the WAL archive's timelines read")
            }
            promoteAsked = true
            try await ops.promote(candidate)
        } catch {
            // Nothing was promoted: those pointed at the candidate are frozen again first, then
            // every standby goes back to what it followed.
            _ = await parallel(early) { node throws(ClusterError) in try await ops.freeze(node) }
            await restore(changedByUs)
            await ops.archiveOn(reachable.map(\.node))
            // The intent is taken back, unless the promotion was asked for (it may still finish).
            if !promoteAsked, let intended {
                try? await ClusterRecord.dropPending(spec: spec, promoting: intended.candidate, to: intended.timeline)
            }
            throw error
        }
        timer.lap("promote \(candidate.name)")
        onPromoted?(candidate.name)
        TestInterruption.point("promote")
        let timeline = await Observer(credentials: credentials).observe(candidate).timeline

        try await ops.ensureSlots(on: candidate, for: followers.filter { !early.contains($0) })
        let (following, needsRejoin) = await rePoint(followers, to: candidate, timeline: timeline, already: early)
        timer.lap("re-point \(followers.count) standbys, streaming on timeline \(timeline.map(String.init) ?? "?")")
        TestInterruption.point("re-point")

        let outcome = try await SynchronousSettlement.settle(
            spec: spec, credentials: credentials, primary: candidate, following: following.map(\.name),
            remembered: remembered, alreadySet: (planned.mode, planned.standbys), down: plan.unreachable + plan.ahead + needsRejoin)
        if outcome.changed { timer.lap("synchronous_standby_names over the standbys that follow") }
        try await ClusterRecord.savePrimary(
            spec: spec, primary: candidate.name, applied: (outcome.mode, outcome.standbys), timeline: timeline)
        var result = report(
            plan: plan, observations: observations, oldPrimary: oldPrimary ?? plan.unreachable.first,
            rePointed: following.map(\.name), needsRejoin: Array(Set(plan.unreachable + plan.ahead + needsRejoin)).sorted(),
            synchronous: outcome.mode.standbyNames(outcome.standbys), fenced: fenced, timer: timer,
            warnings: plan.warnings + outcome.warnings, timeline: timeline, problems: outcome.problems)
        try await record(result, lsn: plan.candidateLsn)
        await runHooks(&result)
        return result
    }

    /// Finishes a failover that stopped after its promotion (or, with the old primary still
    /// the primary, after the freeze): every other standby follows the live primary, the
    /// synchronous names list those that do, and the result is recorded.
    func finish(
        live: NodeObservation, observations: [NodeObservation], why: String, remembered: ClusterState.Synchronous,
        timer: StepTimer
    ) async throws(ClusterError) -> Report {
        var timer = timer
        Console.progress("finishing an interrupted failover: \(why); \(live.node.name) is the primary")
        let primary = live.node
        let followers = observations.filter { $0.isStandby }.map(\.node)
        try await ops.ensureSlots(on: primary, for: followers)
        let (following, needsRejoin) = await rePoint(followers, to: primary, timeline: live.timeline)
        timer.lap("re-point \(followers.count) standbys, streaming on timeline \(live.timeline.map(String.init) ?? "?")")
        let unreachable = observations.filter { !$0.reachable }.map(\.node.name)
        let outcome = try await SynchronousSettlement.settle(
            spec: spec, credentials: credentials, primary: primary, following: following.map(\.name),
            remembered: remembered, alreadySet: nil, down: unreachable + needsRejoin)
        timer.lap("synchronous_standby_names over the standbys that follow")
        try await ClusterRecord.savePrimary(
            spec: spec, primary: primary.name, applied: (outcome.mode, outcome.standbys), timeline: live.timeline)
        let lsn = live.currentLsn ?? LSN(0)
        let plan = FailoverDecision.Plan(
            candidate: primary.name, candidateLsn: lsn, freshestLsn: lsn, timeline: live.timeline,
            reason: "already the primary: finished an interrupted failover (\(why))",
            rePoint: followers.map(\.name), otherTimeline: [], unreachable: unreachable, warnings: [])
        var result = report(
            plan: plan, observations: observations, oldPrimary: nil, rePointed: following.map(\.name),
            needsRejoin: Array(Set(unreachable + needsRejoin)).sorted(), synchronous: outcome.mode.standbyNames(outcome.standbys),
            fenced: nil, timer: timer, warnings: outcome.warnings, timeline: live.timeline, problems: outcome.problems)
        try await record(result, lsn: lsn)
        await runHooks(&result)
        return result
    }

    /// Fences what could come back as a primary by itself: the recorded old primary when it
    /// does not answer, or, when pgcluster cannot tell which node was primary, every node that
    /// does not answer. Returns what was done.
    func fence(_ observations: [NodeObservation], oldPrimary: String?, promoting: String?) async -> String? {
        guard let control else { return nil }
        // The old primary; a node an earlier failover was promoting (it may be a primary nobody
        // recorded); or, with nothing recorded, every node that does not answer.
        let silent = observations.filter {
            !$0.reachable && (oldPrimary == nil || $0.node.name == oldPrimary || $0.node.name == promoting)
        }
        if !silent.isEmpty {
            do throws(ClusterError) {
                try await HeldLocks.verify(before: "fencing")
            } catch {
                return "not fenced: \(error.message)"
            }
        }
        var done: [String] = []
        for observation in silent {
            if let fenced = await control.fence(observation.node) { done.append("\(observation.node.name): \(fenced)") }
        }
        if oldPrimary == nil && !silent.isEmpty {
            Console.warn("no primary was recorded, so every node that does not answer was fenced: \(silent.map(\.node.name).joined(separator: ", "))")
        }
        return done.isEmpty ? nil : done.joined(separator: "; ")
    }

    /// With `backup:`: the archive's timelines, for a promotion that does not ask it.
    var archive: ArchivedTimelineCheck { ArchivedTimelineCheck(spec: spec, control: control) }

    /// Points standbys at the (new) primary and waits until they stream from it on
    /// `timeline`. Returns those that follow and the names of those that need `rejoin`.
    /// `already`: those pointed at it before its promotion (``cascade(_:through:)``), only
    /// waited for. With `backup:`, every one of them (streaming or not) and the primary read
    /// the archive again afterwards: the freeze had turned it off.
    func rePoint(
        _ standbys: [NodeSpec], to primary: NodeSpec, timeline: Int?, already: [NodeSpec] = []
    ) async -> ([NodeSpec], [String]) {
        let pointed = await parallel(standbys.filter { !already.contains($0) }) { node throws(ClusterError) in
            try await ops.rePoint(node, to: primary)
        }
        let refused = pointed.filter { $0.1 != nil }.map(\.0.name)
        let ok = standbys.filter { !refused.contains($0.name) }
        let lagging = await ops.confirmStreaming(ok, from: primary, timeline: timeline, timeout: 15)
        await ops.archiveOn(standbys + [primary])
        return (ok.filter { !lagging.contains($0) }, refused + lagging.map(\.name))
    }

    /// Before the promotion (the candidate has their slots): each of `standbys` streams
    /// through it. Returns those pointed at it; the rest are re-pointed after the promotion.
    func cascade(_ standbys: [NodeSpec], through candidate: NodeSpec) async -> [NodeSpec] {
        let pointed = await parallel(standbys) { node throws(ClusterError) in try await ops.rePoint(node, to: candidate) }
        return pointed.filter { $0.1 == nil }.map(\.0)
    }

    func record(_ result: Report, lsn: LSN) async throws(ClusterError) {
        try await Stores.of(spec).appendHistory(
            HistoryEvent(
                kind: "failover", from: result.oldPrimary, to: result.candidate, timeline: result.timeline, lsn: lsn,
                durationSeconds: result.totalSeconds, rePointed: result.rePointed, needsRejoin: result.needsRejoin,
                steps: result.steps, by: by))
    }

    static func unwrap(_ result: Result<FailoverDecision.Plan, FailoverDecision.Refusal>) throws(ClusterError) -> FailoverDecision.Plan {
        switch result {
        case .success(let plan): return plan
        case .failure(let refusal): throw ClusterError(refusal.reason, exitCode: refusal.exitCode)
        }
    }

    /// After a refusal or a failure before the promotion: puts back the conninfo of the
    /// standbys this run froze, and only where it is still empty, so that it never undoes
    /// what another command did meanwhile. All at once, each within 5 s; one that does not
    /// answer (the dead candidate, say) is said, with what sets it to follow.
    ///
    /// "Still empty" is read from the configuration files (what ALTER SYSTEM wrote), not the
    /// session's `SHOW`: a session takes a reload only when the postmaster passes it on, so
    /// right after the freeze's reload it can still show the conninfo the freeze replaced,
    /// and the standby would have been left frozen.
    func restore(_ standbys: [NodeObservation]) async {
        let ops = ops
        let results = await parallel(standbys) { standby throws(ClusterError) in
            let still = try await ops.execute(standby.node, [ServerOps.configuredConninfo], timeout: 5)
            guard (still.scalar ?? "") == "" else { return }
            try await ops.execute(
                standby.node,
                ["ALTER SYSTEM SET primary_conninfo = \(ConfigText.sqlLiteral(standby.primaryConninfo))", "SELECT pg_reload_conf()"],
                timeout: 5)
        }
        for (standby, error) in results {
            guard let error else { continue }
            Console.warn(
                "\(standby.node.name) follows nobody (frozen by this failover) and could not be put back: \(error.message); "
                    + "`pgcluster failover` again, or `pgcluster rejoin \(standby.node.name)`, sets it to follow")
        }
    }

    func report(
        plan: FailoverDecision.Plan, observations: [NodeObservation], oldPrimary: String?, rePointed: [String],
        needsRejoin: [String], synchronous: String, fenced: String?, timer: StepTimer, warnings: [String]? = nil,
        timeline: Int? = nil, problems: [String] = []
    ) -> Report {
        Report(
            dryRun: dryRun, oldPrimary: oldPrimary, candidate: plan.candidate, reason: plan.reason,
            candidateLsn: plan.candidateLsn.description, freshestLsn: plan.freshestLsn.description,
            timeline: timeline ?? plan.timeline,
            nodes: observations.map { o in
                .init(
                    name: o.node.name, role: o.health.rawValue,
                    timeline: o.timeline, receiveLsn: o.receiveLsn?.description, replayLsn: o.replayLsn?.description,
                    priority: o.node.priority)
            },
            rePointed: rePointed, needsRejoin: needsRejoin, synchronous: synchronous, fenced: fenced,
            warnings: warnings ?? plan.warnings, problems: problems, steps: timer.steps, totalSeconds: timer.total)
    }
}

extension Failover.Report {
    /// The report for people.
    public var text: String {
        var lines: [String] = []
        lines.append(dryRun ? "failover plan (dry run: nothing changed)" : "failover done in \(String(format: "%.3f", totalSeconds)) s")
        var rows = [["NODE", "ROLE", "TL", "RECEIVED", "REPLAYED", "PRIORITY"]]
        for node in nodes {
            rows.append([
                node.name + (node.name == candidate ? " *" : ""), node.role, node.timeline.map(String.init) ?? "-",
                node.receiveLsn ?? "-", node.replayLsn ?? "-", String(node.priority),
            ])
        }
        lines.append(TextTable.render(rows))
        lines.append("chosen: \(candidate): \(reason)")
        if !dryRun {
            lines.append("\(candidate) is the primary on timeline \(timeline.map(String.init) ?? "?")")
            lines.append("following it: \(rePointed.isEmpty ? "none" : rePointed.joined(separator: ", "))")
            lines.append("synchronous_standby_names = '\(synchronous)'")
            if !needsRejoin.isEmpty {
                lines.append("needs rejoin: \(needsRejoin.joined(separator: ", ")) (run: pgcluster rejoin NODE)")
            }
            lines.append("steps:")
            lines += steps.map(\.line)
        }
        for warning in warnings { lines.append("warning: \(warning)") }
        for problem in problems { lines.append("not done: \(problem)") }
        return lines.joined(separator: "\n")
    }
}
