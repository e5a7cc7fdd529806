import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// A deterministic simulation of a cluster over the pure rules (docs/ARCHITECTURE.md,
/// "The simulation"): random schedules of commits, crashes, hangs, restarts by hand, quorum
/// changes whose wait fails, manual failovers and watcher ticks, where any multi-step action
/// may die between two steps. The decisions are the real ones (PrimaryRules, FailoverDecision,
/// WatchDecision, SynchronousSettlement); only the servers are modelled. After every step:
///
/// 1. at most one node can acknowledge a synchronous commit (a read-write node whose
///    synchronous standbys stream from it);
/// 2. every commit acknowledged under a synchronous mode is in the WAL of the primary the
///    rules keep (the newest timeline, then the furthest position);
/// 3. durability strict never lowers the mode (the rules' own settings; not an operator's).
///
/// `Legacy` switches back the two rules of the code before issue 20 (a quorum change set
/// before it is recorded; a second primary decided by the record), to show the simulation
/// finds what they broke.
@Suite("simulation: random fault schedules over the pure rules")
struct SimulationTests {
    @Test("thousands of schedules: no acknowledged commit lost, never two primaries acknowledging, strict never lowers")
    func schedules() throws {
        var steps = 0
        for seed in 0..<Simulation.schedules {
            var sim = try Simulation(seed: UInt64(seed), legacy: [])
            sim.run(steps: Simulation.stepsPerSchedule)
            steps += sim.stepsRun
            if let violation = sim.violation {
                var replay = try Simulation(seed: UInt64(seed), legacy: [])
                replay.tracing = true
                replay.run(steps: Simulation.stepsPerSchedule)
                let trace = replay.trace.suffix(40).joined(separator: "\n")
                Issue.record(Comment(rawValue: "seed \(seed): \(violation)\n\(trace)"))
                return
            }
        }
        #expect(steps > Simulation.schedules * Simulation.stepsPerSchedule / 2)
    }

    /// The first seeds at which a search from seed 0 (`PGCLUSTER_SIM_REPORT=1`, below) finds
    /// each rule of the code before issue 20 losing acknowledged commits; replayed here, so
    /// the unit suite needs two schedules each, not thousands.
    static let found: [(rule: Simulation.Legacy, seed: UInt64, bug: String)] = [
        (.setBeforeRecord, 12415, "bug 1: a quorum change set before it is recorded"),
        (.recordBeatsTimeline, 8146, "bug 5: the record beats a newer timeline"),
    ]

    @Test("the rules before issue 20 lose acknowledged commits in the schedules the search found; the rules now do not")
    func findsTheOldBugs() throws {
        for (rule, seed, bug) in Self.found {
            var old = try Simulation(seed: seed, legacy: rule)
            old.run(steps: Simulation.stepsPerSchedule)
            #expect(old.violation?.contains("acknowledged") == true, "\(bug): seed \(seed) no longer finds it: \(old.violation ?? "no violation")")
            var now = try Simulation(seed: seed, legacy: [])
            now.run(steps: Simulation.stepsPerSchedule)
            #expect(now.violation == nil, "\(bug): seed \(seed) with today's rules: \(now.violation ?? "")")
        }
    }
}

/// The modelled cluster and its driver.
struct Simulation {
    static let schedules = 2000
    static let stepsPerSchedule = 60
    /// How far the legacy searches may go before they give up (they stop at the first find).
    static let searchLimit = 20000

    struct Legacy: OptionSet {
        let rawValue: Int
        /// Bug 1: `quorum` set synchronous_standby_names and recorded it only after its wait.
        static let setBeforeRecord = Legacy(rawValue: 1)
        /// Bug 5: of two primaries, the recorded one was kept whatever the timelines.
        static let recordBeatsTimeline = Legacy(rawValue: 2)
    }

    /// One WAL record: the commit it holds and the timeline it was written on.
    struct Entry: Equatable {
        var id: Int
        var timeline: Int
    }

    struct Node {
        var spec: NodeSpec
        var up = true
        /// Running but not answering (SIGSTOP): its host says a postmaster runs.
        var hung = false
        var primary = false
        var timeline = 1
        var wal: [Entry] = []
        /// Whom it streams from (standby), when not frozen.
        var upstream: String?
        var frozen = false
        /// The primary's synchronous_standby_names.
        var ssn: (mode: SynchronousMode, standbys: [String]) = (.async, [])
        var name: String { spec.name }
    }

