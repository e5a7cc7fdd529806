import Foundation

/// The restarts of a rolling restart, written once for `apply` (its restart steps) and
/// `restart` (a ``RestartPlan``): a standby is stopped (fast), started and must stream again
/// before the caller goes on; the primary restarts by switchover or in place.
public struct RollingRestarter: Sendable {
    public let cluster: any ServerControl
    public let credentials: Credentials
    public let ops: ServerOps

    public init(cluster: any ServerControl, credentials: Credentials) {
        self.cluster = cluster
        self.credentials = credentials
        self.ops = ServerOps(spec: cluster.spec, credentials: credentials, templates: cluster.renderer.templates)
    }

    var spec: ClusterSpec { cluster.spec }

    /// Restarts the standby `node` and waits until it streams from `primary` again. With
    /// `onlyIfPending`, a node with nothing pending_restart (asked now) is left running.
    public func restartStandby(_ node: NodeSpec, primary: NodeSpec, onlyIfPending: Bool) async throws(ClusterError) {
        if onlyIfPending, try await !pendingRestart(node) { return }
        Console.progress("[\(node.name)] restarting")
        try await cluster.stop(node, mode: .fast)
        try await startStandby(node, primary: primary)
    }

    /// Starts the stopped standby `node` (``ServerControl/startStandby(_:)``) and waits until
    /// it streams from `primary`; a node started without `restore_command` gets it back either way.
    public func startStandby(_ node: NodeSpec, primary: NodeSpec) async throws(ClusterError) {
        let withoutArchive = try await cluster.startStandby(node)
        let streaming = await outcome { () async throws(ClusterError) in try await confirmStreaming([node], from: primary) }
        if withoutArchive { await ops.archiveOn([node]) }
        try streaming.get()
    }

    /// Restarts the primary `node`; returns the primary afterwards (a switchover moves it).
    /// In place, it checkpoints first (a shorter stop) and waits until every other node
    /// streams from it again.
    public func restartPrimary(_ node: NodeSpec, how: PrimaryUpdate, onlyIfPending: Bool) async throws(ClusterError) -> NodeSpec {
        if onlyIfPending, try await !pendingRestart(node) { return node }
        switch how {
        case .switchover:
            let report = try await Switchover(cluster: cluster, credentials: credentials, candidate: nil).run()
            Console.progress(report.text)
            if let problem = report.problems.first ?? report.needsRejoin.first.map({ "\($0) needs rejoin" }) {
                throw ClusterError("the switchover left a problem: \(problem)")
            }
            return spec.node(named: report.to) ?? node
        case .restart:
            Console.progress("[\(node.name)] restarting the primary in place")
            try await ops.checkpoint(node)
            try await cluster.stop(node, mode: .fast)
            try await cluster.start(node)
            let standbys = spec.nodes.filter { $0.name != node.name }
            try await confirmStreaming(standbys, from: node)
            return node
        }
    }

    /// Whether the node has a setting pending_restart, naming them in the progress.
    func pendingRestart(_ node: NodeSpec) async throws(ClusterError) -> Bool {
        let pending = try await ops.execute(node, ["SELECT string_agg(name, ', ') FROM pg_settings WHERE pending_restart"])
        guard let names = pending.scalar else {
            Console.progress("[\(node.name)] nothing pending_restart: not restarted")
            return false
        }
        Console.progress("[\(node.name)] pending_restart: \(names)")
        return true
    }

    func confirmStreaming(_ standbys: [NodeSpec], from primary: NodeSpec) async throws(ClusterError) {
        let lagging = await ops.confirmStreaming(standbys, from: primary, timeline: nil, timeout: 60)
        guard let first = lagging.first else { return }
        throw ClusterError(
            "\(lagging.map(\.name).joined(separator: ", ")) not streaming from \(primary.name) after 60 s",
            details: await cluster.logTail(first, lines: 8).map { "\(first.name) log | " + $0 })
    }
}

/// `pgcluster restart [NODE...] [--pending]`: observes the cluster, plans (``RestartPlan``),
/// and carries the plan out through ``RollingRestarter``, each step timed. A step that fails
/// stops the run, saying what was done and what is left.
public struct ClusterRestart: Sendable {
    public let restarter: RollingRestarter

    public init(cluster: any ServerControl, credentials: Credentials) {
        restarter = RollingRestarter(cluster: cluster, credentials: credentials)
    }

    var spec: ClusterSpec { restarter.spec }

    public struct Report: Sendable, Encodable {
        public var plan: RestartPlan
        public var primary: String
        public var steps: [StepTimer.Step]
        public var totalSeconds: Double

        public var text: String {
            (["restart done in \(String(format: "%.3f", totalSeconds)) s; the primary is \(primary)", "steps:"]
                + steps.map(\.line)).joined(separator: "\n")
        }
    }

    /// Observes every spec node and plans the restart of `selected` (every node when empty).
    public func plan(selected: [String], pendingOnly: Bool, primaryUpdate: PrimaryUpdate) async throws(ClusterError) -> RestartPlan {
        let observations = await Observer(credentials: restarter.credentials, pendingRestart: true).observeAll(spec.nodes)
        return try RestartPlan.make(
            spec: spec, observations: observations, selected: selected.isEmpty ? spec.nodes.map(\.name) : selected,
            pendingOnly: pendingOnly, primaryUpdate: primaryUpdate)
    }

    public func execute(_ plan: RestartPlan) async throws(ClusterError) -> Report {
        var timer = StepTimer()
        var primary = spec.node(named: plan.primary)!
        for (index, step) in plan.steps.enumerated() {
            let text = step.text(pendingOnly: plan.pendingOnly)
            Console.progress("[restart] step \(index + 1)/\(plan.steps.count): \(text)")
            do throws(ClusterError) {
                let node = spec.node(named: step.node)!
                switch step {
                case .standby:
                    try await restarter.restartStandby(node, primary: primary, onlyIfPending: plan.pendingOnly)
                case .primary(_, let how):
                    primary = try await restarter.restartPrimary(node, how: how, onlyIfPending: plan.pendingOnly)
                }
                timer.lap("\(index + 1). " + text)
            } catch {
                let done = plan.steps.prefix(index).map { "done: " + $0.text(pendingOnly: plan.pendingOnly) }
                let left = plan.steps.dropFirst(index).map { "left: " + $0.text(pendingOnly: plan.pendingOnly) }
                throw ClusterError(
                    "restart stopped at step \(index + 1) of \(plan.steps.count) (\(text)): \(error.message)",
                    exitCode: error.exitCode,
                    details: error.details + done + left
                        + ["fix what is named above, then run pgcluster restart again (with --pending, only what still waits for a restart)"])
            }
        }
        return Report(plan: plan, primary: primary.name, steps: timer.steps, totalSeconds: timer.total)
    }
}
