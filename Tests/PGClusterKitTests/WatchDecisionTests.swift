import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// Every rule of the watcher (README.md, "Automatic failover"), as a table: what the nodes said, their postmasters,
/// the watcher's memory and clock, and the ONE action that must follow. No server.
@Suite("Watch decision: one action per tick")
struct WatchDecisionTests {
    typealias Obs = NodeFixture
    typealias Action = WatchDecision.Action

    /// What a case must come to: the action's event, its node, and parts of its details.
    struct Case: Sendable, CustomTestStringConvertible {
        var label: String
        var nodes: [WatchDecision.Node]
        var mode: SynchronousMode = .any(1)
        var recorded = "db_0"
        var lowered: ClusterState.Synchronous? = nil
        var paused = false
        var now: Double = 10
        var memory = WatchDecision.Memory()
        var settings = WatchSettings()
        /// The timeline recorded with `recorded`, and a promotion recorded as intended.
        var recordedTimeline: Int? = nil
        var pending: ClusterState.Pending? = nil
        var event: String
        var node: String? = nil
        var details: [String] = []
        /// For `paused`: the event it holds back.
        var held: String? = nil

        var testDescription: String { label }
    }

    static let streamingRows = [Obs.row("db_1", sync: "quorum"), Obs.row("db_2", sync: "quorum")]
    static func live(_ rows: [NodeObservation.ReplicationRow] = streamingRows, timeline: Int = 1, name: String = "db_0") -> WatchDecision.Node {
        .init(Obs.primary(name, current: "0/5000000", timeline: timeline, replication: rows), postmaster: .running)
    }
    static func standby(_ name: String, receiver: String? = "streaming", replay: String = "0/5000000", timeline: Int = 1) -> WatchDecision.Node {
        var observation = Obs.standby(name, replay: replay, timeline: timeline, receiver: receiver)
        observation.primaryConninfo = "host=127.0.0.1 port=5432 application_name=\(name)"
        return .init(observation, postmaster: .running)
    }
    static func down(_ name: String, _ postmaster: WatchDecision.Postmaster, role: NodeSpec.Role = .standby) -> WatchDecision.Node {
        .init(Obs.down(name, role: role), postmaster: postmaster)
    }
    static let healthy = [live(), standby("db_1"), standby("db_2")]
    static func lostSince(_ t: Double) -> WatchDecision.Memory { .init(primaryLostSince: t) }

