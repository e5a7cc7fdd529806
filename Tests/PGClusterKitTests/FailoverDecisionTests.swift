import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// Builds `NodeObservation`s for the table tests of the pure cluster decisions
/// (failover, quorum, status, switchover). LSNs are written as PostgreSQL prints them.
enum NodeFixture {
    static func lsn(_ text: String) -> LSN {
        guard let lsn = LSN(text) else { preconditionFailure("bad LSN in a test table: \(text)") }
        return lsn
    }

    /// A standby that answers, in recovery, with what it has replayed and (optionally) received.
    static func standby(
        _ name: String, replay: String?, received: String? = nil, priority: Int = 100, timeline: Int? = 1,
        port: Int = 5432, upstream: (host: String, port: Int)? = nil, receiver: String? = "streaming"
    ) -> NodeObservation {
        var observation = NodeObservation(node: NodeSpec(name: name, port: port, role: .standby, priority: priority))
        observation.inRecovery = true
        observation.timeline = timeline
        observation.replayLsn = replay.map(lsn)
        observation.receiveLsn = received.map(lsn)
        if let receiver {
            observation.walReceiver = .init(
                status: receiver, senderHost: upstream?.host, senderPort: upstream?.port, receivedTimeline: timeline,
                slot: "pgcluster_\(name)")
        }
        return observation
    }

    /// A node that did not answer.
    static func down(
        _ name: String, role: NodeSpec.Role = .standby, priority: Int = 100, port: Int = 5432,
        error: String = "connection refused"
    ) -> NodeObservation {
        NodeObservation(node: NodeSpec(name: name, port: port, role: role, priority: priority), error: error)
    }

    /// One row of a primary's pg_stat_replication.
    static func row(
        _ name: String, state: String = "streaming", sync: String = "async", replay: String? = nil
    ) -> NodeObservation.ReplicationRow {
        .init(
            applicationName: name, state: state, syncState: sync, replayLsn: replay.map(lsn), flushLsn: replay.map(lsn),
            replayLagSeconds: nil)
    }

    /// A node that answers and is not in recovery.
    static func primary(
        _ name: String, current: String, timeline: Int = 1, port: Int = 5432, priority: Int = 100,
        synchronousStandbyNames: String = "", replication: [NodeObservation.ReplicationRow] = []
    ) -> NodeObservation {
        var observation = NodeObservation(node: NodeSpec(name: name, port: port, role: .primary, priority: priority))
        observation.inRecovery = false
        observation.timeline = timeline
        observation.currentLsn = lsn(current)
        observation.synchronousStandbyNames = synchronousStandbyNames
        observation.replication = replication
        return observation
    }
}

@Suite("Failover decision: quorum guard, freshest candidate, refusals")
struct FailoverDecisionTests {
    typealias Obs = NodeFixture

    /// What a case must come to: a plan for `candidate`, or a refusal with `code`.
    struct Outcome: Sendable {
        var candidate: String?
        var code: ExitKind?
        /// Substrings of the refusal's reason, or of the plan's reason.
        var reason: [String] = []
        var rePoint: [String]? = nil
        var unreachable: [String]? = nil
        var otherTimeline: [String]? = nil
        /// One substring for each warning the plan must carry; a plan carries exactly these many.
        var warnings: [String] = []
        var candidateLsn: String? = nil
        var freshestLsn: String? = nil
        var timeline: Int? = nil

        static func promote(
            _ candidate: String, reason: [String] = [], rePoint: [String]? = nil, unreachable: [String]? = nil,
            otherTimeline: [String]? = [], warnings: [String] = [], candidateLsn: String? = nil,
            freshestLsn: String? = nil, timeline: Int? = nil
        ) -> Outcome {
            Outcome(
                candidate: candidate, code: nil, reason: reason, rePoint: rePoint, unreachable: unreachable,
                otherTimeline: otherTimeline, warnings: warnings, candidateLsn: candidateLsn, freshestLsn: freshestLsn,
                timeline: timeline)
        }

        static func refuse(_ code: ExitKind, _ reason: String...) -> Outcome {
            Outcome(candidate: nil, code: code, reason: reason)
        }
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var label: String
        var observations: [NodeObservation]
        var sync: FailoverDecision.SyncConfig
        var request = FailoverDecision.Request()
        var expect: Outcome
        var testDescription: String { label }
    }