    var rng: SplitMix
    let legacy: Legacy
    let spec: ClusterSpec
    let settings: WatchSettings
    var nodes: [Node]
    var state: ClusterState
    var memory = WatchDecision.Memory()
    var now = 0.0
    var nextCommit = 1
    /// Commits acknowledged under a synchronous mode: they must never be lost.
    var acknowledged: [Int] = []
    var violation: String?
    var stepsRun = 0
    /// An action cut short: it dies after this many of its steps (nil: it runs to the end).
    var dieAfter: Int?

    init(seed: UInt64, legacy: Legacy) throws {
        rng = SplitMix(seed: seed)
        self.legacy = legacy
        let modes: [(String, SynchronousMode)] = [("{mode: any, count: 1}", .any(1)), ("{mode: any, count: 2}", .any(2)), ("{mode: first, count: 1}", .first(1))]
        let (yaml, mode) = modes[Int(rng.next() % 3)]
        let durability: WatchSettings.Durability = rng.next() % 3 == 0 ? .available : .strict
        spec = try SpecLoader.parse(
            """
            version: 1
            name: sim
            replication: {synchronous: \(yaml)}
            watch: {durability: \(durability.rawValue)}
            nodes:
              - {name: n0, port: 5432, role: primary}
              - {name: n1, port: 5433}
              - {name: n2, port: 5434}
              - {name: n3, port: 5435}
            """, file: "sim.yaml")
        settings = spec.watch
        nodes = spec.nodes.map { Node(spec: $0) }
        nodes[0].primary = true
        let standbys = ["n1", "n2", "n3"]
        nodes[0].ssn = (mode, standbys)
        for i in 1...3 { nodes[i].upstream = "n0" }
        state = ClusterState(primary: "n0", synchronous: .init(mode), applied: .init(mode, standbys: standbys))
        state.timeline = 1
    }

    static func firstViolation(legacy: Legacy, schedules: Int) throws -> (seed: Int, violation: String)? {
        for seed in 0..<schedules {
            var sim = try Simulation(seed: UInt64(seed), legacy: legacy)
            sim.run(steps: stepsPerSchedule)
            if let violation = sim.violation { return (seed, violation) }
        }
        return nil
    }

    // MARK: The schedule

    mutating func run(steps: Int) {
        for _ in 0..<steps where violation == nil {
            step()
            stepsRun += 1
            check()
        }
    }

    mutating func step() {
        now += 0.5
        let roll = rng.next() % 100
        let victim = Int(rng.next() % 4)
        dieAfter = rng.next() % 4 == 0 ? Int(rng.next() % 6) : nil
        switch roll {
        case 0..<28: commit()
        case 28..<40: catchUp()
        case 40..<47: crash(victim)
        case 47..<51: hang(victim)
        case 51..<58: restartByHand(victim)
        case 58..<65: quorumChange()
        case 65..<71: manualFailover()
        case 71..<73:
            memory = WatchDecision.Memory()
            log("watcher restarted (its memory is gone)")
        default: watcherTick()
        }
    }

    /// The trace, kept only when `tracing` (off while searching; a failing seed is replayed
    /// with it on). A reference, so that logging never needs the simulation mutable.
    final class Trace {
        var on = false
        var lines: [String] = []
    }
    let traceBox = Trace()
    var tracing: Bool {
        get { traceBox.on }
        nonmutating set { traceBox.on = newValue }
    }
    var trace: [String] { traceBox.lines }

    func log(_ line: @autoclosure () -> String) {
        if traceBox.on { traceBox.lines.append(String(format: "%6.1f ", now) + line()) }
    }

    func index(_ name: String) -> Int { nodes.firstIndex { $0.name == name }! }

    /// Whether a node's WAL is a prefix of another's (it can follow it without a rewind).
    static func isPrefix(_ a: [Entry], of b: [Entry]) -> Bool { a.count <= b.count && Array(b.prefix(a.count)) == a }

    func streams(_ standby: Node) -> Bool {
        guard standby.up, !standby.hung, !standby.primary, !standby.frozen, let upstream = standby.upstream else { return false }
        let source = nodes[index(upstream)]
        return source.up && !source.hung && Self.isPrefix(standby.wal, of: source.wal)
    }

    // MARK: Faults and clients

