import Foundation

/// The answers of `watch`'s health endpoints (README.md, "Health endpoints and HAProxy"; docs/ARCHITECTURE.md, "pgcluster watch"), as
/// pure functions of one tick's observations: node i's port answers for node i, 200 when
/// the path's condition holds, 503 when it does not, 404 for a path it does not know. The
/// paths and their meaning follow Patroni's REST API, so that HAProxy configurations written
/// for Patroni work unchanged; `Sources/PGClusterKit/Watch/HealthServer.swift` serves them.
public enum HealthCheck {
    /// A lag limit given as `?lag=`: bytes of WAL not yet replayed, or seconds of replay delay.
    public enum LagLimit: Sendable, Equatable {
        case bytes(UInt64)
        case seconds(Double)

        /// `16MB`, `1048576` (bytes), `64kB`, `1GB`; `5s`, `500ms`, `1min`, `1h`. Byte units are
        /// 1024-based as in PostgreSQL, and read in any case. Nil when it is none of these.
        public init?(parsing text: String) {
            let trimmed = text.trimmingCharacters(in: .whitespaces)
            let split = trimmed.firstIndex(where: { !$0.isNumber && $0 != "." }) ?? trimmed.endIndex
            guard let number = Double(trimmed[..<split]), number >= 0, number.isFinite else { return nil }
            let unit = trimmed[split...].trimmingCharacters(in: .whitespaces)
            let byteUnits: [String: Double] = ["": 1, "b": 1, "kb": 1024, "mb": 1_048_576, "gb": 1_073_741_824, "tb": 1_099_511_627_776]
            let timeUnits: [String: Double] = ["ms": 0.001, "s": 1, "min": 60, "h": 3600]
            if let factor = byteUnits[unit.lowercased()] {
                // Bytes are whole; `1.5MB` is allowed and rounded down.
                guard number * factor < 1.8e19 else { return nil }
                self = .bytes(UInt64(number * factor))
            } else if let factor = timeUnits[unit] {
                self = .seconds(number * factor)
            } else {
                return nil
            }
        }
    }

    /// What a request asks, once its path and query are read.
    public enum Route: Sendable, Equatable {
        /// `/primary`, `/master`, `/read-write`, `/leader` (and `/`, as Patroni does; a
        /// pgcluster cluster has no standby leader, so the leader is the primary).
        case primary
        /// `/replica[?lag=…]`.
        case replica(LagLimit?)
        /// `/read-only[?lag=…]`: the primary, or a replica within the limit.
        case readOnly(LagLimit?)
        /// `/synchronous`, `/sync`: a replica the primary counts as synchronous (`FIRST n`:
        /// sync_state `sync`); `/read-only-sync` also the primary.
        case synchronous(LagLimit?, orPrimary: Bool)
        /// `/quorum`: a replica among the quorum of `ANY n` (sync_state `quorum`);
        /// `/read-only-quorum` also the primary.
        case quorum(LagLimit?, orPrimary: Bool)
        /// `/asynchronous`, `/async[?lag=…]`: a replica no commit waits for.
        case asynchronous(LagLimit?)
        case health
        case liveness
        case readiness
        /// `/cluster`: the `status --json` document; always 200.
        case cluster
        /// `/metrics`: Prometheus text; always 200.
        case metrics
        /// A `?lag=` that is neither a size nor a duration: 400, with this reason.
        case badRequest(String)
        case notFound
    }