    static func anyOf(_ k: Int, _ names: String...) -> FailoverDecision.SyncConfig { .init(mode: .any(k), standbys: names) }
    static func firstOf(_ k: Int, _ names: String...) -> FailoverDecision.SyncConfig { .init(mode: .first(k), standbys: names) }
    static let asynchronous = FailoverDecision.SyncConfig(mode: .async, standbys: [])
    static let deadPrimary = Obs.down("db_0", role: .primary)
    static let asyncWarning = "commits acknowledged after the freshest standby's position may be lost"

    static let cases: [Case] = [
        // Quorum guard: |S| - k + 1 members of S must answer.
        Case(
            label: "ANY 1 of 2, one unreachable: refused, naming it",
            observations: [deadPrimary, Obs.standby("db_1", replay: "0/3000000"), Obs.down("db_2")],
            sync: anyOf(1, "db_1", "db_2"),
            expect: .refuse(.refused, "quorum cannot be proven", "2 of them must answer", "unreachable: db_2", "--allow-data-loss")),
        Case(
            label: "ANY 1 of 2, one unreachable, --allow-data-loss: proceeds with a warning",
            observations: [deadPrimary, Obs.standby("db_1", replay: "0/3000000"), Obs.down("db_2")],
            sync: anyOf(1, "db_1", "db_2"), request: .init(allowDataLoss: true),
            expect: .promote(
                "db_1", rePoint: [], unreachable: ["db_0", "db_2"],
                warnings: ["quorum cannot be proven: synchronous_standby_names was ANY 1 over db_1, db_2"])),
        Case(
            label: "ANY 1 of 2, both answer: proceeds without warnings",
            observations: [deadPrimary, Obs.standby("db_1", replay: "0/3000000"), Obs.standby("db_2", replay: "0/2000000")],
            sync: anyOf(1, "db_1", "db_2"),
            expect: .promote(
                "db_1", reason: ["the freshest standby (0/3000000)"], rePoint: ["db_2"], unreachable: ["db_0"],
                warnings: [], candidateLsn: "0/3000000", freshestLsn: "0/3000000", timeline: 1)),
        // The quorum guard: ANY 1 over 3 needs 3 - 1 + 1 = 3 members answering; the missing one may
        // be the only one that acknowledged the last commit.
        Case(
            label: "ANY 1 of 3, one unreachable: refused (all 3 must answer)",
            observations: [
                deadPrimary, Obs.standby("db_1", replay: "0/3000000"), Obs.standby("db_2", replay: "0/3000000"),
                Obs.down("db_3"),
            ],
            sync: anyOf(1, "db_1", "db_2", "db_3"),
            expect: .refuse(.refused, "3 of them must answer", "only 2 do", "unreachable: db_3", "--allow-data-loss")),
        Case(
            label: "ANY 1 of 3, all answer: proceeds",
            observations: [
                deadPrimary, Obs.standby("db_1", replay: "0/3000000"), Obs.standby("db_2", replay: "0/3000000"),
                Obs.standby("db_3", replay: "0/3000000"),
            ],
            sync: anyOf(1, "db_1", "db_2", "db_3"),
            expect: .promote("db_1", rePoint: ["db_2", "db_3"], unreachable: ["db_0"], warnings: [])),
        Case(
            label: "ANY 2 of 3, one unreachable: proceeds",
            observations: [
                deadPrimary, Obs.standby("db_1", replay: "0/4000000"), Obs.standby("db_2", replay: "0/5000000"),
                Obs.down("db_3"),
            ],
            sync: anyOf(2, "db_1", "db_2", "db_3"),
            expect: .promote("db_2", rePoint: ["db_1"], unreachable: ["db_0", "db_3"], warnings: [])),
        Case(
            label: "ANY 2 of 3, two unreachable: refused",
            observations: [deadPrimary, Obs.standby("db_1", replay: "0/4000000"), Obs.down("db_2"), Obs.down("db_3")],
            sync: anyOf(2, "db_1", "db_2", "db_3"),
            expect: .refuse(.refused, "2 of them must answer", "only 1 do", "unreachable: db_2, db_3", "--allow-data-loss")),
        Case(
            label: "FIRST 1 of 2, one unreachable: refused",
            observations: [deadPrimary, Obs.down("sync"), Obs.standby("async", replay: "0/3000000")],
            sync: firstOf(1, "sync", "async"),
            expect: .refuse(.refused, "FIRST 1 over sync, async", "unreachable: sync", "--allow-data-loss")),
        Case(
            label: "FIRST 2 of 3, one unreachable: proceeds",
            observations: [
                deadPrimary, Obs.standby("db_1", replay: "0/4000000"), Obs.down("db_2"),
                Obs.standby("db_3", replay: "0/4000100"),
            ],
            sync: firstOf(2, "db_1", "db_2", "db_3"),
            expect: .promote("db_3", rePoint: ["db_1"], unreachable: ["db_0", "db_2"], warnings: [])),
        Case(
            label: "FIRST 2 of 3, two unreachable: refused",
            observations: [deadPrimary, Obs.down("db_1"), Obs.down("db_2"), Obs.standby("db_3", replay: "0/4000100")],
            sync: firstOf(2, "db_1", "db_2", "db_3"),
            expect: .refuse(.refused, "FIRST 2", "unreachable: db_1, db_2")),
        Case(
            label: "async: proceeds, saying commits may be lost",
            observations: [deadPrimary, Obs.standby("db_1", replay: "0/3000000"), Obs.down("db_2")],
            sync: asynchronous,
            expect: .promote("db_1", rePoint: [], unreachable: ["db_0", "db_2"], warnings: [asyncWarning])),
        Case(
            label: "sync members missing from the observations count as unreachable",
            observations: [deadPrimary, Obs.standby("db_1", replay: "0/3000000"), Obs.standby("db_2", replay: "0/3000000")],
            sync: anyOf(1, "db_1", "db_2", "ghost"),
            expect: .refuse(.refused, "3 of them must answer", "only 2 do", "unreachable: ghost")),
        Case(
            label: "sync members missing from the observations, enough others answer: proceeds",
            observations: [deadPrimary, Obs.standby("db_1", replay: "0/3000000"), Obs.standby("db_2", replay: "0/3000100")],
            sync: anyOf(2, "db_1", "db_2", "ghost"),
            expect: .promote("db_2", rePoint: ["db_1"], unreachable: ["db_0"], warnings: [])),

        // Choosing the freshest.
        Case(
            label: "the freshest wins over a higher priority and an earlier name",
            observations: [
                deadPrimary, Obs.standby("db_1", replay: "0/3000000", priority: 200),
                Obs.standby("db_2", replay: "0/3000100", priority: 10),
            ],
            sync: anyOf(1, "db_1", "db_2"),
            expect: .promote(
                "db_2", reason: ["the freshest standby (0/3000100)"], rePoint: ["db_1"], warnings: [],
                candidateLsn: "0/3000100", freshestLsn: "0/3000100")),
        Case(
            label: "received WAL counts, not only replayed",
            observations: [
                deadPrimary, Obs.standby("db_1", replay: "0/5000000"),
                Obs.standby("db_2", replay: "0/4000000", received: "0/6000000"),
            ],
            sync: anyOf(1, "db_1", "db_2"),
            expect: .promote("db_2", rePoint: ["db_1"], warnings: [], candidateLsn: "0/6000000", freshestLsn: "0/6000000")),
        Case(
            label: "equal LSN: the higher priority wins",
            observations: [
                deadPrimary, Obs.standby("db_1", replay: "0/3000000", priority: 50),
                Obs.standby("db_2", replay: "0/3000000", priority: 100),
            ],
            sync: anyOf(1, "db_1", "db_2"),
            expect: .promote("db_2", reason: ["tied with db_1", "higher priority (100)"], rePoint: ["db_1"], warnings: [])),
        Case(
            label: "equal LSN and priority: the first name wins",
            observations: [
                deadPrimary, Obs.standby("db_2", replay: "0/3000000", received: "0/3000080"),
                Obs.standby("db_1", replay: "0/3000080"),
            ],
            sync: anyOf(1, "db_1", "db_2"),
            expect: .promote("db_1", reason: ["tied with db_2", "first by name"], rePoint: ["db_2"], warnings: [])),
        Case(
            label: "priority 0 is never chosen, even when freshest: the next one is behind, refused",
            observations: [
                deadPrimary, Obs.standby("db_1", replay: "0/5000000", priority: 0),
                Obs.standby("db_2", replay: "0/4000000"),
            ],
            sync: anyOf(1, "db_1", "db_2"),
            expect: .refuse(.refused, "db_2 is behind", "db_1 has 0/5000000", "16777216 bytes more", "--allow-data-loss")),
        Case(
            label: "priority 0 freshest, --allow-data-loss: the next one, with a warning",
            observations: [
                deadPrimary, Obs.standby("db_1", replay: "0/5000000", priority: 0),
                Obs.standby("db_2", replay: "0/4000000"),
            ],
            sync: anyOf(1, "db_1", "db_2"), request: .init(allowDataLoss: true),
            expect: .promote(
                "db_2", rePoint: [], warnings: ["db_2 is behind: it has 0/4000000, but db_1 has 0/5000000"],
                candidateLsn: "0/4000000", freshestLsn: "0/5000000")),
        Case(
            label: "every reachable standby has priority 0: refused",
            observations: [
                deadPrimary, Obs.standby("db_1", replay: "0/5000000", priority: 0),
                Obs.standby("db_2", replay: "0/4000000", priority: 0),
            ],
            sync: anyOf(1, "db_1", "db_2"),
            expect: .refuse(.refused, "no standby may be promoted", "priority 0")),

        // --candidate.
        Case(
            label: "--candidate behind the freshest: refused",
            observations: [deadPrimary, Obs.standby("db_1", replay: "0/5000000"), Obs.standby("db_2", replay: "0/4000000")],
            sync: anyOf(1, "db_1", "db_2"), request: .init(candidate: "db_2"),
            expect: .refuse(.refused, "db_2 is behind", "db_1 has 0/5000000", "--allow-data-loss")),
        Case(
            label: "--candidate behind the freshest, --allow-data-loss: proceeds with a warning",
            observations: [deadPrimary, Obs.standby("db_1", replay: "0/5000000"), Obs.standby("db_2", replay: "0/4000000")],
            sync: anyOf(1, "db_1", "db_2"), request: .init(candidate: "db_2", allowDataLoss: true),
            expect: .promote(
                "db_2", reason: ["named with --candidate"], rePoint: [], warnings: ["db_2 is behind"],
                candidateLsn: "0/4000000", freshestLsn: "0/5000000")),
        Case(
            label: "--candidate as fresh as the best but of lower priority: taken",
            observations: [
                deadPrimary, Obs.standby("db_1", replay: "0/5000000", priority: 10),
                Obs.standby("db_2", replay: "0/5000000", priority: 100),
            ],
            sync: anyOf(1, "db_1", "db_2"), request: .init(candidate: "db_1"),
            expect: .promote("db_1", reason: ["named with --candidate"], rePoint: ["db_2"], warnings: [])),
        Case(
            label: "--candidate unknown: usage error",
            observations: [deadPrimary, Obs.standby("db_1", replay: "0/5000000"), Obs.standby("db_2", replay: "0/4000000")],
            sync: anyOf(1, "db_1", "db_2"), request: .init(candidate: "db_9"),
            expect: .refuse(.usage, "--candidate db_9: no such node", "db_0, db_1, db_2")),
        Case(
            label: "--candidate that is down: refused",
            observations: [deadPrimary, Obs.standby("db_1", replay: "0/5000000"), Obs.down("db_2", error: "timeout expired")],
            sync: anyOf(1, "db_1", "db_2"), request: .init(candidate: "db_2", allowDataLoss: true),
            expect: .refuse(.refused, "--candidate db_2 does not answer as a standby", "timeout expired")),
        Case(
            label: "--candidate with priority 0: usage error",
            observations: [
                deadPrimary, Obs.standby("db_1", replay: "0/5000000", priority: 0),
                Obs.standby("db_2", replay: "0/4000000"),
            ],
            sync: anyOf(1, "db_1", "db_2"), request: .init(candidate: "db_1"),
            expect: .refuse(.usage, "--candidate db_1 has priority 0")),
        Case(
            label: "--candidate on an older timeline: refused",
            observations: [
                deadPrimary, Obs.standby("db_1", replay: "0/9000000", timeline: 1),
                Obs.standby("db_2", replay: "0/5000000", timeline: 2),
            ],
            sync: anyOf(1, "db_1", "db_2"), request: .init(candidate: "db_1", allowDataLoss: true),
            expect: .refuse(.refused, "--candidate db_1 is on timeline 1, older than 2")),

        // Nothing to fail over from, nothing to promote.
        Case(
            label: "a live primary: refused, pointing at switchover",
            observations: [
                Obs.primary("db_0", current: "0/6000000"), Obs.standby("db_1", replay: "0/5000000"),
                Obs.standby("db_2", replay: "0/4000000"),
            ],
            sync: anyOf(1, "db_1", "db_2"), request: .init(allowDataLoss: true),
            expect: .refuse(.refused, "db_0 answers as a primary", "pgcluster switchover")),
        Case(
            label: "no standby answers: failure",
            observations: [deadPrimary, Obs.down("db_1"), Obs.down("db_2")],
            sync: asynchronous, request: .init(allowDataLoss: true),
            expect: .refuse(.failure, "no standby answers", "down: db_0, db_1, db_2")),

        // Timelines.
        Case(
            label: "a standby on an older timeline is never chosen, even with a higher LSN",
            observations: [
                deadPrimary, Obs.standby("db_1", replay: "0/9000000", timeline: 1),
                Obs.standby("db_2", replay: "0/5000000", timeline: 2),
            ],
            sync: anyOf(1, "db_1", "db_2"),
            expect: .promote(
                "db_2", rePoint: [], unreachable: ["db_0"], otherTimeline: ["db_1"], warnings: [],
                candidateLsn: "0/5000000", freshestLsn: "0/5000000", timeline: 2)),
    ]

