import Foundation

/// `pgcluster status`: the cluster as the live servers describe it. The JSON form is
/// the stable contract (README.md, "Commands"); the table is for people.
public struct StatusReport: Sendable, Encodable {
    public struct Synchronous: Sendable, Encodable, Equatable {
        public var mode: String
        public var count: Int
        public var standbys: [String]
    }

    public struct Node: Sendable, Encodable, Equatable {
        public var name: String
        public var host: String
        public var port: Int
        /// "primary", "standby", "down" (proven: refused, or no postmaster on a host that
        /// answered) or "no answer" (the probe timed out or its transport failed).
        public var role: String
        /// With role "no answer" after a timeout: the seconds the probe waited.
        public var waitedSeconds: Double?
        /// Why a node that is down or does not answer could not be asked.
        public var reason: String?
        public var timeline: Int?
        public var lsn: String?
        public var receiveLsn: String?
        public var replayLsn: String?
        public var lagBytes: UInt64?
        public var syncState: String?
        public var upstream: String?
        public var streaming: Bool
        /// Whole days until the certificate the server is configured with expires; nil with
        /// TLS off or when the node does not answer.
        public var certificateDaysLeft: Int?
        /// A standby's replay lag in seconds: the primary's pg_stat_replication.replay_lag, or 0
        /// when it has replayed everything (PostgreSQL empties replay_lag once a standby is idle
        /// and caught up); nil when unknown (the primary, a node down, no row for it).
        public var lagSeconds: Double?
        /// The node runs with a setting changed in its files that only a restart applies
        /// (pg_settings.pending_restart): `pgcluster restart --pending` restarts it.
        public var pendingRestart = false
        /// The primary's WAL archiver (pg_stat_archiver) while it archives; nil otherwise.
        public var archiver: NodeObservation.Archiver?

        enum CodingKeys: String, CodingKey {
            case name, host, port, role, waitedSeconds, reason, timeline, lsn, receiveLsn, replayLsn, lagBytes, lagSeconds,
                syncState, upstream, streaming, certificateDaysLeft, pendingRestart, archiver
        }

        public func encode(to encoder: any Encoder) throws {
            // Every key is present, with null where there is no value, so scripts can rely on the shape.
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(name, forKey: .name)
            try c.encode(host, forKey: .host)
            try c.encode(port, forKey: .port)
            try c.encode(role, forKey: .role)
            try c.encode(waitedSeconds, forKey: .waitedSeconds)
            try c.encode(reason, forKey: .reason)
            try c.encode(timeline, forKey: .timeline)
            try c.encode(lsn, forKey: .lsn)
            try c.encode(receiveLsn, forKey: .receiveLsn)
            try c.encode(replayLsn, forKey: .replayLsn)
            try c.encode(lagBytes, forKey: .lagBytes)
            try c.encode(lagSeconds, forKey: .lagSeconds)
            try c.encode(syncState, forKey: .syncState)
            try c.encode(upstream, forKey: .upstream)
            try c.encode(streaming, forKey: .streaming)
            try c.encode(certificateDaysLeft, forKey: .certificateDaysLeft)
            try c.encode(pendingRestart, forKey: .pendingRestart)
            try c.encode(archiver, forKey: .archiver)
        }
    }

    public var name: String
    public var primary: String?
    public var timeline: Int?
    public var synchronous: Synchronous
    public var nodes: [Node]
    /// Why the cluster is not healthy; empty when every node is up and every standby streams.
    public var problems: [String]
    /// `pgcluster pause` is in force: `watch` observes and reports only.
    public var paused = false

    /// What needs attention soon but does not make the cluster degraded (certificates near expiry).
    public var warnings: [String] = []

    /// Fewer days than this left on a node's certificate is warned about.
    public static let certificateWarningDays = 30

    /// Adds each node's certificate expiry, and a warning for each one under
    /// ``certificateWarningDays`` (or expired). Pure.
    public mutating func addCertificates(_ certificates: [String: CertificateSummary], now: Date = Date()) {
        for index in nodes.indices {
            guard let certificate = certificates[nodes[index].name] else { continue }
            let days = certificate.daysLeft(now: now)
            nodes[index].certificateDaysLeft = days
            if days < 0 {
                warnings.append("\(nodes[index].name): its TLS certificate has EXPIRED; run `pgcluster tls rotate`")
            } else if days < Self.certificateWarningDays {
                warnings.append("\(nodes[index].name): its TLS certificate expires in \(days) days; run `pgcluster tls rotate`")
            }
        }
    }

