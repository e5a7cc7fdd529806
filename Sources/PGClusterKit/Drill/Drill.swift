import Foundation

/// `pgcluster drill`: proves durability and measures recovery on demand. Writers insert
/// one row per transaction and remember what was acknowledged; the victim is killed
/// with SIGKILL; the same failover code as `pgcluster failover` runs; then the
/// acknowledged ids are looked up on the new primary.
public struct Drill: Sendable {
    public enum Victim: String, Sendable, CaseIterable {
        case primary, standby
        case primaryAndStandby = "primary+standby"
    }

    /// Its nodes: processes of this machine, or compose services.
    public let cluster: any ServerControl
    public let credentials: Credentials
    public var clients: Int
    public var duration: Double
    public var mode: SynchronousMode
    public var victim: Victim
    public var rounds: Int
    /// Leave the last round's rows in the drill table (to count them yourself).
    public var keepTable = false

    public init(
        cluster: any ServerControl, credentials: Credentials, clients: Int, duration: Double, mode: SynchronousMode,
        victim: Victim, rounds: Int
    ) {
        self.cluster = cluster
        self.credentials = credentials
        self.clients = clients
        self.duration = duration
        self.mode = mode
        self.victim = victim
        self.rounds = rounds
    }

    var spec: ClusterSpec { cluster.spec }

    public struct Round: Sendable, Encodable {
        public var round: Int
        public var mode: String
        public var killed: [String]
        public var oldPrimary: String
        public var newPrimary: String?
        /// The failover's refusal, when it refused (the cluster was restarted as it was).
        public var refusal: String?
        public var acknowledged: Int
        /// Acknowledged ids found on the primary afterwards.
        public var present: Int
        /// Acknowledged but missing: the loss.
        public var lost: Int
        public var lostIds: [Int64]
        /// Rows of this round on the primary (acknowledged or not: a commit whose answer
        /// never arrived may still be there).
        public var rowsOnPrimary: Int
        public var failedWrites: Int
        /// From the kill to the first write acknowledged after it.
        public var recoverySeconds: Double?
        /// The longest time without any acknowledged write.
        public var longestGapSeconds: Double
        public var failoverSteps: [StepTimer.Step]
        public var failoverSeconds: Double?
    }

    public struct Report: Sendable, Encodable {
        public var clients: Int
        public var durationSeconds: Double
        public var mode: String
        public var kill: String
        public var rounds: [Round]
        public var totalAcknowledged: Int
        public var totalLost: Int
    }

    /// Refuses a cluster that is not healthy, then sets the requested synchronous mode.
    func prepare() async throws(ClusterError) -> NodeSpec {
        let observations = await Observer(credentials: credentials).observeAll(spec.nodes)
        let status = StatusReport.make(spec: spec, observations: observations)
        guard status.healthy else {
            throw ClusterError.refused(
                "the cluster is degraded; a drill needs every node up and streaming: "
                    + status.problems.joined(separator: "; "))
        }
        let plan: QuorumPlan
        do {
            plan = try QuorumPlan.make(spec: spec, observations: observations, mode: mode, requested: nil, force: false)
        } catch {
            throw ClusterError(
                "the cluster cannot run in mode \(mode): \(error.message)", exitCode: .refused, details: error.details)
        }
        let primary = spec.node(named: plan.primary)!
        Console.progress("drill: synchronous mode \(mode) on \(primary.name)")
        try await QuorumChange(credentials: credentials, primary: primary, mode: mode, standbys: plan.standbys, intent: spec).apply()
        try await ClusterRecord.saveSynchronous(
            spec: spec, primary: primary.name, mode: mode, standbys: nil, applied: (mode, plan.standbys))
        if victim != .standby && spec.nodes.count < 2 {
            throw ClusterError.refused("killing the primary needs at least one standby to promote")
        }
        return primary
    }

    public func run() async throws(ClusterError) -> Report {
        var results: [Round] = []
        for round in 1...rounds {
            let primary = try await prepare()
            results.append(try await runRound(round, primary: primary))
            if results.last?.refusal != nil { break }
        }
        if !keepTable { try? await dropTable() }
        return Report(
            clients: clients, durationSeconds: duration, mode: mode.description, kill: victim.rawValue, rounds: results,
            totalAcknowledged: results.map(\.acknowledged).reduce(0, +), totalLost: results.map(\.lost).reduce(0, +))
    }