    @Test("decide", arguments: cases)
    func decide(_ c: Case) {
        let result = FailoverDecision.decide(observations: c.observations, sync: c.sync, request: c.request)
        switch result {
        case .success(let plan):
            guard let candidate = c.expect.candidate else {
                Issue.record("expected a refusal (\(c.expect.code.map { "\($0)" } ?? "?")), got a plan for \(plan.candidate)")
                return
            }
            #expect(plan.candidate == candidate)
            for text in c.expect.reason {
                #expect(plan.reason.contains(text), "reason: \(plan.reason)")
            }
            if let rePoint = c.expect.rePoint { #expect(plan.rePoint == rePoint) }
            if let unreachable = c.expect.unreachable { #expect(plan.unreachable == unreachable) }
            if let otherTimeline = c.expect.otherTimeline { #expect(plan.otherTimeline == otherTimeline) }
            #expect(plan.warnings.count == c.expect.warnings.count, "warnings: \(plan.warnings)")
            for text in c.expect.warnings {
                #expect(plan.warnings.contains { $0.contains(text) }, "warnings: \(plan.warnings)")
            }
            if let lsn = c.expect.candidateLsn { #expect(plan.candidateLsn == NodeFixture.lsn(lsn)) }
            if let lsn = c.expect.freshestLsn { #expect(plan.freshestLsn == NodeFixture.lsn(lsn)) }
            if let timeline = c.expect.timeline { #expect(plan.timeline == timeline) }
            #expect(!plan.rePoint.contains(candidate))
        case .failure(let refusal):
            guard let code = c.expect.code else {
                Issue.record("expected a plan for \(c.expect.candidate ?? "?"), got a refusal: \(refusal.reason)")
                return
            }
            #expect(refusal.exitCode == code, "reason: \(refusal.reason)")
            for text in c.expect.reason {
                #expect(refusal.reason.contains(text), "reason: \(refusal.reason)")
            }
            #expect(refusal.description == refusal.reason)
        }
    }

    @Test("the decision does not depend on the order nodes are observed in", arguments: cases)
    func orderIndependent(_ c: Case) {
        let forward = FailoverDecision.decide(observations: c.observations, sync: c.sync, request: c.request)
        let backward = FailoverDecision.decide(observations: c.observations.reversed(), sync: c.sync, request: c.request)
        switch (forward, backward) {
        case (.success(let a), .success(let b)):
            #expect(a.candidate == b.candidate)
            #expect(a.candidateLsn == b.candidateLsn)
            #expect(Set(a.rePoint) == Set(b.rePoint))
            #expect(Set(a.unreachable) == Set(b.unreachable))
        case (.failure(let a), .failure(let b)):
            #expect(a.exitCode == b.exitCode)
        default:
            Issue.record("observing in reverse order changed the outcome: \(forward) vs \(backward)")
        }
    }

    // MARK: - The new primary's synchronous_standby_names

    struct SyncCase: Sendable, CustomTestStringConvertible {
        var mode: SynchronousMode
        var remaining: [String]
        var expectedMode: SynchronousMode
        /// A substring of the warning, or nil when there must be none.
        var warning: String?
        var testDescription: String { "\(mode) over \(remaining) -> \(expectedMode)" }
    }

    static let syncCases: [SyncCase] = [
        SyncCase(mode: .any(2), remaining: ["db_2"], expectedMode: .any(1), warning: "ANY 2 lowered to ANY 1"),
        SyncCase(mode: .first(2), remaining: ["db_2"], expectedMode: .first(1), warning: "FIRST 2 lowered to FIRST 1"),
        SyncCase(mode: .any(1), remaining: [], expectedMode: .async, warning: "no standby remains"),
        SyncCase(mode: .first(1), remaining: [], expectedMode: .async, warning: "no standby remains"),
        SyncCase(mode: .first(1), remaining: ["sync", "async"], expectedMode: .first(1), warning: nil),
        SyncCase(mode: .any(1), remaining: ["db_1", "db_2"], expectedMode: .any(1), warning: nil),
        SyncCase(mode: .any(2), remaining: ["db_1", "db_2"], expectedMode: .any(2), warning: nil),
        SyncCase(mode: .async, remaining: ["db_1", "db_2"], expectedMode: .async, warning: nil),
        SyncCase(mode: .async, remaining: [], expectedMode: .async, warning: nil),
    ]

    /// Issue 20: durability strict never lowers. Fewer remain than the mode needs: the mode
    /// and count stay, the others are listed too, and commits wait.
    static let strictCases: [(SynchronousMode, [String], [String], [String])] = [
        // mode, remaining, others (by priority), expected list
        (.any(1), [], ["db_0"], ["db_0"]),
        (.any(2), ["db_2"], ["db_0", "db_2", "db_3"], ["db_2", "db_0", "db_3"]),
        (.first(1), [], ["db_0", "db_2"], ["db_0", "db_2"]),
    ]

    @Test("durability strict: the mode is kept (never lowered or emptied) when fewer standbys remain than it needs")
    func strictNeverLowers() {
        for (mode, remaining, others, expected) in Self.strictCases {
            let result = FailoverDecision.newSynchronous(mode: mode, remaining: remaining, durability: .strict, others: others)
            #expect(result.mode == mode, "\(mode) over \(remaining)")
            #expect(result.standbys == expected)
            #expect(result.warning?.contains("commits WAIT") == true)
        }
        // Enough remain: strict changes nothing.
        let enough = FailoverDecision.newSynchronous(mode: .any(1), remaining: ["db_2"], durability: .strict, others: ["db_0", "db_2"])
        #expect(enough.mode == .any(1) && enough.standbys == ["db_2"] && enough.warning == nil)
    }

    @Test("a candidate behind others (--allow-data-loss): those ahead cannot follow it, so they are not re-pointed but need a rejoin")
    func aheadOfTheCandidate() throws {
        let observations = [
            Self.deadPrimary, Obs.standby("db_1", replay: "0/5000000"), Obs.standby("db_2", replay: "0/4000000"),
            Obs.standby("db_3", replay: "0/4000000"), Obs.standby("db_4", replay: "0/3000000"),
        ]
        let plan = try FailoverDecision.decide(
            observations: observations, sync: Self.anyOf(1, "db_1", "db_2", "db_3", "db_4"),
            request: .init(candidate: "db_2", allowDataLoss: true)
        ).get()
        #expect(plan.candidate == "db_2")
        #expect(plan.ahead == ["db_1"])
        #expect(plan.rePoint == ["db_3", "db_4"], "as fresh as the candidate, or behind it: they follow")
        // The freshest chosen by itself: nobody is ahead.
        let freshest = try FailoverDecision.decide(
            observations: observations, sync: Self.anyOf(1, "db_1", "db_2", "db_3", "db_4"), request: .init()
        ).get()
        #expect(freshest.ahead.isEmpty && freshest.rePoint == ["db_2", "db_3", "db_4"])
    }

    @Test("standbys behind the timeline the dead primary was recorded on missed its promotion: refused, unless --allow-data-loss")
    func behindTheRecordedTimeline() {
        let observations = [
            Obs.down("db_0", role: .primary), Obs.standby("db_1", replay: "0/3000000", timeline: 1),
            Obs.standby("db_2", replay: "0/3000000", timeline: 1),
        ]
        let sync = FailoverDecision.SyncConfig(mode: .async, standbys: ["db_1", "db_2"])
        guard case .failure(let refusal) = FailoverDecision.decide(
            observations: observations, sync: sync, request: .init(), recordedTimeline: 2)
        else {
            Issue.record("promoted a standby that missed the promotion to timeline 2")
            return
        }
        #expect(refusal.reason.contains("missed its promotion"))
        if case .failure = FailoverDecision.decide(
            observations: observations, sync: sync, request: .init(allowDataLoss: true), recordedTimeline: 2)
        {
            Issue.record("--allow-data-loss must accept it")
        }
        // On the recorded timeline: as before.
        if case .failure(let r) = FailoverDecision.decide(observations: observations, sync: sync, request: .init(), recordedTimeline: 1) {
            Issue.record("refused on the recorded timeline: \(r.reason)")
        }
    }

    @Test("a synchronous change recorded as pending: the guard must prove the quorum under it too")
    func pendingChangeGuards() {
        // Bug 1 of issue 20: applied ANY 1 (db_1, db_2), then ANY 1 (db_3) set but never confirmed.
        // db_3 (the only one that may hold the last commits) is gone; db_1 and db_2 answer.
        let observations = [
            Obs.down("db_0", role: .primary), Obs.standby("db_1", replay: "0/3000000"), Obs.standby("db_2", replay: "0/3000000"),
            Obs.down("db_3"),
        ]
        let configs = FailoverDecision.guardConfigs(
            applied: .init(.any(1), standbys: ["db_1", "db_2"]),
            pending: .init(primary: "db_0", synchronous: .init(.any(1), standbys: ["db_3"])),
            nodes: ["db_0", "db_1", "db_2", "db_3"], deadPrimary: "db_0")
        #expect(configs.alsoPossible == [.init(mode: .any(1), standbys: ["db_3"])])
        let decided = FailoverDecision.decide(
            observations: observations, sync: configs.sync, request: .init(), alsoPossible: configs.alsoPossible)
        guard case .failure(let refusal) = decided else {
            Issue.record("a failover that may lose db_3's acknowledged commits was allowed")
            return
        }
        #expect(refusal.reason.contains("pending"), "\(refusal.reason)")
        #expect(refusal.reason.contains("db_3"))
        // Without the pending change (the old order: set, then record) it went through: the bug.
        let before = FailoverDecision.decide(observations: observations, sync: configs.sync, request: .init())
        if case .failure = before { Issue.record("expected the recorded set alone to allow it") }
        // Confirmed (no pending): the recorded set is the truth again.
        let confirmed = FailoverDecision.guardConfigs(
            applied: .init(.any(1), standbys: ["db_3"]), pending: nil, nodes: ["db_0", "db_1", "db_2", "db_3"], deadPrimary: "db_0")
        #expect(confirmed.alsoPossible.isEmpty)
    }

    @Test("newSynchronous keeps the mode over the remaining standbys, capped at how many remain", arguments: syncCases)
    func newSynchronous(_ c: SyncCase) {
        let result = FailoverDecision.newSynchronous(mode: c.mode, remaining: c.remaining)
        #expect(result.mode == c.expectedMode)
        #expect(result.standbys == c.remaining)
        if let warning = c.warning {
            #expect(result.warning?.contains(warning) == true, "warning: \(result.warning ?? "none")")
        } else {
            #expect(result.warning == nil)
        }
    }
}
