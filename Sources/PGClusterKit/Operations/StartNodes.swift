import Foundation

/// `pgcluster start [NODE...]`: starts stopped nodes without ever making a second primary.
///
/// The live servers decide who is primary; the recorded state only remembers. A node that
/// is not the current primary starts as a standby of it: while a primary answers, every
/// other node is set to follow it before it starts, and must stream from it, or it is stopped
/// again and `rejoin` is named (a deposed primary whose WAL went past the fork cannot follow).
/// With no primary up, only the recorded primary starts as one, and only when no other node
/// is on a newer timeline; any other node starts as a standby of the recorded primary, which
/// it cannot take writes as.
public struct StartNodes: Sendable {
    public let control: any ServerControl
    public let credentials: Credentials
    public let ops: ServerOps
    /// Seconds a node set to follow a live primary has to stream from it.
    public var followTimeout: Double = 20

    public init(control: any ServerControl, credentials: Credentials) {
        self.control = control
        self.credentials = credentials
        self.ops = ServerOps(spec: control.spec, credentials: credentials, templates: control.renderer.templates)
    }

    var spec: ClusterSpec { control.spec }

    /// Starts `nodes` (the recorded primary first); returns one line per node for the operator.
    public func run(_ nodes: [NodeSpec]) async throws(ClusterError) -> [String] {
        try await control.checkMajorVersion(nodes)
        let state = try await ClusterRecord.load(spec: spec)
        let recorded = state?.primary ?? spec.primary.name
        let record = state.map(PrimaryRules.Record.init) ?? PrimaryRules.Record(primary: recorded, timeline: nil)
        var observations = await Observer(credentials: credentials).observeAll(spec.nodes)
        var primary = try PrimaryRules.livePrimary(observations, record: record)
        var lines: [String] = []
        let ordered = nodes.filter { $0.name == recorded } + nodes.filter { $0.name != recorded }
        var failures: [ClusterError] = []
        for node in ordered {
            do throws(ClusterError) {
                if await control.isRunning(node) {
                    lines.append("\(node.name) already running")
                    continue
                }
                guard await control.hasData(node) else {
                    throw ClusterError(
                        "\(node.name) has no data",
                        details: ["create the cluster with pgcluster init, or copy the node afresh: pgcluster rejoin \(node.name) --reclone"])
                }
                // A partial copy never starts; one stopped mid-rewind, started as a standby of a
                // primary other than the rewind's source, could replay that primary's timeline
                // over pages copied from another: rejoin copies either afresh.
                if let step = await control.unfinishedStep(node) {
                    throw ClusterError(
                        step.startRefusal(node.name), exitCode: .refused, details: ["copy it afresh: pgcluster rejoin \(node.name)"])
                }
                if let live = primary {
                    try await startFollowing(node, primary: live)
                    lines.append("\(node.name) started as a standby of \(live.node.name)")
                } else if node.name == recorded {
                    try await refuseIfDeposed(node, observations: observations)
                    Console.progress("[\(node.name)] starting (the recorded primary)")
                    try await control.start(node)
                    observations = await Observer(credentials: credentials).observeAll(spec.nodes)
                    primary = try PrimaryRules.livePrimary(observations, record: record)
                    lines.append("\(node.name) started" + (primary?.node == node ? " as the primary" : ""))
                } else {
                    // No primary answers: this node waits as a standby of the recorded primary.
                    let upstream = spec.node(named: recorded) ?? spec.primary
                    Console.progress("[\(node.name)] starting as a standby of \(upstream.name) (not running now)")
                    try await control.follow(node, upstream: upstream)
                    try await control.start(node)
                    lines.append("\(node.name) started as a standby of \(upstream.name), which is not running: it streams once \(upstream.name) is up")
                }
            } catch {
                failures.append(error)
            }
        }
        // Standbys started beside the live primary are listed in its synchronous names again,
        // per the remembered mode, as rejoin does: a failover while they were away left them out.
        if let live = primary, lines.contains(where: { $0.contains("started as a standby of \(live.node.name)") }) {
            do throws(ClusterError) {
                if let said = try await relist(on: live) { lines.append(said) }
            } catch {
                failures.append(error)
            }
        }
        if var first = ClusterError.combined(failures) {
            if failures.contains(where: { $0.exitCode == .refused }) { first.exitCode = .refused }
            first.details.insert(contentsOf: lines.map { "done: " + $0 }, at: 0)
            throw first
        }
        return lines
    }

