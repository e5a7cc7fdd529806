import Foundation
import Prometheus

/// `/metrics`: one gauge or counter family per fact, in Prometheus' text format, through
/// swift-prometheus' registry. Node families carry `cluster` and `node` labels; the watcher's
/// own facts carry `cluster`. A value the last probe could not read (a down node's timeline)
/// is NaN, so a dashboard shows a gap rather than a false zero.
public final class WatchMetrics: @unchecked Sendable {
    struct NodeGauges: Sendable {
        let up, primary, timeline, walPosition, lagBytes, lagSeconds, sync, archiveAge, archiveFailing: Gauge
        let archived, archiveFailed: Counter
    }

    let registry = PrometheusCollectorRegistry()
    /// Two scrapes at once set the same gauges: one renders at a time.
    private let lock = NSLock()
    let nodes: [String: NodeGauges]
    let leader, paused, lastFailover, probeDuration: Gauge
    let failovers: Counter

    /// The names of every family, as `/metrics` shows them (the tests check each is there).
    public static let nodeFamilies = [
        "pgcluster_node_up", "pgcluster_node_primary", "pgcluster_node_timeline", "pgcluster_node_wal_position_bytes",
        "pgcluster_node_lag_bytes", "pgcluster_node_lag_seconds", "pgcluster_node_sync", "pgcluster_node_archived_total",
        "pgcluster_node_archive_failed_total", "pgcluster_node_archive_age_seconds", "pgcluster_node_archive_failing",
    ]
    public static let watcherFamilies = [
        "pgcluster_watch_leader", "pgcluster_watch_paused", "pgcluster_watch_failovers_total",
        "pgcluster_watch_last_failover_duration_seconds", "pgcluster_watch_probe_duration_seconds",
    ]

    public init(spec: ClusterSpec) {
        let registry = self.registry
        let cluster = ("cluster", spec.name)
        var nodes: [String: NodeGauges] = [:]
        for node in spec.nodes {
            let labels = [cluster, ("node", node.name)]
            func gauge(_ name: String, _ help: String) -> Gauge { registry.makeGauge(descriptor: Self.family(name, help), labels: labels) }
            nodes[node.name] = NodeGauges(
                up: gauge("pgcluster_node_up", "1 when PostgreSQL answered the watcher's last probe, 0 otherwise."),
                primary: gauge("pgcluster_node_primary", "1 when the node is the primary that accepts writes, 0 otherwise."),
                timeline: gauge("pgcluster_node_timeline", "The node's timeline."),
                walPosition: gauge(
                    "pgcluster_node_wal_position_bytes",
                    "The node's WAL position in bytes: written (primary), received or replayed (standby)."),
                lagBytes: gauge("pgcluster_node_lag_bytes", "Bytes of WAL the primary wrote that the standby has not replayed."),
                lagSeconds: gauge("pgcluster_node_lag_seconds", "Seconds of replay delay: since the last transaction the standby replayed committed, while WAL waits to be replayed."),
                sync: gauge(
                    "pgcluster_node_sync", "1 when the standby counts toward the synchronous set (sync or quorum), 0 otherwise."),
                archiveAge: gauge(
                    "pgcluster_node_archive_age_seconds",
                    "Seconds since the primary last archived a WAL file (pg_stat_archiver); NaN on nodes that do not archive or before the first."),
                archiveFailing: gauge(
                    "pgcluster_node_archive_failing", "1 when the primary's last attempt to archive a WAL file failed, 0 otherwise."),
                archived: registry.makeCounter(
                    descriptor: Self.family("pgcluster_node_archived_total", "WAL files the node archived (pg_stat_archiver.archived_count); 0 on nodes that do not archive."),
                    labels: labels),
                archiveFailed: registry.makeCounter(
                    descriptor: Self.family("pgcluster_node_archive_failed_total", "Failed attempts to archive a WAL file (pg_stat_archiver.failed_count)."),
                    labels: labels))
        }
        // Until a probe reads a node (one the spec names that `apply` has not added yet is
        // never probed), what is unknown is NaN, not a false 0.
        for gauges in nodes.values {
            for unknown in [gauges.timeline, gauges.walPosition, gauges.lagBytes, gauges.lagSeconds, gauges.archiveAge] {
                unknown.set(to: .nan)
            }
        }
        self.nodes = nodes
        let labels = [cluster]
        leader = registry.makeGauge(descriptor: Self.family("pgcluster_watch_leader", "1 when this watcher leads and acts, 0 when it only observes."), labels: labels)
        paused = registry.makeGauge(descriptor: Self.family("pgcluster_watch_paused", "1 while pgcluster pause is in force."), labels: labels)
        failovers = registry.makeCounter(descriptor: Self.family("pgcluster_watch_failovers_total", "Failovers this watcher carried out since it started."), labels: labels)
        lastFailover = registry.makeGauge(descriptor: Self.family("pgcluster_watch_last_failover_duration_seconds", "Seconds the last failover took, from the decision to the record (NaN before the first)."), labels: labels)
        probeDuration = registry.makeGauge(descriptor: Self.family("pgcluster_watch_probe_duration_seconds", "Seconds the last probe of every node took."), labels: labels)
    }

