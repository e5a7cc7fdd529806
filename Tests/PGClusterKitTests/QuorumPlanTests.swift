import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

@Suite("Quorum: expected sync states and the standby list")
struct QuorumPlanTests {
    // MARK: - What pg_stat_replication should show

    struct StatesCase: Sendable, CustomTestStringConvertible {
        var label: String
        var mode: SynchronousMode
        var listed: [String]
        var streaming: [String]
        var expected: [String: String]
        var testDescription: String { label }
    }

    static let statesCases: [StatesCase] = [
        StatesCase(
            label: "FIRST 1: the first listed is sync, the other listed potential, the unlisted async",
            mode: .first(1), listed: ["a", "b", "c"], streaming: ["a", "b", "c", "d"],
            expected: ["a": "sync", "b": "potential", "c": "potential", "d": "async"]),
        StatesCase(
            label: "FIRST 1: a listed standby that does not stream is skipped",
            mode: .first(1), listed: ["a", "b", "c"], streaming: ["c", "b"],
            expected: ["b": "sync", "c": "potential"]),
        StatesCase(
            label: "FIRST 2: list order, not streaming order",
            mode: .first(2), listed: ["a", "b", "c"], streaming: ["c", "b", "a"],
            expected: ["a": "sync", "b": "sync", "c": "potential"]),
        StatesCase(
            label: "FIRST 2 with one listed streaming: it is sync",
            mode: .first(2), listed: ["sync", "async"], streaming: ["async"],
            expected: ["async": "sync"]),
        StatesCase(
            label: "ANY 1: every listed one is quorum, the unlisted async",
            mode: .any(1), listed: ["db_1", "db_2"], streaming: ["db_1", "db_2", "db_3"],
            expected: ["db_1": "quorum", "db_2": "quorum", "db_3": "async"]),
        StatesCase(
            label: "ANY 2: only streaming standbys appear",
            mode: .any(2), listed: ["db_1", "db_2", "db_3"], streaming: ["db_2"],
            expected: ["db_2": "quorum"]),
        StatesCase(
            label: "async: everyone async",
            mode: .async, listed: ["db_1", "db_2"], streaming: ["db_1", "db_2"],
            expected: ["db_1": "async", "db_2": "async"]),
        StatesCase(
            label: "nobody listed: everyone async",
            mode: .first(1), listed: [], streaming: ["db_1"],
            expected: ["db_1": "async"]),
        StatesCase(
            label: "nobody streams: nothing expected",
            mode: .any(1), listed: ["db_1", "db_2"], streaming: [],
            expected: [:]),
    ]

    @Test("expectedSyncStates", arguments: statesCases)
    func expectedSyncStates(_ c: StatesCase) {
        #expect(QuorumChange.expectedSyncStates(mode: c.mode, listed: c.listed, streaming: c.streaming) == c.expected)
    }

    // MARK: - QuorumPlan.make

    /// db_0 is the primary; db_2 and db_3 share the highest priority, db_1 is lower, db_4 never promoted.
    static let yaml = """
        name: quorum
        nodes:
          - {name: db_0, port: 15432, role: primary}
          - {name: db_1, port: 15433, priority: 50}
          - {name: db_3, port: 15435, priority: 100}
          - {name: db_2, port: 15434, priority: 100}
          - {name: db_4, port: 15436, priority: 0}

        """

    static func spec() throws -> ClusterSpec {
        try SpecLoader.parse(yaml, file: "/tmp/test.yaml")
    }

    /// Observations of the spec's nodes: `down` do not answer, the rest are standbys; the
    /// primary's pg_stat_replication shows `streaming` as streaming and `catchup` as catching up.
    static func observe(
        _ spec: ClusterSpec, down: Set<String> = [], streaming: [String]? = nil, catchup: [String] = []
    ) -> [NodeObservation] {
        let answering = spec.standbys.map(\.name).filter { !down.contains($0) }
        let rows = (streaming ?? answering).map { NodeFixture.row($0, state: "streaming") }
            + catchup.map { NodeFixture.row($0, state: "catchup") }
        return spec.nodes.map { node in
            if down.contains(node.name) { return NodeObservation(node: node, error: "connection refused") }
            var observation = NodeObservation(node: node)
            observation.timeline = 1
            if node.role == .primary {
                observation.currentLsn = LSN(0x300_0000)
                observation.replication = rows
            } else {
                observation.inRecovery = true
                observation.replayLsn = LSN(0x300_0000)
            }
            return observation
        }
    }

    @Test("default list: every standby that answers, by priority then name")
    func defaultList() throws {
        let spec = try Self.spec()
        let plan = try QuorumPlan.make(
            spec: spec, observations: Self.observe(spec), mode: .any(1), requested: nil, force: false)
        #expect(plan.primary == "db_0")
        #expect(plan.mode == .any(1))
        #expect(plan.standbys == ["db_2", "db_3", "db_1", "db_4"])
        #expect(plan.streaming == ["db_2", "db_3", "db_1", "db_4"])
        #expect(plan.leftOut == [])
    }

    @Test("default list leaves out the nodes that do not answer")
    func defaultListLeavesOutDown() throws {
        let spec = try Self.spec()
        let plan = try QuorumPlan.make(
            spec: spec, observations: Self.observe(spec, down: ["db_3", "db_4"]), mode: .first(1), requested: nil,
            force: false)
        #expect(plan.standbys == ["db_2", "db_1"])
        #expect(plan.leftOut == ["db_3", "db_4"])
        #expect(plan.streaming == ["db_2", "db_1"])
    }

