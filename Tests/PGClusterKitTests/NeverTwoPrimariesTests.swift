import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// The pure rules behind "never two primaries": when a live primary is the end of an
/// unfinished failover, which candidates a delay excludes, and when rejoin refuses.
@Suite("never two primaries: pure rules")
struct NeverTwoPrimariesTests {
    typealias F = NodeFixture

    static func frozen(_ observation: NodeObservation) -> NodeObservation {
        var o = observation
        o.primaryConninfo = ""
        o.walReceiver = nil
        return o
    }

    static func following(_ observation: NodeObservation) -> NodeObservation {
        var o = observation
        o.primaryConninfo = "host=127.0.0.1 port=5432 user=replicator"
        return o
    }

    struct UnfinishedCase: Sendable, CustomTestStringConvertible {
        var label: String
        var observations: [NodeObservation]
        var recorded: String?
        /// A word of the reason, or nil when the live primary is simply the primary.
        var expected: String?
        var testDescription: String { label }
    }

    static let unfinishedCases: [UnfinishedCase] = [
        .init(
            label: "healthy: recorded primary, standbys following",
            observations: [
                F.primary("db_1", current: "0/5000000", timeline: 2),
                following(F.standby("db_2", replay: "0/5000000", timeline: 2)),
            ],
            recorded: "db_1", expected: nil),
        .init(
            label: "a standby still frozen after the promotion",
            observations: [
                F.primary("db_1", current: "0/5000000", timeline: 2),
                frozen(F.standby("db_2", replay: "0/4000000", timeline: 1)), F.down("db_0"),
            ],
            recorded: "db_0", expected: "frozen"),
        .init(
            label: "promoted, standbys re-pointed, but not recorded",
            observations: [
                F.primary("db_1", current: "0/5000000", timeline: 2),
                following(F.standby("db_2", replay: "0/5000000", timeline: 2)), F.down("db_0"),
            ],
            recorded: "db_0", expected: "not recorded"),
        .init(
            label: "no record at all and nothing frozen: simply the primary",
            observations: [F.primary("db_0", current: "0/5000000"), following(F.standby("db_1", replay: "0/5000000"))],
            recorded: nil, expected: nil),
        .init(
            label: "the old primary alive again with its standbys frozen: finished by re-pointing them at it",
            observations: [F.primary("db_0", current: "0/5000000"), frozen(F.standby("db_1", replay: "0/5000000"))],
            recorded: "db_0", expected: "frozen"),
    ]

    @Test("a live primary is the end of an unfinished failover only when a standby is frozen or it was not recorded",
          arguments: unfinishedCases)
    func unfinished(_ c: UnfinishedCase) {
        let live = c.observations.first(where: \.isPrimary)!
        let why = PrimaryRules.unfinished(live: live, observations: c.observations, recordedPrimary: c.recorded)
        if let expected = c.expected {
            #expect(why?.contains(expected) == true, "\(why ?? "nil")")
        } else {
            #expect(why == nil, "\(why ?? "nil")")
        }
    }

    @Test("two live primaries: failover refuses to add a third and names the one to rejoin")
    func twoPrimariesRefused() {
        let observations = [
            F.primary("db_0", current: "0/5000000", timeline: 1), F.primary("db_1", current: "0/6000000", timeline: 2),
            F.standby("db_2", replay: "0/6000000", timeline: 2),
        ]
        #expect(throws: ClusterError.self) { try PrimaryRules.livePrimary(observations) }
        do {
            _ = try PrimaryRules.livePrimary(observations)
        } catch {
            #expect(error.exitCode == .refused)
            #expect(error.message.contains("pgcluster rejoin db_0 --force"), "\(error.message)")
        }
    }

    @Test("a standby with recovery_min_apply_delay is never chosen, unless named")
    func delayedStandby() throws {
        var delayed = F.standby("db_1", replay: "0/5000000")
        delayed.applyDelayMs = 3_600_000
        let observations = [F.down("db_0", role: .primary), delayed, F.standby("db_2", replay: "0/5000000")]
        let sync = FailoverDecision.SyncConfig(mode: .any(1), standbys: ["db_1", "db_2"])
        let plan = try FailoverDecision.decide(observations: observations, sync: sync, request: .init()).get()
        #expect(plan.candidate == "db_2")
        let named = try FailoverDecision.decide(observations: observations, sync: sync, request: .init(candidate: "db_1")).get()
        #expect(named.candidate == "db_1")

        // Ahead of the others: refused, and the refusal says how to promote it.
        var ahead = delayed
        ahead.replayLsn = F.lsn("0/6000000")
        let refused = FailoverDecision.decide(
            observations: [F.down("db_0", role: .primary), ahead, F.standby("db_2", replay: "0/5000000")], sync: sync,
            request: .init())
        guard case .failure(let refusal) = refused else {
            Issue.record("a standby behind the delayed one was promoted")
            return
        }
        #expect(refusal.reason.contains("--candidate db_1"), "\(refusal.reason)")
    }

    @Test("rejoin refuses a live primary: the only one always, one beside another primary unless --force")
    func rejoinRefusals() throws {
        let node = NodeSpec(name: "db_0", port: 5432, role: .primary)
        let alone = [F.primary("db_0", current: "0/5000000"), F.standby("db_1", replay: "0/5000000")]
        #expect(throws: ClusterError.self) { try Rejoin.refuseLivePrimary(node, observations: alone, force: true) }
        let two = [F.primary("db_0", current: "0/5000000"), F.primary("db_1", current: "0/6000000", timeline: 2)]
        do {
            try Rejoin.refuseLivePrimary(node, observations: two, force: false)
            Issue.record("rejoin of a live primary beside another was not refused")
        } catch {
            #expect(error.exitCode == .refused)
            #expect(error.message.contains("db_0 accepts writes as a primary (timeline 1) while db_1 is a primary too (timeline 2)"))
        }
        try Rejoin.refuseLivePrimary(node, observations: two, force: true)
        let deposedDown = [F.down("db_0", role: .primary), F.primary("db_1", current: "0/6000000", timeline: 2)]
        try Rejoin.refuseLivePrimary(node, observations: deposedDown, force: false)
    }
}
