import Foundation

/// `pgcluster switchover`: a planned change of primary with nothing lost. The old
/// primary shuts down cleanly (its WAL senders ship everything, up to the shutdown
/// checkpoint), the candidate is promoted once it has that checkpoint, and the old
/// primary starts again as a standby of the new one — no rewind needed.
public struct Switchover: Sendable {
    public let cluster: any ServerControl
    public let credentials: Credentials
    public let ops: ServerOps
    public var candidate: String?

    public init(cluster: any ServerControl, credentials: Credentials, candidate: String?) {
        self.cluster = cluster
        self.credentials = credentials
        self.ops = ServerOps(spec: cluster.spec, credentials: credentials, templates: cluster.renderer.templates)
        self.candidate = candidate
    }

    var spec: ClusterSpec { cluster.spec }

    public struct Report: Sendable, Encodable {
        public var from: String
        public var to: String
        public var timeline: Int?
        public var shutdownCheckpoint: String
        public var following: [String]
        public var needsRejoin: [String]
        public var synchronous: String
        /// Why the cluster cannot commit under its mode afterwards; not empty means exit 1.
        public var problems: [String]
        public var steps: [StepTimer.Step]
        public var totalSeconds: Double
        /// Hooks that failed (the switchover stands).
        public var warnings: [String] = []

        public var text: String {
            var lines = ["switchover done in \(String(format: "%.3f", totalSeconds)) s: \(to) is the primary on timeline \(timeline.map(String.init) ?? "?")"]
            lines.append(
                "old primary \(from) stopped cleanly at \(shutdownCheckpoint)"
                    + (following.contains(from) ? " and follows \(to)" : "; it does not follow \(to)"))
            lines.append("following \(to): \(following.isEmpty ? "none" : following.joined(separator: ", "))")
            lines.append("synchronous_standby_names = '\(synchronous)'")
            if !needsRejoin.isEmpty { lines.append("needs rejoin: \(needsRejoin.joined(separator: ", "))") }
            lines.append("steps:")
            lines += steps.map(\.line)
            lines += warnings.map { "warning: " + $0 }
            lines += problems.map { "not done: " + $0 }
            return lines.joined(separator: "\n")
        }
    }

    /// Its steps on one server share a connection (``ServerSessions``).
    public func run() async throws(ClusterError) -> Report {
        try await ServerSessions.keep { () async throws(ClusterError) -> Report in try await steps() }
    }