    mutating func commit() {
        for p in nodes.indices where nodes[p].up && !nodes[p].hung && nodes[p].primary {
            let id = nextCommit
            nextCommit += 1
            nodes[p].wal.append(Entry(id: id, timeline: nodes[p].timeline))
            // Each streaming standby receives it, or lags.
            for s in nodes.indices where streams(nodes[s]) && nodes[s].upstream == nodes[p].name && rng.next() % 10 < 7 {
                nodes[s].wal = nodes[p].wal
            }
            let (mode, listed) = nodes[p].ssn
            guard mode != .async, !listed.isEmpty else {
                log("commit \(id) on \(nodes[p].name): acknowledged without a standby (async)")
                continue
            }
            let holders = listed.filter { name in
                let s = nodes[index(name)]
                return streams(s) && s.upstream == nodes[p].name && s.wal.contains(Entry(id: id, timeline: nodes[p].timeline))
            }
            if holders.count >= mode.count {
                acknowledged.append(id)
                log("commit \(id) on \(nodes[p].name): acknowledged, held by \(holders.joined(separator: ","))")
            } else {
                log("commit \(id) on \(nodes[p].name): waits (not acknowledged)")
            }
        }
    }

    mutating func catchUp() {
        for s in nodes.indices where streams(nodes[s]) {
            nodes[s].wal = nodes[index(nodes[s].upstream!)].wal
            nodes[s].timeline = nodes[index(nodes[s].upstream!)].timeline
        }
    }

    mutating func crash(_ i: Int) {
        guard nodes[i].up else { return }
        nodes[i].up = false
        nodes[i].hung = false
        log("kill -9 \(nodes[i].name)")
    }

    mutating func hang(_ i: Int) {
        guard nodes[i].up else { return }
        nodes[i].hung.toggle()
        log("\(nodes[i].hung ? "SIGSTOP" : "SIGCONT") \(nodes[i].name)")
    }

    /// Someone runs pg_ctl start: the node comes back as what its data says (a primary stays one).
    mutating func restartByHand(_ i: Int) {
        guard !nodes[i].up else { return }
        nodes[i].up = true
        log("pg_ctl start \(nodes[i].name) (\(nodes[i].primary ? "a primary" : "a standby of \(nodes[i].upstream ?? "-")"))")
    }

    // MARK: Observations, as Observer would read them

    func observe() -> [NodeObservation] {
        nodes.map { node in
            if !node.up { return NodeObservation(node: node.spec, error: "connection refused") }
            if node.hung {
                var silent = NodeObservation(node: node.spec, error: "timeout expired")
                silent.waitedSeconds = 2
                return silent
            }
            var o = NodeObservation(node: node.spec)
            o.inRecovery = !node.primary
            o.timeline = node.timeline
            let lsn = LSN(UInt64(node.wal.count) * 100 + 1000)
            if node.primary {
                o.currentLsn = lsn
                o.synchronousStandbyNames = node.ssn.mode.standbyNames(node.ssn.standbys)
                o.replication = nodes.filter { streams($0) && $0.upstream == node.name }.map { s in
                    .init(
                        applicationName: s.name, state: "streaming", syncState: node.ssn.standbys.contains(s.name) ? "quorum" : "async",
                        replayLsn: LSN(UInt64(s.wal.count) * 100 + 1000), flushLsn: nil, replayLagSeconds: 0)
                }
            } else {
                o.receiveLsn = lsn
                o.replayLsn = lsn
                o.primaryConninfo = node.frozen ? "" : "host=\(node.upstream ?? "")"
                if streams(node), let upstream = node.upstream {
                    let source = nodes[index(upstream)].spec
                    o.walReceiver = .init(
                        status: "streaming", senderHost: source.host, senderPort: source.port, receivedTimeline: node.timeline, slot: nil)
                }
            }
            return o
        }
    }

    func postmaster(_ node: Node) -> WatchDecision.Postmaster { node.up ? .running : .stopped }

    // MARK: Effects the rules ask for

    /// Sets synchronous_standby_names on a primary the way QuorumChange does: the intent is
    /// recorded first (unless `legacy` says it was not).
    mutating func setSynchronous(_ i: Int, _ mode: SynchronousMode, _ standbys: [String], byRules: Bool, promotesTo: Int? = nil) {
        let wanted = state.synchronous.synchronousMode
        let lowers = wanted != .async && (mode == .async || mode.count < wanted.count)
        if byRules && lowers {
            if settings.durability == .strict {
                violation = "durability strict lowered \(wanted) to \(mode) on \(nodes[i].name)"
            } else {
                // durability available's trade, by design: fewer copies (or none) from now on,
                // and the failover guard reasons on what is left; earlier commits are no
                // longer guarded.
                acknowledged = []
            }
        }
        state.pending = .init(primary: nodes[i].name, synchronous: .init(mode, standbys: standbys), promotesTo: promotesTo)
        nodes[i].ssn = (mode, standbys)
        log("\(nodes[i].name): synchronous_standby_names = '\(mode.standbyNames(standbys))'")
    }