    enum CodingKeys: String, CodingKey {
        case name, primary, timeline, synchronous, paused, healthy, problems, warnings, nodes
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(primary, forKey: .primary)
        try c.encode(timeline, forKey: .timeline)
        try c.encode(synchronous, forKey: .synchronous)
        try c.encode(paused, forKey: .paused)
        try c.encode(healthy, forKey: .healthy)
        try c.encode(problems, forKey: .problems)
        try c.encode(warnings, forKey: .warnings)
        try c.encode(nodes, forKey: .nodes)
    }

    public var healthy: Bool { problems.isEmpty }

    /// More than one node answers as a read-write primary.
    public var splitBrain: Bool { nodes.filter { $0.role == "primary" }.count > 1 }

    /// Builds the report from observations. Pure.
    /// Why commits on `primary` wait, when fewer of the standbys its
    /// synchronous_standby_names lists stream than the mode needs; nil when they do not.
    public static func commitsWait(on primary: NodeObservation) -> String? {
        guard let parsed = SynchronousMode.parse(primary.synchronousStandbyNames), parsed.mode != .async else { return nil }
        let listedStreaming = parsed.standbys.filter(primary.streamingStandbys.contains)
        guard listedStreaming.count < parsed.mode.count else { return nil }
        return "commits on \(primary.node.name) WAIT: synchronous_standby_names = '\(primary.synchronousStandbyNames)' "
            + "needs \(parsed.mode.count) of \(parsed.standbys.joined(separator: ", ")) streaming, "
            + "\(listedStreaming.count) \(listedStreaming.count == 1 ? "does" : "do")"
    }

    /// A warning for each standby that streams from the primary but is missing from its
    /// synchronous names though the remembered mode covers it (`members`: the standbys the
    /// operator restricted the quorum to, or every node): a rejoin or start stopped before it
    /// listed the node. No commit waits for it, and under durability strict the loss of the
    /// listed standbys would hang commits though it streams.
    public mutating func warnUnlisted(members: [String]) {
        guard let primary, synchronous.mode != "async", synchronous.mode != "unknown" else { return }
        for node in nodes where node.role == "standby" && node.streaming && node.upstream == primary
            && members.contains(node.name) && !synchronous.standbys.contains(node.name)
        {
            warnings.append(
                "\(node.name) streams from \(primary) but is not in its synchronous_standby_names (a rejoin or start "
                    + "stopped before listing it): no commit waits for it; pgcluster rejoin \(node.name) lists it")
        }
    }