    func steps() async throws(ClusterError) -> Report {
        if let candidate, spec.node(named: candidate) == nil {
            throw ClusterError(
                "--candidate \(candidate): no such node (nodes: \(spec.nodes.map(\.name).joined(separator: ", ")))",
                exitCode: .usage)
        }
        var timer = StepTimer(announce: false)
        let observations = await Observer(credentials: credentials).observeAll(spec.nodes)
        let primaryObservation = try PrimaryLookup.find(observations)
        let standbys = observations.filter(\.isStandby)
        let chosen = try PrimaryRules.switchoverCandidate(primary: primaryObservation, standbys: standbys, named: candidate)
        let primary = primaryObservation.node
        let target = chosen.node
        let remembered = try await ClusterRecord.synchronous(spec: spec)
        timer.lap("observe; \(target.name) takes over from \(primary.name)")
        // With `backup:` the candidate is promoted without asking the archive (below).
        let archive = ArchivedTimelineCheck(spec: spec, control: cluster)
        async let archived = archive.timelines()

        // A checkpoint now leaves the shutdown checkpoint little to write; it runs on the
        // old primary while the candidate is made ready (below), which touches other servers.
        async let checkpointed = outcome { () async throws(ClusterError) in try await ops.checkpoint(primary) }

        // The candidate is made ready while the old primary still runs, so that nothing is
        // left between its promotion and its first acknowledged commit. Its synchronous names
        // go in first (recorded as the intent, then set): not one commit on the new primary
        // is acknowledged outside the remembered mode. Its slots for every node that will
        // follow it reserve WAL from now on.
        let others = standbys.map(\.node).filter { $0 != target }
        let followers = others + [primary]
        let listed = (remembered.standbys ?? followers.map(\.name)).filter { $0 != target.name }
        let newSync = FailoverDecision.newSynchronous(
            mode: remembered.synchronousMode, remaining: listed, durability: spec.watch.durability,
            others: spec.nodes.map(\.name).filter { $0 != target.name })
        // A replay paused or delayed on the candidate would hold the switchover (the old
        // primary stopped) until it gives up: resumed first, as a failover does.
        try await ops.prepareReplay(chosen)
        await ops.resumeReplay(standbys, toFollow: target)
        var intent = QuorumChange(
            credentials: credentials, primary: target, mode: newSync.mode, standbys: newSync.standbys, intent: spec)
        intent.promotesTo = (chosen.timeline ?? 1) + 1
        try await intent.set()
        try await ops.ensureSlots(on: target, for: followers)
        // When the old primary stops, the candidate's WAL receiver ends and PostgreSQL asks
        // the archive at once; the promotion would wait for those archive-gets.
        try await ops.archiveOff(target)
        // The other standbys stream through the candidate from now on when the old primary's
        // commits do not need them: on the promotion they follow it onto the new timeline by
        // themselves, and acknowledge its first commits.
        let early = PrimaryRules.cascadeBeforeStop(
            mode: remembered.synchronousMode, listed: remembered.standbys, candidate: target.name)
        // (Without the archive too: at the promotion they switch timelines, which would ask it.)
        let cascaded =
            early
            ? await parallel(others) { node throws(ClusterError) in
                try await ops.archiveOff(node)
                try await ops.rePoint(node, to: target)
            } : []
        let throughCandidate = cascaded.filter { $0.1 == nil }.map(\.0)
        // Before the promotion, a step that fails leaves the old primary the primary.
        let undo = { () async in
            await putBack(throughCandidate, to: primary, archiveOn: [target] + others)
            // Nothing was promoted: the intent is taken back (a primary left in place with a
            // promotion recorded as intended would count as deposed).
            do throws(ClusterError) {
                try await ClusterRecord.dropPending(spec: spec, promoting: target.name, to: intent.promotesTo)
            } catch {
                Console.warn("the switchover's intent could not be taken back: \(error.message)")
            }
        }
        if let error = await checkpointed.error {
            await undo()
            throw error
        }
        timer.lap(
            "checkpoint on \(primary.name); synchronous_standby_names and slots on \(target.name)"
                + (throughCandidate.isEmpty ? "" : "; \(throughCandidate.count) standbys stream through it"))
        TestInterruption.point("switchover-ready")

        let checkpoint: LSN
        do throws(ClusterError) {
            try await HeldLocks.verify(before: "stopping \(primary.name) for the switchover")
            let controlData = try await cluster.stopForSwitchover(primary)
            timer.lap("stop \(primary.name) cleanly")
            TestInterruption.point("switchover-stop")
            checkpoint = try await shutdownCheckpoint(primary, controlData: controlData)
        } catch {
            await undo()
            throw error
        }

        // On one connection: a handshake (with TLS) every few milliseconds would cost more than the query.
        let replayed = try? await ops.poll(target, "SELECT pg_last_wal_replay_lsn()::text", timeout: 30) { row in
            row.scalar.flatMap(LSN.init).map { $0 > checkpoint } ?? false
        }
        if replayed == nil {
            // Nothing was promoted: the old primary is still the only one; bring it back.
            try? await cluster.start(primary)
            await undo()
            throw ClusterError(
                "timed out after 30 s waiting until \(target.name) replayed \(primary.name)'s shutdown checkpoint \(checkpoint); "
                    + "\(primary.name) was started again as the primary, nothing changed")
        }
        timer.lap("\(target.name) has the shutdown checkpoint \(checkpoint)")

        // The candidate has everything the old primary wrote: it takes over. Meanwhile the
        // old primary, stopped, is set to follow it (files only; with compose a container).
        if spec.backup != nil {
            do throws(ClusterError) {
                if try await archive.learn(await archived, candidate: target, timeline: chosen.timeline ?? 1) {
                    timer.lap("\(target.name) given the archive's newer timeline history")
                }
            } catch {
                try? await cluster.start(primary)
                await undo()
                throw error
            }
        }
        try await HeldLocks.verify(before: "promoting \(target.name)")
        // The old primary starts as a standby of the candidate now, beside the promotion: it
        // streams through the candidate until then (as the cascaded standbys do) and follows
        // it onto the new timeline by itself. (Without restore_command: it gets it back once
        // it streams.)
        async let started = outcome { () async throws(ClusterError) in try await cluster.startFollowing(primary, upstream: target) }
        do throws(ClusterError) {
            try await ops.promote(target)
        } catch {
            // The old primary stopped cleanly and starts as a standby; nothing was lost, and
            // no node takes writes: a failover chooses among the standbys.
            var failure = error
            failure.details.append(
                "no primary now: \(primary.name) stopped cleanly and restarts as a standby of \(target.name), which was not promoted; "
                    + "nothing was lost: run `pgcluster failover`")
            throw failure
        }
        timer.lap("promote \(target.name); \(primary.name) starts as its standby meanwhile")
        TestInterruption.point("switchover-promote")

        // Writes go on now.
        async let promotedTimeline = Observer(credentials: credentials).observe(target).timeline
        let pointed = await parallel(others.filter { !throughCandidate.contains($0) }) { node throws(ClusterError) in
            try await ops.archiveOff(node)
            try await ops.rePoint(node, to: target)
        }
        try? await ops.dropSlot(on: target, for: target)
        let timeline = await promotedTimeline
        var problems: [String] = []
        var ok = throughCandidate + pointed.filter { $0.1 == nil }.map(\.0)
        if let error = await started.error {
            // Stopped, it reads the archive again from its next start (`rejoin`).
            try? await cluster.archiveWhileStopped(primary, on: true)
            problems.append(
                "\(primary.name) (stopped cleanly) did not start as a standby of \(target.name): \(error.message); "
                    + "bring it back with: pgcluster rejoin \(primary.name)")
        } else {
            ok.append(primary)
        }
        timer.lap("start \(primary.name) as a standby" + (pointed.isEmpty ? "" : "; re-point \(pointed.count) standbys"))

        let lagging = await ops.confirmStreaming(ok, from: target, timeline: timeline, timeout: 30)
        // Every node this switchover took off the archive reads it again.
        await ops.archiveOn([target] + others + (ok.contains(primary) ? [primary] : []))
        timer.lap("all follow \(target.name) on timeline \(timeline.map(String.init) ?? "?")")

        let needsRejoin = followers.filter { !ok.contains($0) || lagging.contains($0) }.map(\.name)
        let following = ok.filter { !lagging.contains($0) }.map(\.name)
        let settlement = try await SynchronousSettlement.settle(
            spec: spec, credentials: credentials, primary: target, following: following, remembered: remembered,
            alreadySet: (newSync.mode, newSync.standbys), down: needsRejoin)
        try await ClusterRecord.savePrimary(
            spec: spec, primary: target.name, applied: (settlement.mode, settlement.standbys), timeline: timeline)
        var report = Report(
            from: primary.name, to: target.name, timeline: timeline, shutdownCheckpoint: checkpoint.description,
            following: following, needsRejoin: needsRejoin,
            synchronous: settlement.mode.standbyNames(settlement.standbys), problems: problems + settlement.problems,
            steps: timer.steps, totalSeconds: timer.total)
        try await Stores.of(spec).appendHistory(
            HistoryEvent(
                kind: "switchover", from: primary.name, to: target.name, timeline: timeline, lsn: checkpoint,
                durationSeconds: report.totalSeconds, rePointed: report.following, needsRejoin: needsRejoin,
                steps: report.steps))
        report.warnings = await Hooks.run(
            RoleChange(cluster: spec.name, newPrimary: target.name, oldPrimary: primary.name, timeline: timeline, reason: .switchover),
            spec: spec)
        return report
    }

