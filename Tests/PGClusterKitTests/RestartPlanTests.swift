import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

@Suite("Restart plan: standbys one at a time, the primary last, --pending")
struct RestartPlanTests {
    typealias Obs = NodeFixture

    static func spec(priorities: [Int] = [100, 100, 100]) throws -> ClusterSpec {
        try SpecLoader.parse(
            """
            name: demo
            nodes:
              - {name: db_0, port: 15432, role: primary, priority: \(priorities[0])}
              - {name: db_1, port: 15433, priority: \(priorities[1])}
              - {name: db_2, port: 15434, priority: \(priorities[2])}

            """, file: "/tmp/test.yaml")
    }

    /// db_1 is the primary (a switchover moved it); db_0 and db_2 stream from it. `pending` nodes
    /// have a setting pending_restart.
    static func cluster(pending: Set<String> = [], streaming: [String] = ["db_0", "db_2"]) -> [NodeObservation] {
        var observations = [
            Obs.standby("db_0", replay: "0/3000000", port: 15432, upstream: ("127.0.0.1", 15433)),
            Obs.primary("db_1", current: "0/3000000", port: 15433, replication: streaming.map { Obs.row($0) }),
            Obs.standby("db_2", replay: "0/3000000", port: 15434, upstream: ("127.0.0.1", 15433)),
        ]
        for index in observations.indices where pending.contains(observations[index].node.name) {
            observations[index].pendingRestart = true
        }
        return observations
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var label: String
        var selected: [String] = ["db_0", "db_1", "db_2"]
        var pending: Set<String> = []
        var pendingOnly = false
        var how: PrimaryUpdate = .switchover
        var priorities = [100, 100, 100]
        var steps: [RestartPlan.Step]
        var skipped: [String] = []
        var testDescription: String { label }
    }

    static let cases: [Case] = [
        Case(
            label: "every node: standbys in spec order, then the primary by switchover",
            steps: [.standby("db_0"), .standby("db_2"), .primary("db_1", .switchover)]),
        Case(
            label: "--primary-update restart: the primary in place",
            how: .restart, steps: [.standby("db_0"), .standby("db_2"), .primary("db_1", .restart)]),
        Case(
            label: "no other node may be promoted (priority 0): the primary in place",
            priorities: [0, 100, 0], steps: [.standby("db_0"), .standby("db_2"), .primary("db_1", .restart)]),
        Case(label: "one standby named", selected: ["db_2"], steps: [.standby("db_2")]),
        Case(label: "the primary named alone", selected: ["db_1"], steps: [.primary("db_1", .switchover)]),
        Case(
            label: "--pending with every node pending",
            pending: ["db_0", "db_1", "db_2"], pendingOnly: true,
            steps: [.standby("db_0"), .standby("db_2"), .primary("db_1", .switchover)]),
        Case(
            label: "--pending: only the nodes pending, the others named as skipped",
            pending: ["db_2"], pendingOnly: true, steps: [.standby("db_2")], skipped: ["db_0", "db_1"]),
        Case(
            label: "--pending with the primary alone pending",
            pending: ["db_1"], pendingOnly: true, steps: [.primary("db_1", .switchover)], skipped: ["db_0", "db_2"]),
        Case(
            label: "--pending with nothing pending: nothing to do",
            pendingOnly: true, steps: [], skipped: ["db_0", "db_1", "db_2"]),
        Case(
            label: "without --pending, pending_restart does not matter",
            pending: ["db_2"], steps: [.standby("db_0"), .standby("db_2"), .primary("db_1", .switchover)]),
    ]

    @Test("plans", arguments: cases)
    func plans(_ c: Case) throws {
        let plan = try RestartPlan.make(
            spec: try Self.spec(priorities: c.priorities), observations: Self.cluster(pending: c.pending), selected: c.selected,
            pendingOnly: c.pendingOnly, primaryUpdate: c.how)
        #expect(plan.primary == "db_1")
        #expect(plan.steps == c.steps)
        #expect(plan.skipped == c.skipped)
    }

    @Test("a named node that does not answer: refused, exit 2, nothing restarted")
    func downRefused() throws {
        var observations = Self.cluster()
        observations[2] = Obs.down("db_2", port: 15434)
        #expect {
            try RestartPlan.make(
                spec: try Self.spec(), observations: observations, selected: ["db_0", "db_1", "db_2"], pendingOnly: false,
                primaryUpdate: .switchover)
        } throws: { error in
            let error = error as! ClusterError
            return error.exitCode == .refused && error.message.hasPrefix("db_2 does not answer")
        }
        // Left out of the list, the others restart.
        let plan = try RestartPlan.make(
            spec: try Self.spec(), observations: observations, selected: ["db_0", "db_1"], pendingOnly: false,
            primaryUpdate: .switchover)
        #expect(plan.steps == [.standby("db_0"), .primary("db_1", .switchover)])
    }

    @Test("a standby that does not stream from the primary: refused, naming rejoin")
    func notStreamingRefused() throws {
        #expect {
            try RestartPlan.make(
                spec: try Self.spec(), observations: Self.cluster(streaming: ["db_0"]), selected: ["db_2"], pendingOnly: false,
                primaryUpdate: .switchover)
        } throws: { error in
            let error = error as! ClusterError
            return error.exitCode == .refused && error.message == "db_2 does not stream from the primary db_1: nothing was restarted"
                && error.details.contains { $0.contains("pgcluster rejoin db_2") }
        }
    }

    @Test("no standby streams: the primary restarts in place, with a note")
    func aloneInPlace() throws {
        let plan = try RestartPlan.make(
            spec: try Self.spec(), observations: Self.cluster(streaming: []), selected: ["db_1"], pendingOnly: false,
            primaryUpdate: .switchover)
        #expect(plan.steps == [.primary("db_1", .restart)])
        #expect(plan.notes == ["no standby streams from db_1: it restarts in place"])
    }

    @Test("two primaries: refused before anything restarts")
    func twoPrimaries() throws {
        var observations = Self.cluster()
        observations[0] = Obs.primary("db_0", current: "0/3000000", port: 15432)
        #expect(throws: ClusterError.self) {
            try RestartPlan.make(
                spec: try Self.spec(), observations: observations, selected: ["db_0", "db_1", "db_2"], pendingOnly: false,
                primaryUpdate: .switchover)
        }
    }

    @Test("the plan's text says each step, and --pending makes each conditional")
    func text() throws {
        let plan = try RestartPlan.make(
            spec: try Self.spec(), observations: Self.cluster(pending: ["db_1", "db_2"]), selected: ["db_0", "db_1", "db_2"],
            pendingOnly: true, primaryUpdate: .switchover)
        #expect(
            plan.text == """
                restart plan (primary db_1), 2 steps:
                  1. restart standby db_2 if a setting is still pending_restart, wait until it streams again
                  2. restart primary db_1 by switchover if a setting is still pending_restart (a standby takes over, db_1 restarts as its standby)
                note: nothing pending_restart on db_0: not restarted
                """)
    }
}