    /// Sets the stopped `node` to follow the live primary, starts it and waits until it
    /// streams; one that cannot is stopped again and refused, naming `rejoin`.
    func startFollowing(_ node: NodeSpec, primary: NodeObservation) async throws(ClusterError) {
        Console.progress("[\(node.name)] starting as a standby of \(primary.node.name), the primary")
        try await ops.ensureSlots(on: primary.node, for: [node])
        try await control.follow(node, upstream: primary.node)
        let withoutArchive = try await control.startStandby(node)
        // A deposed primary says at once in its log that it cannot follow; stop waiting then.
        let deadline = ContinuousClock.now + .seconds(followTimeout)
        var streams = false
        var refusedByServer = false
        while !streams && !refusedByServer && ContinuousClock.now < deadline {
            streams = await ops.confirmStreaming([node], from: primary.node, timeline: primary.timeline, timeout: 0.5).isEmpty
            if !streams {
                refusedByServer = await control.logTail(node, lines: 20).contains { line in
                    Self.cannotFollow.contains { line.contains($0) }
                }
            }
        }
        if withoutArchive && streams { await ops.archiveOn([node]) }
        guard streams else {
            let log = await control.logTail(node, lines: 5)
            try? await control.stop(node, mode: .fast)
            if withoutArchive { try? await control.archiveWhileStopped(node, on: true) }
            throw ClusterError(
                "\(node.name) cannot follow \(primary.node.name) (timeline \(primary.timeline.map(String.init) ?? "?")): "
                    + "its WAL goes past the point where that timeline began, as a primary deposed by a failover does. "
                    + "It was stopped again, never having taken writes",
                exitCode: .refused,
                details: ["bring it back with: pgcluster rejoin \(node.name)"] + log.map { "log | " + $0 })
        }
    }

    /// The live primary's synchronous_standby_names over the standbys that stream from it
    /// now, per the remembered mode (``SynchronousSettlement``); set (and recorded) only when
    /// it differs from what the primary has. Returns what was set.
    func relist(on primary: NodeObservation) async throws(ClusterError) -> String? {
        let settlement = try await SynchronousSettlement.relist(
            spec: spec, credentials: credentials, primary: primary.node, timeline: primary.timeline, onlyWhenChanged: true)
        guard settlement.changed else { return nil }
        return "synchronous_standby_names on \(primary.node.name) = '\(settlement.mode.standbyNames(settlement.standbys))'"
    }

    /// What a standby's log says when its WAL has gone past the fork of the timeline it is asked to follow.
    static let cannotFollow = ["is not a child of this server's history", "forked off current database system timeline"]

    /// The recorded primary may have been deposed by a failover that was not recorded: when
    /// another node is on a newer timeline, starting it as a primary would make two.
    func refuseIfDeposed(_ node: NodeSpec, observations: [NodeObservation]) async throws(ClusterError) {
        guard let own = await checkpointTimeline(node) else { return }
        var newest: (name: String, timeline: Int)?
        for other in spec.nodes where other != node {
            let running = observations.first { $0.node == other && $0.reachable }
            let timeline: Int?
            if let running {
                timeline = running.timeline
            } else {
                timeline = await control.isRunning(other) ? nil : await checkpointTimeline(other)
            }
            if let timeline, timeline > own, timeline > (newest?.timeline ?? 0) { newest = (other.name, timeline) }
        }
        if let newest {
            throw ClusterError.refused(
                "\(node.name) is on timeline \(own), but \(newest.name) is on timeline \(newest.timeline): \(node.name) "
                    + "was deposed by a failover, and starting it would make a second primary. "
                    + "Start \(newest.name) first (pgcluster start \(newest.name)), then: pgcluster rejoin \(node.name)")
        }
    }

    func checkpointTimeline(_ node: NodeSpec) async -> Int? {
        guard await control.hasData(node), let output = try? await control.controlData(node) else { return nil }
        return ControlData.value("Latest checkpoint's TimeLineID", in: output).flatMap { Int($0) }
    }
}
