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
    /// Rejoin a node that still accepts writes as a primary beside another primary,
    /// discarding what it took since they parted.
    public var force: Bool
    /// Recorded in history as who rejoined: nil for a person's command, `watch`.
    public var by: String?

    public init(cluster: any ServerControl, credentials: Credentials, node: NodeSpec, reclone: Bool, force: Bool = false) {
        self.cluster = cluster
        self.credentials = credentials
        self.ops = ServerOps(spec: cluster.spec, credentials: credentials, templates: cluster.renderer.templates)
        self.node = node
        self.reclone = reclone
        self.force = force
    }

    var spec: ClusterSpec { cluster.spec }

    public struct Report: Sendable, Encodable {
        public var node: String
        public var primary: String
        public var method: String
        public var timeline: Int?
        public var synchronous: String
        /// Why the cluster cannot commit under its mode afterwards; not empty means exit 1.
        public var problems: [String]
        /// The WAL pg_rewind discarded; nil when nothing was rewound (or it cannot be told).
        public var rewound: RewoundWAL?
        public var steps: [StepTimer.Step]
        public var totalSeconds: Double

        public var text: String {
            var lines = ["\(node) rejoined as a standby of \(primary) (\(method)) in \(String(format: "%.3f", totalSeconds)) s, streaming on timeline \(timeline.map(String.init) ?? "?")"]
            if let rewound { lines.append(rewound.text(node: node, primary: primary)) }
            lines.append("synchronous_standby_names = '\(synchronous)'")
            lines += problems.map { "not done: " + $0 }
            return lines.joined(separator: "\n")
        }
    }

    /// The decision is ``PrimaryRules/refuseRejoin(_:observations:force:)``; a forced one is said.
    public static func refuseLivePrimary(_ node: NodeSpec, observations: [NodeObservation], force: Bool) throws(ClusterError) {
        if let warning = try PrimaryRules.refuseRejoin(node, observations: observations, force: force) { Console.warn(warning) }
    }

    /// A refused rejoin fences: a node refused because it is a primary beside another one
    /// that holds newer data (``PrimaryRules``) is stopped, so that it never serves as a
    /// second read-write primary while the operator decides. Returns the refusal to throw,
    /// saying what was done.
    func fenceRefused(_ refusal: ClusterError, observations: [NodeObservation]) async -> ClusterError {
        var refusal = refusal
        let primaries = observations.filter(\.isPrimary)
        guard primaries.count > 1, primaries.contains(where: { $0.node.name == node.name }) else { return refusal }
        guard let keep = PrimaryRules.newest(primaries), keep.node.name != node.name else {
            let other = primaries.first { $0.node.name != node.name }!.node.name
            refusal.details.append(
                PrimaryRules.newest(primaries) == nil
                    ? "\(node.name) and \(other) are level (one timeline, one position): nothing was stopped; stop the wrong one yourself"
                    : "\(node.name) holds the newer timeline: it is the one to keep, so it was left running; "
                        + "the node to rejoin is the other one: pgcluster rejoin \(other)")
            return refusal
        }
        do throws(ClusterError) {
            try await cluster.stop(node, mode: .fast)
            refusal.details.insert(
                "\(node.name) was STOPPED, so that it does not serve beside \(keep.node.name) (the newer timeline) meanwhile", at: 0)
        } catch {
            let fenced = await cluster.fence(node)
            refusal.details.insert(
                fenced.map { "\(node.name) could not be stopped cleanly (\(error.message)); fenced: \($0)" }
                    ?? "\(node.name) could NOT be stopped (\(error.message)): it still serves beside \(keep.node.name); stop it yourself",
                at: 0)
        }
        return refusal
    }

    public func run() async throws(ClusterError) -> Report {
        var timer = StepTimer()
        let observations = await Observer(credentials: credentials).observeAll(spec.nodes)
        do {
            try Self.refuseLivePrimary(node, observations: observations, force: force)
        } catch {
            throw await fenceRefused(error, observations: observations)
        }
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
            // Streaming already: what an interrupted step may have left undone is finished
            // here. A failover or switchover may have left it without the archive; a rejoin
            // stopped after the node streamed, out of synchronous_standby_names (under
            // durability strict, the next loss of the listed standby would then hang every
            // commit though this one streams).
            var finished: [String] = []
            if spec.backup != nil, own.restoreCommand == "" {
                try await ops.archiveOn(node)
                finished.append("its restore_command given back")
            }
            let settlement = try await SynchronousSettlement.relist(
                spec: spec, credentials: credentials, primary: primary, timeline: primaryObservation.timeline, onlyWhenChanged: true)
            if settlement.changed { finished.append("synchronous_standby_names set again") }
            guard !finished.isEmpty else {
                throw ClusterError.refused("\(node.name) already streams from \(primary.name); nothing to do (use --reclone to copy it afresh)")
            }
            timer.lap("\(node.name) already streams from \(primary.name); " + finished.joined(separator: ", "))
            return Report(
                node: node.name, primary: primary.name, method: "it already streamed; " + finished.joined(separator: ", "),
                timeline: own.timeline, synchronous: settlement.mode.standbyNames(settlement.standbys), problems: settlement.problems,
                rewound: nil, steps: timer.steps, totalSeconds: timer.total)
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

        try await HeldLocks.verify(before: "rewinding \(node.name)")
        var method = RejoinMethod.rewind
        var rewound: RewoundWAL?
        let hasData = await cluster.hasData(node)
        if reclone || !hasData {
            method = .clone
        } else if let step = await cluster.unfinishedStep(node) {
            Console.progress(
                step == .clone
                    ? "[\(node.name)] an earlier copy of it did not finish: it is copied afresh"
                    : "[\(node.name)] an earlier pg_rewind of it did not finish: its data is copied afresh, never rewound again")
            method = step.rejoinMethod
        } else {
            // pg_rewind reads the source's timeline from its control file, which a freshly
            // promoted primary updates only at its first checkpoint: without this, it can
            // wrongly find "no rewind required".
            try await ops.checkpoint(primary)
            let endOfWAL = await controlDataBeforeRewind()
            let commits = await commitsPastFork(controlData: endOfWAL, primary: primaryObservation)
            do {
                let output = try await cluster.rewind(node, from: primary, credentials: credentials)
                if output.contains("no rewind required") { method = .nothingToRewind }
                rewound = endOfWAL.flatMap { RewoundWAL.parse(controlData: $0, rewindOutput: output) }
                // Counted from the fork the new primary's history names; pg_rewind's own must agree.
                if let commits, commits.from == rewound?.from { rewound?.counts = commits.counts }
                timer.lap("pg_rewind \(node.name) from \(primary.name)")
            } catch {
                // Killed because the watcher must fail over: stop here, never copy instead.
                try Cancelled.check(before: "copying \(node.name) afresh")
                Console.warn("pg_rewind failed, copying \(node.name) afresh with pg_basebackup: \(error.description)")
                method = .cloneAfterFailedRewind
            }
        }
        if method.clones {
            try await cluster.reclone(node, from: primary, credentials: credentials)
            timer.lap("pg_basebackup \(node.name) from \(primary.name)")
        }
        let withoutArchive = try await cluster.startStandby(node)
        timer.lap("start \(node.name) as a standby" + (withoutArchive ? " (without restore_command: the archive does not answer)" : ""))

        let timeline = primaryObservation.timeline
        let lagging = await ops.confirmStreaming([node], from: primary, timeline: timeline, timeout: 60)
        if withoutArchive { await ops.archiveOn([node]) }
        guard lagging.isEmpty else {
            throw ClusterError(
                "\(node.name) started but does not stream from \(primary.name) after 60 s",
                details: await cluster.logTail(node, lines: 10).map { "log | " + $0 } + ["try: pgcluster rejoin \(node.name) --reclone"])
        }
        timer.lap("\(node.name) streams from \(primary.name)")
        TestInterruption.point("rejoin-streams")

        // Listed again in synchronous_standby_names, per the remembered mode, with every
        // standby that streams from the primary now, and no other.
        let settlement = try await SynchronousSettlement.relist(
            spec: spec, credentials: credentials, primary: primary, timeline: timeline, onlyWhenChanged: false)
        timer.lap("synchronous_standby_names on \(primary.name)")

        let report = Report(
            node: node.name, primary: primary.name, method: method.rawValue, timeline: timeline,
            synchronous: settlement.mode.standbyNames(settlement.standbys), problems: settlement.problems,
            rewound: rewound, steps: timer.steps, totalSeconds: timer.total)
        try await Stores.of(spec).appendHistory(
            HistoryEvent(
                kind: "rejoin", from: node.name, to: primary.name, timeline: timeline, lsn: primaryObservation.currentLsn,
                durationSeconds: report.totalSeconds, rePointed: [node.name], needsRejoin: [], steps: report.steps, by: by))
        return report
    }

    /// The transactions the node committed past the fork of the primary's timeline, which a
    /// rewind discards: COMMIT records counted by pg_waldump in the node's own WAL before
    /// pg_rewind removes it, from the fork the primary's timeline history names to the
    /// node's last record. nil (the report then cannot say) when the node is on the
    /// primary's timeline or off its history, or pg_waldump cannot read the range.
    func commitsPastFork(controlData: String?, primary: NodeObservation) async -> (from: LSN, counts: PGWaldump.Counts)? {
        guard let controlData, let end = RewoundWAL.endOfWAL(controlData: controlData),
            let timeline = ControlData.value("Latest checkpoint's TimeLineID", in: controlData).flatMap({ Int($0) }),
            let primaryTimeline = primary.timeline, timeline != primaryTimeline
        else { return nil }
        do throws(ClusterError) {
            guard let fork = try await ops.timelineHistory(primary.node, timeline: primaryTimeline).end(of: timeline) else { return nil }
            guard fork < end else { return (fork, .zero) }
            let result = try await cluster.transactionRecords(node, timeline: timeline, from: fork, to: end)
            guard let counts = PGWaldump.counts(status: result.status, output: result.output, end: end) else {
                Console.warn(
                    "\(node.name): cannot count the transactions its rewind discards: pg_waldump exit \(result.status): "
                        + (result.output.split(whereSeparator: \.isNewline).last.map(String.init) ?? "no output"))
                return nil
            }
            return (fork, counts)
        } catch {
            Console.warn("\(node.name): cannot count the transactions its rewind discards: \(error.message)")
            return nil
        }
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