    @Test("--standbys keeps the order given, once each; a down one is listed, not streaming")
    func requestedOrder() throws {
        let spec = try Self.spec()
        let plan = try QuorumPlan.make(
            spec: spec, observations: Self.observe(spec, down: ["db_2"]), mode: .first(1),
            requested: ["db_1", "db_2", "db_1", "db_3"], force: false)
        #expect(plan.standbys == ["db_1", "db_2", "db_3"])
        #expect(plan.streaming == ["db_1", "db_3"])
        #expect(plan.leftOut == [])
    }

    @Test("a count larger than the standbys that can be listed is refused")
    func countTooLarge() throws {
        let spec = try Self.spec()
        let error = try #require(throws: ClusterError.self) {
            try QuorumPlan.make(
                spec: spec, observations: Self.observe(spec, down: ["db_1", "db_3"]), mode: .any(3), requested: nil,
                force: true)
        }
        #expect(error.exitCode == .refused)
        #expect(error.message.contains("ANY 3 needs at least 3 standbys to list, but only 2 can be listed (db_2, db_4)"))
        #expect(error.message.contains("not answering: db_3, db_1"))
    }

    @Test("a count larger than the answering standbys: the refusal names --standbys to list the down ones too")
    func countTooLargeHintsStandbys() throws {
        let spec = try Self.spec()
        let error = try #require(throws: ClusterError.self) {
            try QuorumPlan.make(
                spec: spec, observations: Self.observe(spec, down: ["db_1", "db_3"]), mode: .any(3), requested: nil,
                force: true)
        }
        #expect(error.exitCode == .refused)
        let text = ([error.message] + error.details).joined(separator: "\n")
        #expect(text.contains("--standbys db_2,db_3,db_1,db_4 --force"), "\(text)")
    }

    @Test("a count larger than every standby of the spec: no --standbys hint, since listing cannot help")
    func countLargerThanSpec() throws {
        let spec = try Self.spec()
        let error = try #require(throws: ClusterError.self) {
            try QuorumPlan.make(
                spec: spec, observations: Self.observe(spec, down: ["db_1"]), mode: .any(5), requested: nil, force: true)
        }
        let text = ([error.message] + error.details).joined(separator: "\n")
        #expect(!text.contains("--standbys"), "\(text)")
    }

    @Test("a count larger than the --standbys list is refused")
    func countLargerThanRequested() throws {
        let spec = try Self.spec()
        let error = try #require(throws: ClusterError.self) {
            try QuorumPlan.make(
                spec: spec, observations: Self.observe(spec), mode: .first(2), requested: ["db_1"], force: true)
        }
        #expect(error.exitCode == .refused)
        #expect(error.message.contains("FIRST 2 needs at least 2"))
    }

    @Test("fewer streaming than the count: refused, saying commits would wait")
    func tooFewStreaming() throws {
        let spec = try Self.spec()
        let observations = Self.observe(spec, streaming: ["db_1"], catchup: ["db_2", "db_3"])
        let error = try #require(throws: ClusterError.self) {
            try QuorumPlan.make(spec: spec, observations: observations, mode: .any(2), requested: nil, force: false)
        }
        #expect(error.exitCode == .refused)
        #expect(error.message.contains("only 1 of the listed standbys stream right now (db_1)"))
        #expect(error.message.contains("WAIT"))
        #expect(error.message.contains("--force"))
    }

    @Test("fewer streaming than the count, --force: planned anyway")
    func tooFewStreamingForced() throws {
        let spec = try Self.spec()
        let observations = Self.observe(spec, streaming: ["db_1"], catchup: ["db_2", "db_3"])
        let plan = try QuorumPlan.make(spec: spec, observations: observations, mode: .any(2), requested: nil, force: true)
        #expect(plan.mode == .any(2))
        #expect(plan.standbys == ["db_2", "db_3", "db_1", "db_4"])
        #expect(plan.streaming == ["db_1"])
    }

    @Test("async needs nobody streaming")
    func asyncNeedsNobody() throws {
        let spec = try Self.spec()
        let plan = try QuorumPlan.make(
            spec: spec, observations: Self.observe(spec, streaming: []), mode: .async, requested: nil, force: false)
        #expect(plan.mode == .async)
        #expect(plan.streaming == [])
    }

    @Test("--standbys naming an unknown node is a usage error")
    func unknownStandby() throws {
        let spec = try Self.spec()
        let error = try #require(throws: ClusterError.self) {
            try QuorumPlan.make(
                spec: spec, observations: Self.observe(spec), mode: .any(1), requested: ["db_1", "db_9"], force: false)
        }
        #expect(error.exitCode == .usage)
        #expect(error.message == "--standbys: 'db_9' is not a node of /tmp/test.yaml")
    }

    @Test("--standbys naming the primary is a usage error")
    func primaryInStandbys() throws {
        let spec = try Self.spec()
        let error = try #require(throws: ClusterError.self) {
            try QuorumPlan.make(
                spec: spec, observations: Self.observe(spec), mode: .any(1), requested: ["db_0", "db_1"], force: true)
        }
        #expect(error.exitCode == .usage)
        #expect(error.message == "--standbys: 'db_0' is the primary")
    }

    @Test("no primary answers: failure pointing at failover")
    func noPrimary() throws {
        let spec = try Self.spec()
        let error = try #require(throws: ClusterError.self) {
            try QuorumPlan.make(
                spec: spec, observations: Self.observe(spec, down: ["db_0"]), mode: .any(1), requested: nil, force: true)
        }
        #expect(error.exitCode == .failure)
        #expect(error.message == "no primary answers (down: db_0)")
        #expect(error.details.contains { $0.contains("pgcluster failover") })
    }
}