    public static func make(spec: ClusterSpec, observations: [NodeObservation]) -> StatusReport {
        let primaries = observations.filter(\.isPrimary)
        let primary = primaries.count == 1 ? primaries[0] : nil
        var problems: [String] = []
        if primaries.isEmpty { problems.append("no primary answers") }
        if primaries.count > 1 {
            let keep = PrimaryRules.newest(primaries)
            problems.append(
                "SPLIT BRAIN: several primaries accept writes: "
                    + primaries.map { "\($0.node.name) (timeline \($0.timeline.map(String.init) ?? "?"))" }.joined(separator: ", ")
                    + (keep.map { "; \($0.node.name) holds the newest timeline and is the primary to keep: stop the others, then "
                        + "pgcluster rejoin NODE" } ?? "; they are level: pgcluster cannot tell which to keep"))
        }

        // Read from the one primary: with none, or several, it is unknown (not async, which a
        // script would take for a setting).
        let parsed = SynchronousMode.parse(primary?.synchronousStandbyNames ?? "") ?? (.async, [])
        let synchronous = primary == nil
            ? Synchronous(mode: "unknown", count: 0, standbys: [])
            : Synchronous(mode: parsed.mode.modeName, count: parsed.mode.count, standbys: parsed.standbys)

        var nodes: [Node] = []
        for observation in observations {
            let spec = observation.node
            var node = Node(
                name: spec.name, host: spec.host, port: spec.port, role: "down", streaming: false)
            guard observation.reachable else {
                let health = observation.health
                node.role = health.rawValue
                node.reason = observation.error
                node.waitedSeconds = observation.waitedSeconds
                problems.append(
                    health == .down
                        ? "\(spec.name) is down: \(observation.error ?? "refused")"
                        : "\(spec.name) does not answer (not proven down): \(observation.error ?? "no answer")")
                nodes.append(node)
                continue
            }
            node.timeline = observation.timeline
            node.pendingRestart = observation.pendingRestart
            // A standby's positions only: a promoted primary keeps reporting the last ones it
            // received and replayed as a standby. What a standby replayed it received: after
            // its restart PostgreSQL reports the position its WAL receiver started from (a
            // segment's start), below the replay.
            if !observation.isPrimary {
                node.receiveLsn = observation.receiveLsn.map { max($0, observation.replayLsn ?? $0) }?.description
                node.replayLsn = observation.replayLsn?.description
            }
            if observation.isPrimary {
                node.role = "primary"
                node.lsn = observation.currentLsn?.description
                node.archiver = observation.archiver
            } else {
                node.role = "standby"
                node.lsn = observation.bestLsn?.description
                node.streaming = observation.streaming
                node.upstream = upstreamName(of: observation, among: observations)
                if let primary, let current = primary.currentLsn, let replay = observation.replayLsn {
                    node.lagBytes = current.bytes(after: replay)
                }
                let row = primary?.replication.first { $0.applicationName == spec.name }
                node.syncState = row?.syncState
                node.lagSeconds = row?.replayLagSeconds ?? (node.lagBytes == 0 ? 0 : nil)
                if !observation.streaming {
                    problems.append("\(spec.name) does not stream (WAL receiver: \(observation.walReceiver?.status ?? "none"))")
                } else if let primary, node.upstream != primary.node.name {
                    problems.append("\(spec.name) streams from \(node.upstream ?? "an unknown server"), not the primary \(primary.node.name)")
                }
            }
            nodes.append(node)
        }
        if let primary, let waiting = Self.commitsWait(on: primary) { problems.append(waiting) }
        let pending = nodes.filter(\.pendingRestart).map(\.name)
        var warnings = pending.isEmpty ? [] : [
            "\(pending.joined(separator: ", ")) run\(pending.count == 1 ? "s" : "") with a setting that waits for a restart "
                + "(pending_restart): pgcluster restart --pending"
        ]
        // A freeze empties restore_command until the failover or switchover gives it back.
        if spec.backup != nil && spec.backend != .compose {
            for observation in observations where observation.isStandby && observation.restoreCommand == "" {
                warnings.append(
                    "\(observation.node.name) runs without restore_command (an interrupted failover or switchover left it so): "
                        + "it cannot catch up from the WAL archive; pgcluster rejoin \(observation.node.name) gives it back")
            }
        }
        // A failing archive_command degrades no commit, but WAL piles up in pg_wal and
        // point-in-time recovery ends at the last file archived.
        for observation in primaries {
            if let archiver = observation.archiver, archiver.failing { warnings.append(archivingFails(observation.node.name, archiver)) }
        }
        return StatusReport(
            name: spec.name, primary: primary?.node.name, timeline: primary?.timeline, synchronous: synchronous,
            nodes: nodes, problems: problems, warnings: warnings)
    }

    static func archivingFails(_ node: String, _ archiver: NodeObservation.Archiver) -> String {
        let failed = archiver.secondsSinceFailed.map(ago) ?? "?"
        let success = archiver.lastArchivedWal.map { wal in "the last success \(archiver.secondsSinceArchived.map(ago) ?? "?") (\(wal))" }
        return "\(node) fails to archive WAL: its last attempt failed \(failed) (\(archiver.lastFailedWal ?? "?")), "
            + "\(archiver.failedCount) failed \(archiver.failedCount == 1 ? "attempt" : "attempts") in pg_stat_archiver; "
            + (success ?? "nothing archived in pg_stat_archiver") + ". PostgreSQL keeps the WAL in pg_wal until archive_command "
            + "succeeds, and point-in-time recovery ends at the last file archived: see \(node)'s log"
    }

    /// "12 s ago", "4 min ago", "3 h ago", "2 d ago".
    static func ago(_ seconds: Double) -> String {
        let s = max(0, seconds)
        switch s {
        case ..<120: return "\(Int(s)) s ago"
        case ..<(120 * 60): return "\(Int(s / 60)) min ago"
        case ..<(48 * 3600): return "\(Int(s / 3600)) h ago"
        default: return "\(Int(s / 86400)) d ago"
        }
    }

