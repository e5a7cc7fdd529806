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
            lines.append("old primary \(from) stopped cleanly at \(shutdownCheckpoint) and follows \(to)")
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

        try await ops.checkpoint(primary)
        timer.lap("checkpoint on \(primary.name)")
        try await HeldLocks.verify(before: "stopping \(primary.name) for the switchover")
        try await cluster.stopForSwitchover(primary)
        timer.lap("stop \(primary.name) cleanly")
        TestInterruption.point("switchover-stop")
        let checkpoint = try await shutdownCheckpoint(primary)

        // On one connection: a handshake (with TLS) every few milliseconds would cost more than the query.
        let replayed = try? await ops.poll(target, "SELECT pg_last_wal_replay_lsn()::text", timeout: 30) { row in
            row.scalar.flatMap(LSN.init).map { $0 > checkpoint } ?? false
        }
        if replayed == nil {
            // Nothing was promoted: the old primary is still the only one; bring it back.
            try? await cluster.start(primary)
            throw ClusterError(
                "timed out after 30 s waiting until \(target.name) replayed \(primary.name)'s shutdown checkpoint \(checkpoint); "
                    + "\(primary.name) was started again as the primary, nothing changed")
        }
        timer.lap("\(target.name) has the shutdown checkpoint \(checkpoint)")

        // The candidate has everything the old primary wrote: it takes over. Meanwhile the
        // old primary, stopped, is set to follow it (files only; with compose a container).
        try await HeldLocks.verify(before: "promoting \(target.name)")
        async let followed: ClusterError? = {
            do throws(ClusterError) {
                try await cluster.follow(primary, upstream: target)
                return nil
            } catch {
                return error
            }
        }()
        try await ops.promote(target)
        let timeline = await Observer(credentials: credentials).observe(target).timeline
        timer.lap("promote \(target.name); \(primary.name) set to follow it meanwhile")

        let others = standbys.map(\.node).filter { $0 != target }
        let followers = others + [primary]
        try await ops.ensureSlots(on: target, for: followers)
        try await ops.dropSlot(on: target, for: target)
        let listed = (remembered.standbys ?? followers.map(\.name)).filter { $0 != target.name }
        let newSync = FailoverDecision.newSynchronous(
            mode: remembered.synchronousMode, remaining: listed, durability: spec.watch.durability,
            others: spec.nodes.map(\.name).filter { $0 != target.name })
        var intent = QuorumChange(
            credentials: credentials, primary: target, mode: newSync.mode, standbys: newSync.standbys, intent: spec)
        intent.promotesTo = (timeline ?? chosen.timeline ?? 1)
        try await intent.set()
        timer.lap("slots and synchronous_standby_names on \(target.name)")

        let pointed = await parallel(others) { node throws(ClusterError) in try await ops.rePoint(node, to: target) }
        if let error = await followed {
            throw ClusterError(
                "\(target.name) is the primary now, but \(primary.name) (stopped) could not be set to follow it: \(error.message)",
                details: ["bring it back as a standby with: pgcluster rejoin \(primary.name)"])
        }
        try await cluster.start(primary)
        timer.lap("re-point \(others.count) standbys; start \(primary.name) as a standby")

        let ok = pointed.filter { $0.1 == nil }.map(\.0) + [primary]
        let lagging = await ops.confirmStreaming(ok, from: target, timeline: timeline, timeout: 30)
        timer.lap("all follow \(target.name) on timeline \(timeline.map(String.init) ?? "?")")

        let needsRejoin = pointed.filter { $0.1 != nil }.map(\.0.name) + lagging.map(\.name)
        let following = ok.filter { !lagging.contains($0) }.map(\.name)
        let settlement = try await SynchronousSettlement.settle(
            spec: spec, credentials: credentials, primary: target, following: following, remembered: remembered,
            alreadySet: (newSync.mode, newSync.standbys), down: needsRejoin)
        try await ClusterRecord.savePrimary(
            spec: spec, primary: target.name, applied: (settlement.mode, settlement.standbys), timeline: timeline)
        var report = Report(
            from: primary.name, to: target.name, timeline: timeline, shutdownCheckpoint: checkpoint.description,
            following: following, needsRejoin: needsRejoin,
            synchronous: settlement.mode.standbyNames(settlement.standbys), problems: settlement.problems,
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

    /// The stopped server's last checkpoint, from pg_controldata.
    func shutdownCheckpoint(_ node: NodeSpec) async throws(ClusterError) -> LSN {
        let output = try await cluster.controlData(node)
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