    static let cases: [Case] = [
        Case(label: "all well: nothing", nodes: healthy, event: "ok"),
        // Detection
        Case(
            label: "postmaster gone (host answers): fail over at once, without waiting",
            nodes: [down("db_0", .stopped, role: .primary), standby("db_1", receiver: nil), standby("db_2", receiver: nil)],
            event: "failover", details: ["no postmaster runs", "db_1"]),
        Case(
            label: "postmaster alive but not answering (restarting): wait failoverAfter",
            nodes: [down("db_0", .running, role: .primary), standby("db_1", receiver: nil), standby("db_2", receiver: nil)],
            now: 10, memory: lostSince(9), event: "wait", details: ["1.0 s of 2.0", "postmaster runs"]),
        Case(
            label: "first tick without an answer starts the clock",
            nodes: [down("db_0", .running, role: .primary), standby("db_1", receiver: nil), standby("db_2", receiver: nil)],
            event: "wait", details: ["0.0 s of 2.0"]),
        Case(
            label: "silent for failoverAfter, its host answers, no standby streams: fence it first",
            nodes: [down("db_0", .running, role: .primary), standby("db_1", receiver: nil), standby("db_2", receiver: nil)],
            memory: lostSince(7.5), event: "fence", node: "db_0", details: ["lost for 2.5 s"]),
        Case(
            label: "silent for failoverAfter, host silent too, ANY 1 with both standbys: fail over (the quorum guard holds)",
            nodes: [down("db_0", .unknown, role: .primary), standby("db_1", receiver: nil), standby("db_2", receiver: "starting")],
            memory: lostSince(7.5), event: "failover", details: ["its host does not answer"]),
        Case(
            label: "a standby still streams from the silent primary: never fail over",
            nodes: [down("db_0", .unknown, role: .primary), standby("db_1"), standby("db_2", receiver: nil)],
            memory: lostSince(0), event: "wait", details: ["db_1 still streams"]),
        Case(
            label: "a standby still streams, host answers: no fence either",
            nodes: [down("db_0", .running, role: .primary), standby("db_1", receiver: nil), standby("db_2")],
            memory: lostSince(0), event: "wait", details: ["db_2 still streams"]),
        // Safety
        Case(
            label: "quorum guard: ANY 1 of two, one standby down too: refused, never --allow-data-loss",
            nodes: [down("db_0", .stopped, role: .primary), standby("db_1", receiver: nil), down("db_2", .stopped)],
            event: "refused", details: ["quorum cannot be proven", "db_2"]),
        Case(
            label: "quorum guard holds for a silent primary too: no fence before a refused failover",
            nodes: [down("db_0", .running, role: .primary), standby("db_1", receiver: nil), down("db_2", .unknown)],
            memory: lostSince(0), event: "refused", details: ["quorum cannot be proven"]),
        Case(
            label: "async, old primary proven stopped: fail over",
            nodes: [down("db_0", .stopped, role: .primary), standby("db_1", receiver: nil), standby("db_2", receiver: nil)],
            mode: .async, event: "failover"),
        Case(
            label: "async, old primary's host silent: refused (cannot be proven stopped)",
            nodes: [down("db_0", .unknown, role: .primary), standby("db_1", receiver: nil), standby("db_2", receiver: nil)],
            mode: .async, memory: lostSince(0), event: "refused", details: ["asynchronous", "cannot be proven stopped"]),
        Case(
            label: "async, old primary runs but does not answer: fence it (then it is proven stopped)",
            nodes: [down("db_0", .running, role: .primary), standby("db_1", receiver: nil), standby("db_2", receiver: nil)],
            mode: .async, memory: lostSince(0), event: "fence", node: "db_0"),
        Case(
            label: "lowered by durability available counts as async: host silent, refused",
            nodes: [down("db_0", .unknown, role: .primary), standby("db_1", receiver: nil), standby("db_2", receiver: nil)],
            lowered: .init(.any(1), standbys: ["db_1", "db_2"]), memory: lostSince(0), event: "refused",
            details: ["lowered by durability: available"]),
        // Never a second primary
        Case(
            label: "two primaries: the one not recorded, on the older timeline, is fenced",
            nodes: [live(timeline: 1), live([], timeline: 2, name: "db_1"), standby("db_2")], recorded: "db_1",
            event: "fence", node: "db_0", details: ["second primary beside db_1"]),
        Case(
            label: "two primaries, none recorded: the older timeline is fenced",
            nodes: [live(timeline: 3), live([], timeline: 2, name: "db_1"), standby("db_2")], recorded: "db_2",
            event: "fence", node: "db_1"),
        // Issue 20, bug 5: the record lags a promotion (the watcher died before recording it);
        // the newest timeline is the primary whatever the record says.
        Case(
            label: "two primaries, the recorded one on the older timeline: the newest timeline wins, the recorded one is fenced",
            nodes: [live(timeline: 1), live([], timeline: 2, name: "db_1"), standby("db_2", timeline: 2)], recorded: "db_0",
            event: "fence", node: "db_0", details: ["beside db_1", "newest timeline wins"]),
        Case(
            label: "a lone primary on an older timeline than a standby knows: a deposed primary back, fenced, never adopted",
            nodes: [live([], timeline: 1), down("db_1", .unknown, role: .primary), standby("db_2", receiver: nil, timeline: 2)],
            recorded: "db_0", event: "fence", node: "db_0", details: ["deposed primary"]),
        // Found by the simulation: the record is evidence too.
        Case(
            label: "a lone primary on an older timeline than the recorded one, every node that saw it down: deposed, fenced",
            nodes: [live([], timeline: 1), down("db_1", .stopped, role: .primary), down("db_2", .stopped)],
            recorded: "db_1", recordedTimeline: 2, event: "fence", node: "db_0", details: ["deposed"]),
        Case(
            label: "a lone primary older than a promotion a failover was making (not recorded yet): fenced",
            nodes: [live([], timeline: 1), down("db_1", .running, role: .primary), standby("db_2", receiver: nil)],
            recorded: "db_0", pending: .init(primary: "db_1", synchronous: .init(.any(1), standbys: ["db_2"]), promotesTo: 2),
            event: "fence", node: "db_0"),
        // Found by an exploratory session: a switchover that failed before its promotion left
        // its intent, and the watcher fenced the healthy primary it had left in place.
        Case(
            label: "a promotion intended for a standby that still streams from the live primary did not happen: the primary is kept",
            nodes: [live([Obs.row("db_1", sync: "quorum"), Obs.row("db_2", sync: "quorum")]), standby("db_1"), standby("db_2")],
            recorded: "db_0", pending: .init(primary: "db_1", synchronous: .init(.any(1), standbys: ["db_0", "db_2"]), promotesTo: 2),
            event: "ok"),
        Case(
            label: "no primary; the node a failover was promoting is silent but running: fenced before anything else",
            nodes: [down("db_0", .stopped, role: .primary), down("db_1", .running), standby("db_2", receiver: nil)],
            pending: .init(primary: "db_1", synchronous: .init(.any(1), standbys: ["db_2"]), promotesTo: 2),
            event: "fence", node: "db_1", details: ["nobody recorded"]),
        Case(
            label: "no primary; the node a failover was promoting cannot be asked: refused",
            nodes: [down("db_0", .stopped, role: .primary), down("db_1", .unknown), standby("db_2", receiver: nil)],
            pending: .init(primary: "db_1", synchronous: .init(.any(1), standbys: ["db_2"]), promotesTo: 2),
            event: "refused", details: ["promoting db_1"]),
        Case(
            label: "two primaries on one timeline (two forks, one number): the recorded one on it is kept",
            nodes: [live(timeline: 2), live([], timeline: 2, name: "db_1"), standby("db_2")], recorded: "db_1",
            recordedTimeline: 2, event: "fence", node: "db_0"),
        Case(
            label: "two primaries on one timeline, neither recorded: refused, nobody can tell",
            nodes: [live(timeline: 2), live([], timeline: 2, name: "db_1"), standby("db_2")], recorded: "db_2",
            event: "refused", details: ["cannot tell"]),
        Case(
            label: "an unfinished failover (a standby still frozen) is finished",
            nodes: [live([]), standby("db_1", receiver: nil).frozen, standby("db_2")], event: "failover",
            details: ["interrupted failover"]),
        // After a failover
        Case(
            label: "the deposed primary is stopped: rejoin (auto)",
            nodes: [down("db_0", .stopped, role: .primary), live([Obs.row("db_2", sync: "quorum")], timeline: 2, name: "db_1"), standby("db_2")],
            recorded: "db_1", memory: .init(needsRejoin: ["db_0"]), event: "rejoin", node: "db_0"),
        Case(
            label: "the deposed primary is stopped, rejoin manual: left stopped and named",
            nodes: [down("db_0", .stopped, role: .primary), live([Obs.row("db_2", sync: "quorum")], timeline: 2, name: "db_1"), standby("db_2")],
            recorded: "db_1", memory: .init(needsRejoin: ["db_0"]), settings: WatchSettings(rejoin: .manual), event: "ok",
            details: ["rejoin: manual", "pgcluster rejoin db_0"]),
        Case(
            label: "a stopped standby is started",
            nodes: [live([Obs.row("db_1", sync: "quorum")]), standby("db_1"), down("db_2", .stopped)], event: "start", node: "db_2"),
        Case(
            label: "a standby whose postmaster runs but does not answer is left alone",
            nodes: [live([Obs.row("db_1", sync: "quorum")]), standby("db_1"), down("db_2", .running)], event: "ok"),
        Case(
            label: "a node whose start failed is left alone until its retry time",
            nodes: [live([Obs.row("db_1", sync: "quorum")]), standby("db_1"), down("db_2", .stopped)],
            memory: .init(retryAfter: ["db_2": 20]), event: "ok"),
        // Durability
        Case(
            label: "available: no synchronous standby streams: lower",
            nodes: [live([]), down("db_1", .stopped), down("db_2", .stopped)], settings: WatchSettings(durability: .available),
            event: "lower-synchronous", details: ["no synchronous standby streams"]),
        Case(
            label: "available: lowering comes before starting the standbys (commits must not hang meanwhile)",
            nodes: [live([]), down("db_1", .stopped), standby("db_2", receiver: nil)], settings: WatchSettings(durability: .available),
            event: "lower-synchronous"),
        Case(
            label: "strict never lowers: the stopped standby is started instead",
            nodes: [live([]), down("db_1", .stopped), down("db_2", .stopped)], event: "start", node: "db_1"),
        Case(
            label: "available, ANY 1 and one of two streams: nothing to lower",
            nodes: [live([Obs.row("db_2", sync: "quorum")]), down("db_1", .running), standby("db_2")],
            settings: WatchSettings(durability: .available), event: "ok"),
        Case(
            label: "available, ANY 2 and one of two streams: lower",
            nodes: [live([Obs.row("db_2", sync: "quorum")]), down("db_1", .running), standby("db_2")], mode: .any(2),
            settings: WatchSettings(durability: .available), event: "lower-synchronous", details: ["only 1"]),
        Case(
            label: "available, lowered, a member streams again: restore",
            nodes: [live([Obs.row("db_1")]), standby("db_1"), down("db_2", .stopped)], mode: .async,
            lowered: .init(.any(1), standbys: ["db_1", "db_2"]), settings: WatchSettings(durability: .available),
            event: "restore-synchronous", details: ["db_1 streams again", "ANY 1"]),
        Case(
            label: "available, lowered, none streams yet: start the standby first",
            nodes: [live([]), down("db_1", .stopped), down("db_2", .stopped)], mode: .async,
            lowered: .init(.any(1), standbys: ["db_1", "db_2"]), settings: WatchSettings(durability: .available),
            event: "start", node: "db_1"),
        // Pause
        Case(
            label: "paused: a dead primary is reported, not failed over",
            nodes: [down("db_0", .stopped, role: .primary), standby("db_1", receiver: nil), standby("db_2", receiver: nil)],
            paused: true, event: "paused", details: ["would failover", "pgcluster resume"], held: "failover"),
        Case(
            label: "paused: a stopped standby is not started",
            nodes: [live([Obs.row("db_1")]), standby("db_1"), down("db_2", .stopped)], paused: true, event: "paused", held: "start"),
        Case(
            label: "paused: refusals and waiting are still reported as such",
            nodes: [down("db_0", .stopped, role: .primary), standby("db_1", receiver: nil), down("db_2", .stopped)],
            paused: true, event: "refused"),
    ]