    /// Whether the action dies before step `n` (it was cut short after step n-1).
    mutating func dies(_ n: Int, _ what: String) -> Bool {
        guard let dieAfter, n > dieAfter else { return false }
        log("\(what) dies before step \(n)")
        self.dieAfter = nil
        return true
    }

    /// `pgcluster quorum`: a new standby list; its wait may fail (exit 1).
    mutating func quorumChange() {
        guard let p = nodes.firstIndex(where: { $0.up && !$0.hung && $0.primary }), state.primary == nodes[p].name else { return }
        let candidates = nodes.filter { $0.name != nodes[p].name }.map(\.name).shuffled(using: &rng)
        let mode = state.synchronous.synchronousMode
        guard mode != .async else { return }
        let listed = Array(candidates.prefix(max(mode.count, 1 + Int(rng.next() % 3)))).sorted()
        log("quorum: \(mode) over \(listed.joined(separator: ","))")
        if legacy.contains(.setBeforeRecord) {
            nodes[p].ssn = (mode, listed)
            log("\(nodes[p].name): synchronous_standby_names = '\(mode.standbyNames(listed))' (nothing recorded yet)")
        } else {
            setSynchronous(p, mode, listed, byRules: false)
        }
        if dies(1, "quorum") { return }
        // The wait: the new set shows its sync states and enough of it holds everything
        // written up to the change (QuorumChange.caughtUp); or it times out.
        let holders = listed.filter { name in
            let s = nodes[index(name)]
            return streams(s) && s.upstream == nodes[p].name && s.wal == nodes[p].wal
        }
        if holders.count < mode.count || rng.next() % 3 == 0 {
            log("quorum: its wait timed out (exit 1); recorded: \(legacy.contains(.setBeforeRecord) ? "nothing" : "pending")")
            return
        }
        state.applied = .init(mode, standbys: listed)
        state.pending = nil
        log("quorum: recorded")
    }

    mutating func manualFailover() {
        log("pgcluster failover")
        failover()
    }

    /// Failover.run, step by step, on the pure decisions.
    mutating func failover() {
        let first = observe()
        let live: NodeObservation?
        do throws(ClusterError) {
            live = try PrimaryRules.livePrimary(first, record: .init(state))
        } catch {
            log("failover refused: \(error.message.prefix(80))")
            return
        }
        let remembered = state.synchronous
        if let live {
            guard let why = PrimaryRules.unfinished(live: live, observations: first, recordedPrimary: state.primary) else {
                log("failover refused: \(live.node.name) is the primary")
                return
            }
            log("finishing an interrupted failover: \(why)")
            finish(index(live.node.name), remembered: remembered)
            return
        }
        let configs = FailoverDecision.guardConfigs(
            applied: state.applied ?? remembered, pending: state.pending, nodes: nodes.map(\.name), deadPrimary: state.primary)
        // Fence the silent old primary, and a silent node an earlier failover was promoting
        // (their hosts answer here); freeze every reachable standby.
        for name in Set([state.primary] + (PrimaryRules.Record(state).promoting.map { [$0] } ?? [])) {
            let old = index(name)
            if nodes[old].up && nodes[old].hung {
                nodes[old].up = false
                nodes[old].hung = false
                log("fenced \(nodes[old].name)")
            }
        }
        for i in nodes.indices where nodes[i].up && !nodes[i].hung && !nodes[i].primary { nodes[i].frozen = true }
        if dies(1, "failover") { return }
        let frozen = observe()
        let plan: FailoverDecision.Plan
        switch FailoverDecision.decide(
            observations: frozen, sync: configs.sync, request: .init(), alsoPossible: configs.alsoPossible,
            recordedTimeline: state.timeline)
        {
        case .failure(let refusal):
            log("failover refused: \(refusal.reason.prefix(120))")
            for i in nodes.indices where nodes[i].frozen && nodes[i].up { nodes[i].frozen = false }
            return
        case .success(let decided): plan = decided
        }
        let c = index(plan.candidate)
        let planned = FailoverDecision.newSynchronous(
            mode: remembered.synchronousMode, remaining: plan.rePoint, durability: settings.durability,
            others: (remembered.standbys ?? nodes.map(\.name)).filter { $0 != plan.candidate })
        setSynchronous(c, planned.mode, planned.standbys, byRules: true, promotesTo: nodes[c].timeline + 1)
        if dies(2, "failover") { return }
        nodes[c].primary = true
        nodes[c].frozen = false
        nodes[c].upstream = nil
        nodes[c].timeline += 1
        log("promoted \(plan.candidate) (timeline \(nodes[c].timeline))")
        if dies(3, "failover") { return }
        finish(c, remembered: remembered)
    }