    /// The primary's archiving in one line for the table, when it archives.
    var archiveLine: String? {
        guard let primary, let archiver = nodes.first(where: { $0.name == primary })?.archiver else { return nil }
        let last = archiver.lastArchivedWal.map { "last \($0) \(archiver.secondsSinceArchived.map(Self.ago) ?? "")" } ?? "nothing archived yet"
        return "archive: \(archiver.failing ? "FAILING, " : "")\(last), \(archiver.archivedCount) archived, \(archiver.failedCount) failed (\(primary)'s pg_stat_archiver)"
    }

    /// The node a standby's WAL receiver is connected to, by address.
    static func upstreamName(of standby: NodeObservation, among all: [NodeObservation]) -> String? {
        guard let receiver = standby.walReceiver, let host = receiver.senderHost, let port = receiver.senderPort else {
            return nil
        }
        let match = all.first { other in
            (other.node.host == host && other.node.port == port)
                || (other.node.serviceHost == host && other.node.servicePort == port)
        }
        return match?.node.name ?? "\(host):\(port)"
    }

    /// The human table.
    public var table: String {
        let showCertificates = nodes.contains { $0.certificateDaysLeft != nil }
        let header = ["NODE", "ROLE", "STATE", "TL", "LSN", "RECEIVED", "REPLAYED", "LAG", "SYNC", "UPSTREAM"]
            + (showCertificates ? ["CERT"] : [])
        var rows = [header]
        for node in nodes {
            let state: String
            switch node.role {
            case "primary": state = "running"
            case "standby": state = node.streaming ? "streaming" : "not streaming"
            case "no answer": state = node.waitedSeconds.map { String(format: "silent %.0fs", $0) } ?? "unreachable"
            default: state = "down"
            }
            var lag = "-"
            if let bytes = node.lagBytes {
                lag = formatBytes(bytes)
                if let seconds = node.lagSeconds { lag += String(format: " %.1fs", seconds) }
            }
            rows.append([
                node.name, node.role, state, node.timeline.map(String.init) ?? "-",
                node.role == "primary" ? node.lsn ?? "-" : "-",
                node.role == "standby" ? node.receiveLsn ?? "-" : "-", node.role == "standby" ? node.replayLsn ?? "-" : "-", lag,
                node.syncState ?? "-", node.upstream ?? "-",
            ] + (showCertificates ? [node.certificateDaysLeft.map { "\($0)d" } ?? "-"] : []))
        }
        var lines = [TextTable.render(rows)]
        let mode = synchronous.mode == "async"
            ? "async" : "\(synchronous.mode.uppercased()) \(synchronous.count) (\(synchronous.standbys.joined(separator: ", ")))"
        lines.append("cluster \(name): " + summary(mode: mode))
        if let archiveLine { lines.append(archiveLine) }
        if paused { lines.append("paused: pgcluster watch observes and reports only (pgcluster resume)") }
        if problems.isEmpty {
            lines.append("healthy")
        } else {
            lines.append("DEGRADED:")
            lines += problems.map { "  - " + $0 }
        }
        if !warnings.isEmpty {
            lines.append("WARNING:")
            lines += warnings.map { "  - " + $0 }
        }
        return lines.joined(separator: "\n")
    }
}

extension StatusReport {
    /// Who is primary and the synchronous mode, as far as the servers tell: the mode is
    /// read from the one primary, so with none or several it is unknown, not "async".
    func summary(mode: String) -> String {
        if let primary {
            return "primary \(primary), timeline \(timeline.map(String.init) ?? "-"), synchronous \(mode)"
        }
        let primaries = nodes.filter { $0.role == "primary" }
        if primaries.isEmpty { return "no primary answers, synchronous mode unknown" }
        let list = primaries.map { "\($0.name) on timeline \($0.timeline.map(String.init) ?? "?")" }
        return "\(primaries.count) primaries (\(list.joined(separator: ", "))), synchronous mode unknown"
    }
}

func formatBytes(_ bytes: UInt64) -> String {
    switch bytes {
    case ..<1024: "\(bytes) B"
    case ..<(1024 * 1024): String(format: "%.1f kB", Double(bytes) / 1024)
    case ..<(1024 * 1024 * 1024): String(format: "%.1f MB", Double(bytes) / 1048576)
    default: String(format: "%.1f GB", Double(bytes) / 1073741824)
    }
}

/// Left-aligned columns separated by two spaces.
public enum TextTable {
    public static func render(_ rows: [[String]]) -> String {
        guard let columns = rows.map(\.count).max() else { return "" }
        var widths = [Int](repeating: 0, count: columns)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        return rows.map { row in
            row.enumerated().map { i, cell in
                i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