    func connectionString() -> String {
        ConnectionStrings.make(spec: spec, readOnly: false, user: credentials.superuser.user, password: nil)
    }

    func runRound(_ round: Int, primary: NodeSpec) async throws(ClusterError) -> Round {
        let conninfo = connectionString()
        let password = credentials.superuser.password
        do {
            try WriteLoad.prepare(conninfo: conninfo, password: password)
            let connection = try PGConnection.connect(conninfo: conninfo, password: password)
            try connection.query("TRUNCATE \(WriteLoad.table)")
            connection.close()
        } catch {
            throw ClusterError("cannot prepare the drill table: \(error)")
        }
        let load = WriteLoad(conninfo: conninfo, password: password, clients: clients)
        load.start()
        let progress = ProgressLine(round: round, load: load)
        progress.start()

        // Warm up, then kill.
        try? await Task.sleep(for: .seconds(max(0.5, duration * 0.4)))
        let standbys = spec.nodes.filter { $0.name != primary.name }.sorted { $0.name < $1.name }
        var victims: [NodeSpec] = []
        switch victim {
        case .primary: victims = [primary]
        case .standby: victims = Array(standbys.prefix(1))
        case .primaryAndStandby: victims = [primary] + Array(standbys.prefix(1))
        }
        let killedAt = Date()
        for node in victims {
            if let killed = await cluster.crash(node) { progress.note(killed) }
        }

        var newPrimary: String? = primary.name
        var refusal: String?
        var failoverReport: Failover.Report?
        if victims.contains(primary) {
            let failover = Failover(
                spec: spec, credentials: credentials, control: cluster, request: .init(), dryRun: false,
                templates: cluster.renderer.templates)
            do {
                let report = try await failover.run()
                failoverReport = report
                newPrimary = report.candidate
                progress.note("failover: \(report.candidate) promoted in \(String(format: "%.3f", report.totalSeconds)) s")
            } catch {
                refusal = error.message
                newPrimary = nil
                progress.note("failover refused: \(error.message)")
            }
        }

        // Keep writing after the failover, then stop and count.
        if newPrimary != nil { try? await Task.sleep(for: .seconds(max(0.5, duration * 0.6))) }
        let summary = await load.stop()
        let stoppedAt = Date()
        progress.stop()

        if refusal != nil {
            // Nothing was promoted: bring the killed nodes back as they were.
            for node in victims {
                try? await cluster.start(node)
            }
            // Wait until they stream again, so the cluster is left as the drill found it.
            var restored = await Observer(credentials: credentials).observeAll(spec.nodes)
            for _ in 0..<300 where !StatusReport.make(spec: spec, observations: restored).healthy {
                try? await Task.sleep(for: .milliseconds(100))
                restored = await Observer(credentials: credentials).observeAll(spec.nodes)
            }
            newPrimary = restored.first(where: \.isPrimary)?.node.name
        }

        var present = Set<Int64>()
        var rowsOnPrimary = 0
        if let name = newPrimary, let node = spec.node(named: name) {
            (present, rowsOnPrimary) = try await count(on: node, ids: summary.acknowledged)
        }
        let lostIds = summary.acknowledged.filter { !present.contains($0) }.sorted()
        // Recovery ends with the first write acknowledged by the new primary after the kill
        // (the old primary's last acknowledgements can arrive after the kill, too).
        let newPort = newPrimary.flatMap(spec.node(named:))?.port
        let after = zip(summary.ackTimes, summary.ackPorts)
            .filter { $0.0 > killedAt && ($0.1 == newPort || !victims.contains(primary)) }.map(\.0).min()
        let times = summary.ackTimes.sorted()
        var gap = 0.0
        for (a, b) in zip(times, times.dropFirst()) { gap = max(gap, b.timeIntervalSince(a)) }
        // Writes that never came back count as a gap up to the end of the round.
        if let last = times.last { gap = max(gap, stoppedAt.timeIntervalSince(last)) }

        // Bring the victims back for the next round.
        if refusal == nil, let name = newPrimary {
            for node in victims {
                let running = node == primary ? false : await cluster.isRunning(node)
                if !running {
                    progress.note("rejoin \(node.name) as a standby of \(name)")
                    _ = try await Rejoin(cluster: cluster, credentials: credentials, node: node, reclone: false).run()
                }
            }
        }
        return Round(
            round: round, mode: mode.description, killed: victims.map(\.name), oldPrimary: primary.name,
            newPrimary: newPrimary, refusal: refusal, acknowledged: summary.acknowledged.count, present: present.count,
            lost: lostIds.count, lostIds: Array(lostIds.prefix(1000)), rowsOnPrimary: rowsOnPrimary,
            failedWrites: summary.failures,
            recoverySeconds: refusal == nil ? after.map { $0.timeIntervalSince(killedAt) } : nil,
            longestGapSeconds: gap, failoverSteps: failoverReport?.steps ?? [],
            failoverSeconds: failoverReport?.totalSeconds)
    }

