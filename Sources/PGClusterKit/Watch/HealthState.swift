import Foundation

/// What `watch`'s health endpoints answer from: the watcher writes it after each probe, the
/// HTTP servers read it (README.md, "Health endpoints and HAProxy"; docs/ARCHITECTURE.md, "pgcluster watch"). One lock, held only to
/// copy a value in or out, so a slow client never holds up the loop.
public final class HealthState: @unchecked Sendable {
    /// One tick's facts, as the watcher saw them.
    public struct Tick: Sendable {
        public var observations: [NodeObservation] = []
        /// When the loop last finished a probe; nil before the first.
        public var at: ContinuousClock.Instant?
        /// Seconds the last probe of every node took.
        public var probeSeconds: Double = 0
        /// `pgcluster pause` is in force.
        public var paused = false
        /// This watcher leads (with etcd: holds the leader key's lease); one that does not
        /// serves from its own probes.
        public var leader = false
        /// Failovers this watcher carried out since it started.
        public var failovers = 0
        /// Seconds the last of them took, from the decision to the record; nil before the first.
        public var lastFailoverSeconds: Double?
    }

    private let lock = NSLock()
    private var tick = Tick()
    private var followed: ClusterSpec
    /// Each spec the watcher reloads, for ``HealthServer`` (one reader).
    public let reloads: AsyncStream<ClusterSpec>
    private let reloaded: AsyncStream<ClusterSpec>.Continuation

    public init(spec: ClusterSpec) {
        followed = spec
        (reloads, reloaded) = AsyncStream.makeStream(of: ClusterSpec.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// The spec in use: the watcher's, also after a reload.
    public var spec: ClusterSpec { lock.withLock { followed } }

    /// The watcher reloaded its spec: the endpoints answer by it from now on (node i on
    /// port + i of the new order, the new interval for /liveness, the new nodes in
    /// /metrics), the ports moved by ``HealthServer``.
    public func follow(_ spec: ClusterSpec) {
        lock.withLock { followed = spec }
        reloaded.yield(spec)
    }

    public var current: Tick {
        lock.lock()
        defer { lock.unlock() }
        return tick
    }

    /// After a probe: what every node said, and the watcher's own facts.
    public func observed(_ observations: [NodeObservation], probeSeconds: Double, paused: Bool?, leader: Bool) {
        update {
            $0.observations = observations
            $0.probeSeconds = probeSeconds
            if let paused { $0.paused = paused }
            $0.leader = leader
            $0.at = .now
        }
    }

    /// A tick ended without a probe (the store could not be read): the loop is alive.
    public func ticked() { update { $0.at = .now } }

    public func failedOver(seconds: Double) {
        update {
            $0.failovers += 1
            $0.lastFailoverSeconds = seconds
        }
    }

    private func update(_ change: (inout Tick) -> Void) {
        lock.lock()
        defer { lock.unlock() }
        change(&tick)
    }

    /// The pure view the endpoints decide on (``HealthCheck``).
    public func snapshot(now: ContinuousClock.Instant = .now) -> (HealthCheck.Snapshot, Tick) {
        let tick = current
        let since = tick.at.map { at -> Double in
            let d = now - at
            return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
        }
        return (HealthCheck.Snapshot(observations: tick.observations, sinceLastTick: since, interval: spec.watch.interval), tick)
    }

    /// `/cluster`: the `status --json` document of this tick, with `"leader"`.
    public func clusterDocument(_ tick: Tick) -> Data {
        var report = StatusReport.make(spec: spec, observations: tick.observations)
        report.paused = tick.paused
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(ClusterDocument(report: report, leader: tick.leader))) ?? Data("{}".utf8)
    }

    struct ClusterDocument: Encodable {
        var report: StatusReport
        var leader: Bool
        enum Keys: String, CodingKey { case leader }

        func encode(to encoder: any Encoder) throws {
            try report.encode(to: encoder)
            var c = encoder.container(keyedBy: Keys.self)
            try c.encode(leader, forKey: .leader)
        }
    }
}