    /// Re-point every standby at the primary, settle the synchronous names, record.
    mutating func finish(_ c: Int, remembered: ClusterState.Synchronous) {
        var following: [String] = []
        for i in nodes.indices where i != c && nodes[i].up && !nodes[i].hung && !nodes[i].primary {
            nodes[i].upstream = nodes[c].name
            nodes[i].frozen = false
            if Self.isPrefix(nodes[i].wal, of: nodes[c].wal) {
                // Confirmed streaming on the new timeline (as rePoint waits for): it has
                // received everything up to the switch point, the whole of the old WAL.
                following.append(nodes[i].name)
                nodes[i].wal = nodes[c].wal
                nodes[i].timeline = nodes[c].timeline
            } else {
                memory.needsRejoin.insert(nodes[i].name)
            }
        }
        if dies(4, "failover") { return }
        let down = nodes.filter { !following.contains($0.name) && $0.name != nodes[c].name }.map(\.name)
        let settlement = SynchronousSettlement.plan(
            spec: spec, primary: nodes[c].name, following: following, remembered: remembered,
            alreadySet: (nodes[c].ssn.mode, nodes[c].ssn.standbys), down: down)
        if settlement.changed { setSynchronous(c, settlement.mode, settlement.standbys, byRules: true) }
        if dies(5, "failover") { return }
        state.primary = nodes[c].name
        state.timeline = nodes[c].timeline
        state.applied = .init(settlement.mode, standbys: settlement.standbys)
        state.lowered = nil
        state.pending = nil
        log("recorded: \(nodes[c].name) is the primary")
    }

    /// Watcher.tickHolding: one observation, one decision, one action.
    mutating func watcherTick() {
        let observations = observe()
        var applied = state.applied ?? state.synchronous
        if applied.standbys == nil { applied.standbys = nodes.map(\.name).filter { $0 != state.primary } }
        let input = WatchDecision.Input(
            nodes: zip(observations, nodes).map { .init($0, postmaster: postmaster($1)) }, recordedPrimary: state.primary,
            applied: applied, lowered: state.lowered, now: now, probedAt: now - 0.1, pending: state.pending,
            recordedTimeline: state.timeline)
        var action = WatchDecision.next(input, memory: &memory, settings: settings)
        if legacy.contains(.recordBeatsTimeline), case .fence = action {
            action = Self.legacySecondPrimary(input) ?? action
        }
        switch action {
        case .failover(let why):
            log("watch: failover (\(why.prefix(60)))")
            failover()
        case .fence(let name, let why):
            let i = index(name)
            nodes[i].up = false
            nodes[i].hung = false
            memory.needsRejoin.insert(name)
            log("watch: fence \(name) (\(why.prefix(60)))")
        case .rejoin(let name, _):
            guard let p = nodes.firstIndex(where: { $0.up && !$0.hung && $0.primary }) else { return }
            let i = index(name)
            // pg_rewind: what it has past the common prefix is discarded; then it follows.
            let common = zip(nodes[i].wal, nodes[p].wal).prefix { $0 == $1 }.count
            nodes[i].wal = Array(nodes[p].wal.prefix(common))
            nodes[i].primary = false
            nodes[i].up = true
            nodes[i].frozen = false
            nodes[i].upstream = nodes[p].name
            nodes[i].timeline = nodes[p].timeline
            memory.needsRejoin.remove(name)
            log("watch: rejoin \(name) to \(nodes[p].name)")
        case .start(let name):
            guard let p = nodes.firstIndex(where: { $0.up && !$0.hung && $0.primary }) else { return }
            let i = index(name)
            guard Self.isPrefix(nodes[i].wal, of: nodes[p].wal), !nodes[i].primary else {
                memory.needsRejoin.insert(name)
                log("watch: start \(name) refused: it cannot follow \(nodes[p].name)")
                return
            }
            nodes[i].up = true
            nodes[i].upstream = nodes[p].name
            nodes[i].frozen = false
            log("watch: start \(name) as a standby of \(nodes[p].name)")
        case .lowerSynchronous:
            guard let p = nodes.firstIndex(where: { $0.up && !$0.hung && $0.primary }) else { return }
            setSynchronous(p, .async, [], byRules: false)
            if dies(1, "watch lower") { return }
            state.lowered = input.applied
            state.applied = .init(.async, standbys: [])
            state.pending = nil
            // durability available's trade, by design: once lowered, the failover guard reasons
            // as for async replication, so commits acknowledged before are no longer guarded.
            acknowledged = []
            log("watch: lowered (durability available): earlier acknowledged commits are no longer guarded")
        case .restoreSynchronous:
            guard let p = nodes.firstIndex(where: { $0.up && !$0.hung && $0.primary }), let lowered = state.lowered else { return }
            setSynchronous(p, lowered.synchronousMode, lowered.standbys ?? [], byRules: false)
            if dies(1, "watch restore") { return }
            state.applied = lowered
            state.lowered = nil
            state.pending = nil
            log("watch: restored")
        case .nothing, .wait, .refuse, .paused:
            return
        }
    }