    /// The acknowledged ids found on `node`, and how many rows the drill table holds there.
    func count(on node: NodeSpec, ids: [Int64]) async throws(ClusterError) -> (Set<Int64>, Int) {
        let ops = ServerOps(spec: spec, credentials: credentials)
        let list = "{" + ids.map(String.init).joined(separator: ",") + "}"
        let found = try await ops.execute(
            node, ["SELECT id FROM \(WriteLoad.table) WHERE id = ANY('\(list)'::bigint[])"], timeout: 30)
        let total = try await ops.execute(node, ["SELECT count(*) FROM \(WriteLoad.table)"], timeout: 30)
        return (Set(found.rows.compactMap { $0[0].flatMap { Int64($0) } }), total.scalar.flatMap { Int($0) } ?? 0)
    }

    func dropTable() async throws {
        let conninfo = connectionString()
        let password = credentials.superuser.password
        _ = await Blocking.run(timeout: 10) { () -> Bool in
            guard let connection = try? PGConnection.connect(conninfo: conninfo, password: password) else { return false }
            defer { connection.close() }
            return (try? connection.query("DROP TABLE IF EXISTS \(WriteLoad.table)")) != nil
        }
    }
}

/// A live progress line on stderr: acknowledged and failed writes, redrawn in place on a
/// terminal, one line a second otherwise.
final class ProgressLine: @unchecked Sendable {
    private let round: Int
    private let load: WriteLoad
    private let lock = NSLock()
    private var running = false
    private let began = Date()

    init(round: Int, load: WriteLoad) {
        self.round = round
        self.load = load
    }

    func start() {
        lock.withLock { running = true }
        Thread.detachNewThread { [self] in
            while lock.withLock({ running }) {
                draw(final: false)
                usleep(Console.stderrIsTTY ? 200_000 : 1_000_000)
            }
        }
    }

    func draw(final: Bool) {
        let (acknowledged, failures) = load.counts
        let text = String(format: "[round %d] %5.1f s  acknowledged %d  failed %d", round, Date().timeIntervalSince(began), acknowledged, failures)
        if Console.stderrIsTTY {
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + text + (final ? "\n" : "")).utf8))
        } else {
            Console.progress(text)
        }
    }

    func note(_ text: String) {
        if Console.stderrIsTTY { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        Console.progress("[round \(round)] \(text)")
    }

    func stop() {
        lock.withLock { running = false }
        draw(final: true)
    }
}

extension Drill.Report {
    public var text: String {
        var rows = [["ROUND", "KILLED", "NEW PRIMARY", "ACKED", "PRESENT", "LOST", "ROWS", "FAILED", "RECOVERY", "LONGEST GAP", "FAILOVER"]]
        for r in rounds {
            rows.append([
                String(r.round), r.killed.joined(separator: "+"), r.refusal == nil ? (r.newPrimary ?? "-") : "refused",
                String(r.acknowledged), String(r.present), String(r.lost), String(r.rowsOnPrimary), String(r.failedWrites),
                r.recoverySeconds.map { String(format: "%.3f s", $0) } ?? "-", String(format: "%.3f s", r.longestGapSeconds),
                r.failoverSeconds.map { String(format: "%.3f s", $0) } ?? "-",
            ])
        }
        var lines = ["drill: \(clients) clients, \(String(format: "%g", durationSeconds)) s a round, mode \(mode), kill \(kill)"]
        lines.append(TextTable.render(rows))
        for r in rounds {
            if let refusal = r.refusal { lines.append("round \(r.round): failover refused, nothing promoted: \(refusal)") }
            if r.lost > 0 {
                lines.append("round \(r.round): LOST \(r.lost) acknowledged rows, ids: \(r.lostIds.prefix(20).map(String.init).joined(separator: ", "))\(r.lost > 20 ? ", ..." : "")")
            }
        }
        lines.append("total: \(totalAcknowledged) acknowledged, \(totalLost) lost")
        return lines.joined(separator: "\n")
    }
}