    /// After a switchover that stopped before its promotion: the standbys it had pointed at
    /// the candidate stream from the old primary again, and the nodes it took off the WAL
    /// archive read it again (best effort; what fails is said).
    func putBack(_ standbys: [NodeSpec], to primary: NodeSpec, archiveOn nodes: [NodeSpec]) async {
        let failed = await parallel(standbys) { node throws(ClusterError) in try await ops.rePoint(node, to: primary) }
        for case let (node, error?) in failed {
            Console.warn("\(node.name) still streams through the candidate, not from \(primary.name): \(error.message)")
        }
        await ops.archiveOn(nodes)
    }

    /// The stopped server's last checkpoint, from pg_controldata (`controlData`, when the
    /// stop read it along).
    func shutdownCheckpoint(_ node: NodeSpec, controlData: String?) async throws(ClusterError) -> LSN {
        let output: String
        if let controlData { output = controlData } else { output = try await cluster.controlData(node) }
        let state = ControlData.value("Database cluster state", in: output)
        guard state == "shut down", let text = ControlData.value("Latest checkpoint location", in: output),
            let lsn = LSN(text)
        else {
            throw ClusterError("\(node.name) did not shut down cleanly (state: \(state ?? "unknown")); use failover instead")
        }
        return lsn
    }
}

/// Reads fields of pg_controldata's output.
public enum ControlData {
    public static func value(_ field: String, in output: String) -> String? {
        for line in output.split(separator: "\n") where line.hasPrefix(field + ":") {
            return line.dropFirst(field.count + 1).trimmingCharacters(in: .whitespaces)
        }
        return nil
    }
}