    @Test(arguments: cases)
    func decides(_ c: Case) {
        var memory = c.memory
        let applied = ClusterState.Synchronous(c.mode, standbys: c.nodes.map(\.name).filter { $0 != c.recorded })
        let input = WatchDecision.Input(
            nodes: c.nodes, recordedPrimary: c.recorded, applied: applied, lowered: c.lowered, paused: c.paused, now: c.now,
            pending: c.pending, recordedTimeline: c.recordedTimeline)
        let action = WatchDecision.next(input, memory: &memory, settings: c.settings)
        #expect(action.event == c.event, "\(action)")
        if let node = c.node { #expect(action.node == node, "\(action)") }
        for part in c.details { #expect(action.details.contains(part), "\(action.details)") }
        if let held = c.held, case .paused(let inner) = action { #expect(inner.event == held) }
        #expect(action.changes == !["ok", "wait", "refused", "paused"].contains(c.event))
    }

    @Test("the clock: lost since the last probe that found it answering (or the first without it), forgotten once one answers")
    func memoryOfLoss() {
        var memory = WatchDecision.Memory()
        let silent = [Self.down("db_0", .running, role: .primary), Self.standby("db_1", receiver: nil), Self.standby("db_2", receiver: nil)]
        let applied = ClusterState.Synchronous(.any(1), standbys: ["db_1", "db_2"])
        func tick(_ nodes: [WatchDecision.Node], at now: Double) -> Action {
            WatchDecision.next(.init(nodes: nodes, recordedPrimary: "db_0", applied: applied, now: now), memory: &memory, settings: .init())
        }
        #expect(tick(silent, at: 100).event == "wait")
        #expect(memory.primaryLostSince == 100)
        #expect(tick(silent, at: 101.9).event == "wait")
        #expect(tick(Self.healthy, at: 102).event == "ok")
        #expect(memory.primaryLostSince == nil)
        #expect(tick(silent, at: 102.5).event == "wait")
        // Silent since the probe that last found it answering, one interval before.
        #expect(memory.primaryLostSince == 102)
        #expect(tick(silent, at: 103.9).event == "wait")
        #expect(tick(silent, at: 104.1).event == "fence")
        // A last answer from long ago (the watcher was busy) does not shorten the wait.
        memory = .init()
        #expect(tick(Self.healthy, at: 110).event == "ok")
        #expect(tick(silent, at: 120).event == "wait")
        #expect(memory.primaryLostSince == 120)
        // The clock starts when the probes that went unanswered were sent, not when they gave up.
        memory = .init()
        #expect(WatchDecision.next(
            .init(nodes: silent, recordedPrimary: "db_0", applied: applied, now: 201, probedAt: 200), memory: &memory,
            settings: .init()).details.contains("1.0 s of 2.0"))
        #expect(memory.primaryLostSince == 200)
    }

    @Test("the rendered replication timeouts let standbys give up a silent primary within failoverAfter")
    func replicationTimeouts() {
        for after in [0.5, 1, 2, 5, 30] {
            let settings = WatchSettings(failoverAfter: after)
            let ms = Int(settings.replicationTimeout.dropLast(2))!
            #expect(Double(ms) / 1000 < after, "\(settings.replicationTimeout) for failoverAfter \(after)")
            #expect(ms >= 200)
        }
    }

    @Test("one JSON object per line: time, event, node, details")
    func jsonLines() throws {
        let line = WatchLogHandler.line(
            event: .init(level: .info, message: "db_1 is the primary", metadata: ["event": "failed-over", "node": "db_1"],
                source: "", file: "", function: "", line: 0),
            metadata: [:], format: .json, at: Date(timeIntervalSince1970: 0))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        #expect(object == ["time": "1970-01-01T00:00:00.000Z", "event": "failed-over", "node": "db_1", "details": "db_1 is the primary"])
        #expect(!line.contains("\n"))
        let text = WatchLogHandler.line(
            event: .init(level: .info, message: "x", metadata: ["event": "start"], source: "", file: "", function: "", line: 0),
            metadata: [:], format: .text, at: Date(timeIntervalSince1970: 0))
        #expect(text == "1970-01-01T00:00:00.000Z start x")
    }
}

@Suite("which due step stops a long one (a rejoin) in progress")
struct LongStepTests {
    @Test("failover, fence and lowering stop it; a rejoin, a start, a restore, a paused failover or waiting do not", arguments: [
        (WatchDecision.Action.failover("node0 is down"), true),
        (.fence("node1", why: "lost"), true),
        (.lowerSynchronous("no synchronous standby streams"), true),
        (.rejoin("node0", why: "a former primary"), false),
        (.start("node2"), false),
        (.restoreSynchronous("node2 streams again"), false),
        (.paused(.failover("node0 is down")), false),
        (.wait("node0 lost for 1.0 s of 2.0"), false),
        (.refuse("not provably stopped"), false),
        (.nothing("node1 is the primary"), false),
    ])
    func stops(action: WatchDecision.Action, stops: Bool) {
        #expect(action.stopsLongStep == stops, "\(action)")
    }
}

extension WatchDecision.Node {
    /// As a failover's freeze leaves it: primary_conninfo emptied, no WAL receiver.
    var frozen: Self {
        var copy = self
        copy.observation.primaryConninfo = ""
        copy.observation.walReceiver = nil
        return copy
    }
}

@Suite("membership: this watcher's spec against the recorded members")
struct MembershipTests {
    static let nodes = [
        NodeSpec(name: "db_0", host: "10.0.0.1", port: 5432, role: .primary),
        NodeSpec(name: "db_1", host: "10.0.0.2", port: 5432, role: .standby),
    ]