    /// A family's full name (the descriptor's other parts stay empty) and its `# HELP` text.
    static func family(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// Sets every family from one tick, and renders the text.
    public func render(_ snapshot: HealthCheck.Snapshot, _ tick: HealthState.Tick) -> String {
        lock.lock()
        defer { lock.unlock() }
        let primary = snapshot.primary
        for observation in snapshot.observations {
            guard let gauges = nodes[observation.node.name] else { continue }
            let isPrimary = primary?.node.name == observation.node.name
            let row = primary?.replication.first { $0.applicationName == observation.node.name }
            let lag = primary.flatMap { isPrimary ? 0 : HealthCheck.lagBytes(of: observation, primary: $0) }
            gauges.up.set(to: observation.reachable ? 1 : 0)
            gauges.primary.set(to: isPrimary ? 1 : 0)
            gauges.timeline.set(to: observation.reachable ? observation.timeline.map(Double.init) ?? .nan : .nan)
            gauges.walPosition.set(to: observation.reachable ? observation.bestLsn.map { Double($0.value) } ?? .nan : .nan)
            gauges.lagBytes.set(to: observation.isStandby ? lag.map { Double($0) } ?? .nan : isPrimary ? 0 : .nan)
            gauges.lagSeconds.set(
                to: isPrimary ? 0 : observation.isStandby ? primary.flatMap { HealthCheck.lagSeconds(of: observation, primary: $0) } ?? .nan : .nan)
            gauges.sync.set(to: ["sync", "quorum"].contains(row?.syncState ?? "") ? 1 : 0)
            let archiver = observation.archiver
            gauges.archiveAge.set(to: archiver?.secondsSinceArchived ?? .nan)
            gauges.archiveFailing.set(to: archiver?.failing == true ? 1 : 0)
            // A probe that did not read pg_stat_archiver keeps the counts: a counter that fell
            // to 0 and back would read as a reset to Prometheus, and rate() would jump.
            if let archiver {
                gauges.archived.reset()
                gauges.archived.increment(by: Int64(archiver.archivedCount))
                gauges.archiveFailed.reset()
                gauges.archiveFailed.increment(by: Int64(archiver.failedCount))
            }
        }
        leader.set(to: tick.leader ? 1 : 0)
        paused.set(to: tick.paused ? 1 : 0)
        lastFailover.set(to: tick.lastFailoverSeconds ?? .nan)
        probeDuration.set(to: tick.probeSeconds)
        failovers.reset()
        failovers.increment(by: Int64(tick.failovers))
        return registry.emitToString()
    }
}