    /// The rule before issue 20: of two primaries, the recorded one is kept, and the other fenced.
    static func legacySecondPrimary(_ input: WatchDecision.Input) -> WatchDecision.Action? {
        let primaries = input.nodes.filter(\.observation.isPrimary)
        guard primaries.count > 1, let recorded = primaries.first(where: { $0.name == input.recordedPrimary }) else { return nil }
        let other = primaries.first { $0.name != recorded.name }!
        return .fence(other.name, why: "(legacy) a second primary beside the recorded \(recorded.name)")
    }

    // MARK: Invariants

    mutating func check() {
        guard violation == nil else { return }
        // 1. At most one node can acknowledge a synchronous commit.
        let acknowledging = nodes.filter { p in
            guard p.up, !p.hung, p.primary, p.ssn.mode != .async, !p.ssn.standbys.isEmpty else { return false }
            let streaming = p.ssn.standbys.filter { name in
                let s = nodes[index(name)]
                return streams(s) && s.upstream == p.name
            }
            return streaming.count >= p.ssn.mode.count
        }
        if acknowledging.count > 1 {
            violation = "two nodes can acknowledge synchronous commits: \(acknowledging.map(\.name).joined(separator: ", "))"
            return
        }
        // 2. The primary the rules keep holds every acknowledged commit.
        // A lone primary that other nodes know to be deposed (started by hand) is not kept: the
        // rules fence it; with none kept there is nothing to check until the next failover.
        guard let keep = PrimaryRules.kept(observe(), record: .init(state)) else { return }
        let wal = Set(nodes[index(keep.node.name)].wal.map(\.id))
        let missing = acknowledged.filter { !wal.contains($0) }
        if !missing.isEmpty {
            violation = "acknowledged commits \(missing.prefix(5).map(String.init).joined(separator: ", ")) are missing on \(keep.node.name), the primary the rules keep"
        }
    }
}

/// A small deterministic generator (SplitMix64), so that a failing seed replays exactly.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension SimulationTests {
    /// `PGCLUSTER_SIM_REPORT=1 swift test --filter SimulationTests/report`: searches from
    /// seed 0 for the first schedule each legacy rule fails (minutes; the seeds go in `found`).
    @Test("report: the first failing seed of each legacy rule", .enabled(if: ProcessInfo.processInfo.environment["PGCLUSTER_SIM_REPORT"] == "1"))
    func report() throws {
        for (name, legacy) in [("set before record", Simulation.Legacy.setBeforeRecord), ("record beats timeline", .recordBeatsTimeline)] {
            let found = try Simulation.firstViolation(legacy: legacy, schedules: Simulation.searchLimit)
            print("simulation: \(name): \(found.map { "seed \($0.seed): \($0.violation)" } ?? "not found in \(Simulation.searchLimit)")")
        }
    }
}

extension SimulationTests {
    /// `PGCLUSTER_SIM_SEED=N swift test --filter SimulationTests/replay`: one schedule's trace.
    @Test("replay: one seed's trace", .enabled(if: ProcessInfo.processInfo.environment["PGCLUSTER_SIM_SEED"] != nil))
    func replay() throws {
        let seed = UInt64(ProcessInfo.processInfo.environment["PGCLUSTER_SIM_SEED"] ?? "0") ?? 0
        var sim = try Simulation(seed: seed, legacy: [])
        sim.tracing = true
        sim.run(steps: Simulation.stepsPerSchedule)
        print(sim.trace.joined(separator: "\n"))
        print("violation: \(sim.violation ?? "none")")
    }
}