    @Test("agreeing, or nothing recorded: nothing to say")
    func agree() {
        #expect(Membership.disagreement(spec: Self.nodes, recorded: Self.nodes.map(ClusterState.Member.init)) == nil)
        #expect(Membership.disagreement(spec: Self.nodes, recorded: nil) == nil)
    }

    @Test("a member missing here, a node not recorded, a node that moved: each named, with the fix")
    func differ() throws {
        var recorded = Self.nodes.map(ClusterState.Member.init)
        recorded.append(ClusterState.Member(NodeSpec(name: "db_2", host: "10.0.0.3", port: 5432, role: .standby)))
        let extra = try #require(Membership.disagreement(spec: Self.nodes, recorded: recorded))
        #expect(extra.contains("recorded but not in this spec (not watched here): db_2"), "\(extra)")
        #expect(extra.contains("last applied from"))
        let unrecorded = try #require(Membership.disagreement(spec: Self.nodes, recorded: Array(recorded.prefix(1))))
        #expect(unrecorded.contains("not recorded (left alone until `pgcluster apply` adds them): db_1"), "\(unrecorded)")
        recorded = Self.nodes.map(ClusterState.Member.init)
        recorded[1].port = 5433
        let moved = try #require(Membership.disagreement(spec: Self.nodes, recorded: recorded))
        #expect(moved.contains("db_1 is 10.0.0.2:5433 on record, 10.0.0.2:5432 here"), "\(moved)")
    }
}
