import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

@Suite("Switchover: choosing the candidate")
struct SwitchoverChoiceTests {
    typealias Obs = NodeFixture

    struct Case: Sendable, CustomTestStringConvertible {
        var label: String
        /// Standbys that appear in the primary's pg_stat_replication as streaming.
        var streaming: [String]
        var standbys: [NodeObservation]
        var named: String? = nil
        /// The chosen standby, or nil when refused.
        var chosen: String?
        /// Substring of the refusal's message.
        var refusal: String? = nil
        var testDescription: String { label }
    }

    static let cases: [Case] = [
        Case(
            label: "the highest replay LSN wins over priority and name",
            streaming: ["db_1", "db_2"],
            standbys: [
                Obs.standby("db_1", replay: "0/3000000", priority: 200),
                Obs.standby("db_2", replay: "0/3000100", priority: 10),
            ],
            chosen: "db_2"),
        Case(
            label: "replayed WAL counts, received-only WAL does not",
            streaming: ["db_1", "db_2"],
            standbys: [
                Obs.standby("db_1", replay: "0/4000000"),
                Obs.standby("db_2", replay: "0/3000000", received: "0/5000000"),
            ],
            chosen: "db_1"),
        Case(
            label: "equal replay LSN: the higher priority",
            streaming: ["db_1", "db_2"],
            standbys: [
                Obs.standby("db_1", replay: "0/3000000", priority: 50),
                Obs.standby("db_2", replay: "0/3000000", priority: 100),
            ],
            chosen: "db_2"),
        Case(
            label: "equal replay LSN and priority: the first name",
            streaming: ["db_1", "db_2", "db_3"],
            standbys: [
                Obs.standby("db_3", replay: "0/3000000"), Obs.standby("db_2", replay: "0/3000000"),
                Obs.standby("db_1", replay: "0/2000000"),
            ],
            chosen: "db_2"),
        Case(
            label: "a standby that does not stream from the primary is skipped, even when freshest",
            streaming: ["db_2"],
            standbys: [Obs.standby("db_1", replay: "0/9000000"), Obs.standby("db_2", replay: "0/3000000")],
            chosen: "db_2"),
        Case(
            label: "priority 0 is never chosen, even when freshest",
            streaming: ["db_1", "db_2"],
            standbys: [
                Obs.standby("db_1", replay: "0/9000000", priority: 0),
                Obs.standby("db_2", replay: "0/3000000"),
            ],
            chosen: "db_2"),
        Case(
            label: "priority 0 is taken when named",
            streaming: ["db_1", "db_2"],
            standbys: [
                Obs.standby("db_1", replay: "0/2000000", priority: 0),
                Obs.standby("db_2", replay: "0/3000000"),
            ],
            named: "db_1", chosen: "db_1"),
        Case(
            label: "a named standby that is behind is taken (it catches up before promotion)",
            streaming: ["db_1", "db_2"],
            standbys: [Obs.standby("db_1", replay: "0/2000000"), Obs.standby("db_2", replay: "0/3000000")],
            named: "db_1", chosen: "db_1"),
        Case(
            label: "a named standby that does not stream: refused",
            streaming: ["db_2"],
            standbys: [Obs.standby("db_1", replay: "0/9000000"), Obs.standby("db_2", replay: "0/3000000")],
            named: "db_1", chosen: nil, refusal: "--candidate db_1 does not stream from db_0"),
        Case(
            label: "a named node that is not an answering standby: refused",
            streaming: ["db_2"],
            standbys: [Obs.standby("db_2", replay: "0/3000000")],
            named: "db_1", chosen: nil, refusal: "--candidate db_1 is not a standby that answers"),
        Case(
            label: "the primary named as candidate: refused, saying so",
            streaming: ["db_1", "db_2"],
            standbys: [Obs.standby("db_1", replay: "0/3000000"), Obs.standby("db_2", replay: "0/3000000")],
            named: "db_0", chosen: nil, refusal: "--candidate db_0 is the primary already"),
        Case(
            label: "none eligible (priority 0 or not streaming): refused",
            streaming: ["db_1"],
            standbys: [
                Obs.standby("db_1", replay: "0/3000000", priority: 0),
                Obs.standby("db_2", replay: "0/3000000"),
            ],
            chosen: nil, refusal: "nothing to switch over to"),
        Case(
            label: "no standbys at all: refused",
            streaming: [],
            standbys: [],
            chosen: nil, refusal: "no standby streams from db_0 with a priority above 0"),
    ]

    @Test("chooseCandidate", arguments: cases)
    func choose(_ c: Case) {
        // pg_stat_replication also lists a catching-up standby: it must not count as streaming.
        let rows = c.streaming.map { Obs.row($0) } + [Obs.row("db_9", state: "catchup")]
        let primary = Obs.primary("db_0", current: "0/A000000", replication: rows)
        do throws(ClusterError) {
            let chosen = try PrimaryRules.switchoverCandidate(primary: primary, standbys: c.standbys, named: c.named)
            #expect(chosen.node.name == c.chosen, "chose \(chosen.node.name)")
            #expect(c.refusal == nil)
        } catch {
            #expect(c.chosen == nil, "refused: \(error.message)")
            #expect(error.exitCode == .refused)
            if let refusal = c.refusal { #expect(error.message.contains(refusal), "message: \(error.message)") }
        }
    }

    @Test("a standby catching up is not streaming")
    func catchingUp() throws {
        let primary = Obs.primary("db_0", current: "0/A000000", replication: [Obs.row("db_1", state: "catchup")])
        let error = try #require(throws: ClusterError.self) {
            try PrimaryRules.switchoverCandidate(
                primary: primary, standbys: [Obs.standby("db_1", replay: "0/3000000")], named: nil)
        }
        #expect(error.exitCode == .refused)
    }

    /// The other standbys stream through the candidate before the stop only where the old
    /// primary's commits are still acknowledged by the candidate alone.
    @Test("which quorums let the other standbys cascade from the candidate before the stop")
    func cascadeBeforeStop() {
        let cases: [(SynchronousMode, [String]?, Bool)] = [
            (.async, nil, true),
            (.any(1), nil, true),
            (.any(1), ["db_1", "db_2"], true),
            (.first(1), ["db_2", "db_1"], true),
            (.any(1), ["db_2"], false),
            (.first(1), ["db_2", "db_3"], false),
            (.any(2), nil, false),
            (.first(2), ["db_1", "db_2"], false),
        ]
        for (mode, listed, expected) in cases {
            #expect(
                PrimaryRules.cascadeBeforeStop(mode: mode, listed: listed, candidate: "db_1") == expected,
                "\(mode) over \(listed ?? ["every standby"])")
        }
    }
}
