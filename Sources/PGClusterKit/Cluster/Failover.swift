import Foundation

/// `pgcluster failover`: the primary is gone; promote the freshest standby and re-point
/// the others, losing nothing acknowledged (DESIGN.md, "Failover, step by step").
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
        public var steps: [StepTimer.Step]
        public var totalSeconds: Double
    }

    /// The synchronous configuration the dead primary had: what pgcluster last gave it, or
    /// else the remembered mode over every other node (the larger set is the safer guess).
    func rememberedSync(_ state: ClusterState?, oldPrimary: String) -> (ClusterState.Synchronous, FailoverDecision.SyncConfig) {
        let remembered = state?.synchronous ?? .init(spec.replication.synchronous)
        let guardConfig = state?.applied ?? remembered
        let members = guardConfig.standbys ?? spec.nodes.map(\.name)
        return (remembered, .init(mode: guardConfig.synchronousMode, standbys: members.filter { $0 != oldPrimary }))
    }

    public func run() async throws(ClusterError) -> Report {
        var timer = StepTimer()
        let state = ClusterState.load(LocalLayout(spec: spec).stateFile)
        let oldPrimary = state?.primary ?? spec.primary.name
        let (remembered, sync) = rememberedSync(state, oldPrimary: oldPrimary)
        let first = await Observer(credentials: credentials).observeAll(spec.nodes)
        timer.lap("observe \(spec.nodes.count) nodes")

        // Decide once before touching anything: a refusal here changes nothing.
        let preliminary = try Self.unwrap(FailoverDecision.decide(observations: first, sync: sync, request: request))
        if dryRun {
            return report(plan: preliminary, observations: first, oldPrimary: oldPrimary, rePointed: [], needsRejoin: [],
                synchronous: "unchanged", fenced: nil, timer: timer)
        }

        // Fence: the old primary's server still running but not answering.
        var fenced: String?
        if let control, let old = spec.node(named: oldPrimary),
            first.first(where: { $0.node.name == oldPrimary })?.reachable == false
        {
            fenced = await control.fence(old)
            if let fenced { timer.lap("fence \(oldPrimary): \(fenced)") }
        }

        // Freeze every reachable standby: from now on none acknowledges the old primary.
        let reachable = first.filter(\.isStandby)
        let frozen = await parallel(reachable.map(\.node)) { node throws(ClusterError) in try await ops.freeze(node) }
        timer.lap("freeze \(reachable.count) standbys")
        // A standby that cannot be frozen (its WAL receiver hangs) may still move: it is
        // neither compared nor promoted, and the quorum guard counts it as missing.
        let unfrozen = Dictionary(uniqueKeysWithValues: frozen.compactMap { node, error in error.map { (node.name, $0) } })
        for (name, error) in unfrozen { Console.warn("\(name) could not be frozen, leaving it out: \(error.message)") }

        // The LSNs now stand still: decide for real.
        var observations = await Observer(credentials: credentials).observeAll(spec.nodes)
        for i in observations.indices {
            if let error = unfrozen[observations[i].node.name] {
                observations[i] = NodeObservation(node: observations[i].node, error: "could not be frozen: \(error.message)")
            }
        }
        timer.lap("observe frozen positions")
        let plan: FailoverDecision.Plan
        do {
            plan = try Self.unwrap(FailoverDecision.decide(observations: observations, sync: sync, request: request))
        } catch {
            await restore(reachable)
            throw error
        }
        let candidate = spec.node(named: plan.candidate)!

        try await ops.waitForReplay(candidate)
        timer.lap("\(candidate.name) replays all it received")
        try await ops.promote(candidate)
        timer.lap("promote \(candidate.name)")
        let promoted = await Observer(credentials: credentials).observe(candidate)
        let timeline = promoted.timeline

        // The new primary: slots for its standbys, and the remembered mode over those that remain.
        let followers = plan.rePoint.compactMap(spec.node(named:))
        try await ops.ensureSlots(on: candidate, for: followers)
        let newSync = FailoverDecision.newSynchronous(mode: remembered.synchronousMode, remaining: followers.map(\.name))
        try await QuorumChange(credentials: credentials, primary: candidate, mode: newSync.mode, standbys: newSync.standbys).set()
        timer.lap("slots and synchronous_standby_names on \(candidate.name)")

        let pointed = await parallel(followers) { node throws(ClusterError) in try await ops.rePoint(node, to: candidate) }
        var needsRejoin = plan.unreachable
        let rePointed = pointed.filter { $0.1 == nil }.map(\.0)
        needsRejoin += pointed.filter { $0.1 != nil }.map(\.0.name)
        let lagging = await ops.confirmStreaming(rePointed, from: candidate, timeline: timeline, timeout: 15)
        needsRejoin += lagging.map(\.name)
        timer.lap("re-point \(followers.count) standbys, streaming on timeline \(timeline.map(String.init) ?? "?")")

        var warnings = plan.warnings
        if let warning = newSync.warning { warnings.append(warning) }
        try ClusterRecord.savePrimary(spec: spec, primary: candidate.name, applied: (newSync.mode, newSync.standbys))
        let following = rePointed.filter { node in !lagging.contains(node) }.map(\.name)
        let result = report(
            plan: plan, observations: observations, oldPrimary: oldPrimary, rePointed: following,
            needsRejoin: Array(Set(needsRejoin)).sorted(), synchronous: newSync.mode.standbyNames(newSync.standbys),
            fenced: fenced, timer: timer, warnings: warnings, timeline: timeline)
        try History.append(
            HistoryEvent(
                kind: "failover", from: oldPrimary, to: candidate.name, timeline: timeline, lsn: plan.candidateLsn,
                durationSeconds: result.totalSeconds, rePointed: result.rePointed, needsRejoin: result.needsRejoin,
                steps: result.steps),
            spec: spec)
        return result
    }

    static func unwrap(_ result: Result<FailoverDecision.Plan, FailoverDecision.Refusal>) throws(ClusterError) -> FailoverDecision.Plan {
        switch result {
        case .success(let plan): return plan
        case .failure(let refusal): throw ClusterError(refusal.reason, exitCode: refusal.exitCode)
        }
    }

    /// Puts frozen standbys back on the conninfo they had, after a refusal.
    func restore(_ standbys: [NodeObservation]) async {
        for standby in standbys {
            _ = try? await ops.execute(
                standby.node,
                ["ALTER SYSTEM SET primary_conninfo = \(ConfigText.sqlLiteral(standby.primaryConninfo))", "SELECT pg_reload_conf()"])
        }
    }

    func report(
        plan: FailoverDecision.Plan, observations: [NodeObservation], oldPrimary: String?, rePointed: [String],
        needsRejoin: [String], synchronous: String, fenced: String?, timer: StepTimer, warnings: [String]? = nil,
        timeline: Int? = nil
    ) -> Report {
        Report(
            dryRun: dryRun, oldPrimary: oldPrimary, candidate: plan.candidate, reason: plan.reason,
            candidateLsn: plan.candidateLsn.description, freshestLsn: plan.freshestLsn.description,
            timeline: timeline ?? plan.timeline,
            nodes: observations.map { o in
                .init(
                    name: o.node.name, role: o.isPrimary ? "primary" : o.isStandby ? "standby" : "down",
                    timeline: o.timeline, receiveLsn: o.receiveLsn?.description, replayLsn: o.replayLsn?.description,
                    priority: o.node.priority)
            },
            rePointed: rePointed, needsRejoin: needsRejoin, synchronous: synchronous, fenced: fenced,
            warnings: warnings ?? plan.warnings, steps: timer.steps, totalSeconds: timer.total)
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
        return lines.joined(separator: "\n")
    }
}

/// Runs `body` for every node at once; returns each node with its error, if any.
func parallel(
    _ nodes: [NodeSpec], _ body: @escaping @Sendable (NodeSpec) async throws(ClusterError) -> Void
) async -> [(NodeSpec, ClusterError?)] {
    await withTaskGroup(of: (Int, ClusterError?).self) { group in
        for (i, node) in nodes.enumerated() {
            group.addTask {
                do throws(ClusterError) {
                    try await body(node)
                    return (i, nil)
                } catch {
                    return (i, error)
                }
            }
        }
        var results = [(NodeSpec, ClusterError?)](repeating: (nodes.first ?? NodeSpec(name: "", port: 0), nil), count: nodes.count)
        for await (i, error) in group { results[i] = (nodes[i], error) }
        return results
    }
}
