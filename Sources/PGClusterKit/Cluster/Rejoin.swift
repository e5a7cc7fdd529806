import Foundation

/// `pgcluster rejoin NODE`: a failed old primary (or any node that fell out) becomes a
/// standby of the current primary. pg_rewind when its timeline forked; a fresh
/// pg_basebackup with `--reclone`, when it has no data, or when rewind fails.
public struct Rejoin: Sendable {
    public let cluster: any ServerControl
    public let credentials: Credentials
    public let ops: ServerOps
    public let node: NodeSpec
    public var reclone: Bool

    public init(cluster: any ServerControl, credentials: Credentials, node: NodeSpec, reclone: Bool) {
        self.cluster = cluster
        self.credentials = credentials
        self.ops = ServerOps(spec: cluster.spec, credentials: credentials, templates: cluster.renderer.templates)
        self.node = node
        self.reclone = reclone
    }

    var spec: ClusterSpec { cluster.spec }

    public struct Report: Sendable, Encodable {
        public var node: String
        public var primary: String
        public var method: String
        public var timeline: Int?
        public var synchronous: String
        /// The WAL pg_rewind discarded; nil when nothing was rewound (or it cannot be told).
        public var rewound: RewoundWAL?
        public var steps: [StepTimer.Step]
        public var totalSeconds: Double

        public var text: String {
            var lines = ["\(node) rejoined as a standby of \(primary) (\(method)) in \(String(format: "%.3f", totalSeconds)) s, streaming on timeline \(timeline.map(String.init) ?? "?")"]
            if let rewound { lines.append(rewound.text(node: node, primary: primary)) }
            lines.append("synchronous_standby_names = '\(synchronous)'")
            return lines.joined(separator: "\n")
        }
    }

    public func run() async throws(ClusterError) -> Report {
        var timer = StepTimer()
        let observations = await Observer(credentials: credentials).observeAll(spec.nodes)
        let primaryObservation: NodeObservation
        do {
            primaryObservation = try PrimaryLookup.find(observations.filter { $0.node.name != node.name })
        } catch {
            throw ClusterError("cannot rejoin \(node.name): \(error.message)", details: error.details)
        }
        let primary = primaryObservation.node
        if let own = observations.first(where: { $0.node.name == node.name }), own.isStandby,
            own.streaming, StatusReport.upstreamName(of: own, among: observations) == primary.name, !reclone
        {
            throw ClusterError.refused("\(node.name) already streams from \(primary.name); nothing to do (use --reclone to copy it afresh)")
        }
        timer.lap("observe; \(primary.name) is the primary")

        if await cluster.isRunning(node) {
            do {
                try await cluster.stop(node, mode: .fast)
            } catch {
                try await cluster.stop(node, mode: .immediate)
            }
            timer.lap("stop \(node.name)")
        }
        try await ops.ensureSlots(on: primary, for: [node])

        var method = "pg_rewind"
        var rewound: RewoundWAL?
        let hasData = await cluster.hasData(node)
        if reclone || !hasData {
            method = "pg_basebackup"
        } else {
            // pg_rewind reads the source's timeline from its control file, which a freshly
            // promoted primary updates only at its first checkpoint: without this, it can
            // wrongly find "no rewind required".
            try await ops.checkpoint(primary)
            let endOfWAL = await controlDataBeforeRewind()
            do {
                let output = try await cluster.rewind(node, from: primary, credentials: credentials)
                if output.contains("no rewind required") { method = "no rewind needed" }
                rewound = endOfWAL.flatMap { RewoundWAL.parse(controlData: $0, rewindOutput: output) }
                timer.lap("pg_rewind \(node.name) from \(primary.name)")
            } catch {
                Console.warn("pg_rewind failed, copying \(node.name) afresh with pg_basebackup: \(error.description)")
                method = "pg_basebackup (pg_rewind failed)"
            }
        }
        if method.hasPrefix("pg_basebackup") {
            try await cluster.reclone(node, from: primary, credentials: credentials)
            timer.lap("pg_basebackup \(node.name) from \(primary.name)")
        }
        try await cluster.start(node)
        timer.lap("start \(node.name) as a standby")

        let timeline = primaryObservation.timeline
        let lagging = await ops.confirmStreaming([node], from: primary, timeline: timeline, timeout: 60)
        guard lagging.isEmpty else {
            throw ClusterError(
                "\(node.name) started but does not stream from \(primary.name) after 60 s",
                details: await cluster.logTail(node, lines: 10).map { "log | " + $0 } + ["try: pgcluster rejoin \(node.name) --reclone"])
        }
        timer.lap("\(node.name) streams from \(primary.name)")

        // Listed again in synchronous_standby_names, per the remembered mode.
        let remembered = ClusterRecord.synchronous(spec: spec)
        let now = await Observer(credentials: credentials).observeAll(spec.nodes)
        let standbyNames = now.filter(\.isStandby).map(\.node.name)
        let listed = (remembered.standbys ?? standbyNames).filter { $0 != primary.name && standbyNames.contains($0) }
        let ordered = spec.nodes.filter { listed.contains($0.name) }
            .sorted { ($0.priority, $1.name) > ($1.priority, $0.name) }.map(\.name)
        let newSync = FailoverDecision.newSynchronous(mode: remembered.synchronousMode, remaining: ordered)
        try await QuorumChange(
            credentials: credentials, primary: primary, mode: newSync.mode, standbys: newSync.standbys, timeout: 30
        ).apply()
        try ClusterRecord.savePrimary(spec: spec, primary: primary.name, applied: (newSync.mode, newSync.standbys))
        timer.lap("synchronous_standby_names on \(primary.name)")

        let report = Report(
            node: node.name, primary: primary.name, method: method, timeline: timeline,
            synchronous: newSync.mode.standbyNames(newSync.standbys), rewound: rewound, steps: timer.steps,
            totalSeconds: timer.total)
        try History.append(
            HistoryEvent(
                kind: "rejoin", from: node.name, to: primary.name, timeline: timeline, lsn: primaryObservation.currentLsn,
                durationSeconds: report.totalSeconds, rePointed: [node.name], needsRejoin: [], steps: report.steps),
            spec: spec)
        return report
    }

    /// The node's control file before pg_rewind changes it, for the report of what is
    /// discarded. A node that crashed first finishes its crash recovery (single-user mode,
    /// as pg_rewind would), so that the control file knows where its WAL ends. nil, with
    /// a warning, when that cannot be read: the rewind goes on, the report leaves it out.
    func controlDataBeforeRewind() async -> String? {
        do {
            var output = try await cluster.controlData(node)
            if RewoundWAL.needsCrashRecovery(controlData: output) {
                Console.progress("[\(node.name)] finishing its crash recovery (single-user mode) before pg_rewind")
                try await cluster.finishCrashRecovery(node)
                output = try await cluster.controlData(node)
            }
            return output
        } catch {
            Console.warn("\(node.name): cannot tell where its WAL ends, the report will not say what is discarded: \(error.message)")
            return nil
        }
    }
}