    /// Reads a request's path and query string (without the `?`).
    public static func route(path: String, query: String?) -> Route {
        var lag: LagLimit?
        for pair in (query ?? "").split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.first == "lag" else { continue }
            let value = parts.count > 1 ? String(parts[1]).removingPercentEncoding ?? "" : ""
            guard let limit = LagLimit(parsing: value) else {
                return .badRequest("lag=\(value) is not a size (16MB, 1048576) or a duration (5s, 500ms)")
            }
            lag = limit
        }
        switch path {
        case "/", "/primary", "/master", "/read-write", "/leader": return .primary
        case "/replica": return .replica(lag)
        case "/read-only": return .readOnly(lag)
        case "/synchronous", "/sync": return .synchronous(lag, orPrimary: false)
        case "/read-only-sync": return .synchronous(lag, orPrimary: true)
        case "/quorum": return .quorum(lag, orPrimary: false)
        case "/read-only-quorum": return .quorum(lag, orPrimary: true)
        case "/asynchronous", "/async": return .asynchronous(lag)
        case "/health": return .health
        case "/liveness": return .liveness
        case "/readiness": return .readiness
        case "/cluster": return .cluster
        case "/metrics": return .metrics
        default: return .notFound
        }
    }

    /// One tick as the endpoints see it.
    public struct Snapshot: Sendable, Equatable {
        /// Every node's observation, in spec order.
        public var observations: [NodeObservation]
        /// Seconds since the watcher's loop last finished a probe; nil before the first.
        public var sinceLastTick: Double?
        /// `watch.interval`.
        public var interval: Double

        public init(observations: [NodeObservation], sinceLastTick: Double?, interval: Double) {
            self.observations = observations
            self.sinceLastTick = sinceLastTick
            self.interval = interval
        }

        /// The primary that accepts the cluster's writes: of the nodes that answer read-write,
        /// the one on the newest timeline (``PrimaryRules``); nil when none answers, or when
        /// two are level and nothing tells them apart. A deposed primary that came back on an
        /// older timeline is never it, so HAProxy never sends writes there.
        public var primary: NodeObservation? {
            let live = observations.filter(\.isPrimary).filter { !PrimaryRules.isStale($0, among: observations) }
            return PrimaryRules.newest(live)
        }
    }

    /// The watcher's loop counts as alive while it finished a probe within this many intervals.
    public static let livenessIntervals = 3.0

    /// The status code of `route` on the port of node `name`: 200, 503, or 404 / 400.
    /// `/cluster` and `/metrics` are 200 here; their bodies are the server's job.
    public static func status(_ route: Route, node name: String, in snapshot: Snapshot) -> Int {
        switch route {
        case .notFound: return 404
        case .badRequest: return 400
        case .cluster, .metrics: return 200
        case .liveness:
            guard let since = snapshot.sinceLastTick else { return 503 }
            return since <= livenessIntervals * snapshot.interval ? 200 : 503
        default: break
        }
        guard let own = snapshot.observations.first(where: { $0.node.name == name }) else { return 404 }
        let isPrimary = snapshot.primary?.node.name == name
        let ok: Bool
        switch route {
        case .primary: ok = isPrimary
        case .replica(let lag): ok = isReplica(own, snapshot: snapshot, within: lag)
        case .readOnly(let lag): ok = isPrimary || isReplica(own, snapshot: snapshot, within: lag)
        case .synchronous(let lag, let orPrimary):
            ok = (orPrimary && isPrimary) || (isReplica(own, snapshot: snapshot, within: lag) && syncState(own, snapshot) == "sync")
        case .quorum(let lag, let orPrimary):
            ok = (orPrimary && isPrimary) || (isReplica(own, snapshot: snapshot, within: lag) && syncState(own, snapshot) == "quorum")
        case .asynchronous(let lag):
            ok = isReplica(own, snapshot: snapshot, within: lag) && !["sync", "quorum"].contains(syncState(own, snapshot) ?? "")
        case .health: ok = own.reachable
        case .readiness: ok = isPrimary || (own.isStandby && own.streaming)
        case .liveness, .cluster, .metrics, .badRequest, .notFound: ok = false
        }
        return ok ? 200 : 503
    }

    /// How the primary counts `own` toward commits: pg_stat_replication's sync_state (`sync`,
    /// `quorum`, `potential`, `async`); nil when it does not stream from the primary.
    static func syncState(_ own: NodeObservation, _ snapshot: Snapshot) -> String? {
        snapshot.primary?.replication.first { $0.applicationName == own.node.name }?.syncState
    }

    /// A standby streaming from the current primary (as both it and the primary say), with its
    /// replay within `limit`. Bytes: the primary's write position minus the standby's replay
    /// position (Patroni's rule). Seconds: ``lagSeconds(of:primary:)``; a standby whose delay
    /// is unknown does not pass a seconds limit.
    public static func isReplica(_ own: NodeObservation, snapshot: Snapshot, within limit: LagLimit?) -> Bool {
        guard own.isStandby, own.streaming, let primary = snapshot.primary,
            primary.replication.contains(where: { $0.applicationName == own.node.name && $0.state == "streaming" })
        else { return false }
        switch limit {
        case nil: return true
        case .bytes(let max): return (lagBytes(of: own, primary: primary) ?? .max) <= max
        case .seconds(let max): return (lagSeconds(of: own, primary: primary) ?? .infinity) <= max
        }
    }

    /// A standby's replay delay: what it says of itself (the time since the last transaction
    /// it replayed committed, while WAL waits to be replayed; 0 once all it received is
    /// replayed), else the `replay_lag` its primary measured (which PostgreSQL leaves empty
    /// while a paused standby reports no progress), else 0 when it has replayed all the
    /// primary wrote. Nil when none of these is known.
    public static func lagSeconds(of standby: NodeObservation, primary: NodeObservation) -> Double? {
        if let own = standby.replayDelaySeconds { return max(0, own) }
        if let measured = primary.replication.first(where: { $0.applicationName == standby.node.name })?.replayLagSeconds {
            return measured
        }
        return lagBytes(of: standby, primary: primary) == 0 ? 0 : nil
    }

    /// Bytes of WAL the primary has written that `standby` has not replayed; nil when either
    /// position is unknown.
    public static func lagBytes(of standby: NodeObservation, primary: NodeObservation) -> UInt64? {
        guard let current = primary.currentLsn, let replay = standby.replayLsn else { return nil }
        return current.bytes(after: replay)
    }
}
