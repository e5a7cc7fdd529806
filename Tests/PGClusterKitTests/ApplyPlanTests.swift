import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// The `apply` plan, by tables: from a spec, what the servers say and what was recorded,
/// to the ordered steps or the refusal. No server.
@Suite("apply plan")
struct ApplyPlanTests {
    /// A spec of node0 (primary) and the given standbys, with parameters and a synchronous mode.
    static func spec(
        standbys: [String] = ["node1", "node2"], synchronous: String = "{mode: any, count: 1}",
        parameters: [String: String] = [:], primary: String = "node0", backend: String = "local"
    ) throws -> ClusterSpec {
        try SpecLoader.parse(
            specText(standbys: standbys, synchronous: synchronous, parameters: parameters, primary: primary, backend: backend),
            file: "/tmp/apply-plan-test.yaml")
    }

    static func specText(
        standbys: [String] = ["node1", "node2"], synchronous: String = "{mode: any, count: 1}",
        parameters: [String: String] = [:], primary: String = "node0", backend: String = "local"
    ) -> String {
        var yaml = """
            version: 1
            name: t
            backend: \(backend)
            postgres:
              version: 15

            """
        if !parameters.isEmpty {
            yaml += "  parameters:\n" + parameters.sorted { $0.key < $1.key }.map { "    \($0.key): \($0.value)\n" }.joined()
        }
        yaml += """
            replication:
              synchronous: \(synchronous)
            local:
              dir: /tmp/apply-plan-test
            nodes:

            """
        let names = (primary.isEmpty ? [] : [primary]) + standbys
        for name in names {
            yaml += "  - name: \(name)\n    port: \(port(name))\n" + (name == primary ? "    role: primary\n" : "")
        }
        return yaml
    }

    /// node0 primary with `streaming` standbys, each standby answering.
    static func observations(
        streaming: [String] = ["node1", "node2"], ssn: String? = nil, down: [String] = [],
        extra: [String] = []
    ) -> [NodeObservation] {
        let primary = NodeFixture.primary(
            "node0", current: "0/5000000", synchronousStandbyNames: ssn ?? SynchronousMode.any(1).standbyNames(streaming),
            replication: streaming.map { NodeFixture.row($0, sync: "quorum") })
        return [primary] + (streaming + extra).map { NodeFixture.standby($0, replay: "0/5000000") }
            + down.map { NodeFixture.down($0) }
    }

    static func recorded(_ names: [String], mode: SynchronousMode = .any(1), standbys: [String]? = nil) -> ClusterState {
        ClusterState(
            primary: "node0", synchronous: .init(mode, standbys: standbys),
            nodes: names.map { .init(NodeSpec(name: $0, port: port($0))) })
    }

    /// Where a node lives, in the spec and the record alike: node<N> at 15432 + N.
    static func port(_ name: String) -> Int {
        15432 + (Int(name.dropFirst(4)) ?? 0)
    }

    /// Every node's settings as the rendered files say (nothing to change), with `overrides`.
    static func settings(_ spec: ClusterSpec, _ overrides: [String: [LiveSetting]] = [:]) throws -> [String: [LiveSetting]] {
        var result: [String: [LiveSetting]] = [:]
        for node in spec.nodes {
            let conf = try Renderer(spec: spec).postgresqlConf(node)
            var rows = SettingValue.parseConf(conf).map { LiveSetting(name: $0.0, setting: $0.1, sourcefile: "/d/postgresql.conf") }
            for override in overrides[node.name] ?? overrides["*"] ?? [] {
                rows.removeAll { $0.name == override.name }
                rows.append(override)
            }
            result[node.name] = rows
        }
        return result
    }

    static func make(
        _ spec: ClusterSpec, _ observations: [NodeObservation], recorded: ClusterState?,
        settings: [String: [LiveSetting]] = [:], hasData: Set<String> = [], update: PrimaryUpdate = .switchover,
        force: Bool = false
    ) throws(ClusterError) -> ApplyPlan {
        var facts = ApplyFacts(observations: observations, recorded: recorded, settings: settings, hasData: hasData)
        try facts.render(spec)
        return try ApplyPlan.make(spec: spec, facts: facts, primaryUpdate: update, force: force)
    }

    static let three = ["node0", "node1", "node2"]

    @Test("a cluster that matches its spec: nothing to do")
    func nothingToDo() throws {
        let spec = try Self.spec()
        let plan = try Self.make(spec, Self.observations(), recorded: Self.recorded(Self.three), settings: Self.settings(spec))
        #expect(plan.steps.isEmpty)
        #expect(plan.text.hasPrefix("nothing to change"))
    }

    @Test("a walSegmentSize other than the cluster's is said, never planned: initdb fixed it")
    func walSegmentSize() throws {
        let running = LiveSetting(name: "wal_segment_size", setting: "16777216", unit: "B", vartype: "integer", context: "internal")
        let given = try SpecLoader.parse(
            Self.specText().replacingOccurrences(of: "  version: 15\n", with: "  version: 15\n  walSegmentSize: 4MB\n"),
            file: "/tmp/apply-plan-test.yaml")
        let plan = try Self.make(
            given, Self.observations(), recorded: Self.recorded(Self.three), settings: Self.settings(given, ["*": [running]]))
        #expect(plan.steps.isEmpty)
        #expect(plan.notes.contains { $0.hasPrefix("postgres.walSegmentSize is 4MB, the cluster runs with 16MB segments") }, "\(plan.notes)")
        #expect(plan.text.hasPrefix("nothing to change") && plan.text.contains("\nnote: postgres.walSegmentSize is 4MB"), "\(plan.text)")
        // Left to the default, an older cluster's 16 MB is no news.
        let spec = try Self.spec()
        let quiet = try Self.make(spec, Self.observations(), recorded: Self.recorded(Self.three), settings: Self.settings(spec, ["*": [running]]))
        #expect(quiet.notes.isEmpty, "\(quiet.notes)")
    }

    @Test("a node new in the spec is cloned from the primary, then listed")
    func addNode() throws {
        let spec = try Self.spec(standbys: ["node1", "node2", "node3"])
        let plan = try Self.make(
            spec, Self.observations(down: ["node3"]), recorded: Self.recorded(Self.three))
        #expect(plan.added == ["node3"])
        #expect(
            plan.steps == [
                .addNode("node3", from: "node0"), .synchronous(.any(1), standbys: ["node1", "node2", "node3"], on: "node0"),
            ])
    }

    @Test("compose: a node added or removed is refused, naming what apply does there; settings are planned as elsewhere")
    func composeNodes() throws {
        let added = try Self.spec(standbys: ["node1", "node2", "node3"], backend: "compose")
        let refusal = #expect(throws: ClusterError.self) {
            try Self.make(added, Self.observations(down: ["node3"]), recorded: Self.recorded(Self.three))
        }
        #expect(refusal?.exitCode == .refused)
        #expect(refusal?.message.contains("add node3: on backend compose, apply changes settings and the synchronous mode") == true)
        let removed = try Self.spec(standbys: ["node1"], backend: "compose")
        #expect(throws: ClusterError.self) {
            try Self.make(
                removed, Self.observations(), recorded: Self.recorded(Self.three))
        }
        let tuned = try Self.spec(parameters: ["work_mem": "8MB"], backend: "compose")
        let plan = try Self.make(tuned, Self.observations(), recorded: Self.recorded(Self.three), settings: Self.settings(try Self.spec()))
        #expect(plan.steps.contains(.reload(Self.three)))
    }

    @Test("data left by an unfinished add does not make a node a member when the record says otherwise")
    func unfinishedAdd() throws {
        let spec = try Self.spec(standbys: ["node1", "node2", "node3"])
        let plan = try Self.make(
            spec, Self.observations(down: ["node3"]), recorded: Self.recorded(Self.three), hasData: ["node3"])
        #expect(plan.added == ["node3"])
    }

    @Test("before anything was recorded, a spec node with data that does not answer is a member that is down: refused")
    func unrecordedDownMember() throws {
        let spec = try Self.spec()
        let error = #expect(throws: ClusterError.self) {
            try Self.make(spec, Self.observations(streaming: ["node1"], ssn: SynchronousMode.any(1).standbyNames(["node1"]), down: ["node2"]), recorded: nil, hasData: ["node2"])
        }
        #expect(error?.exitCode == .refused)
        #expect(error?.message.contains("node2 does not answer") == true)
    }

    @Test("a node gone from the spec leaves synchronous_standby_names first, then is removed")
    func removeNode() throws {
        let spec = try Self.spec(standbys: ["node1", "node2"])
        let plan = try Self.make(
            spec, Self.observations(streaming: ["node1", "node2", "node3"], ssn: SynchronousMode.any(1).standbyNames(["node1", "node2", "node3"])),
            recorded: Self.recorded(Self.three + ["node3"]))
        #expect(plan.removed == ["node3"])
        #expect(
            plan.steps == [
                .synchronous(.any(1), standbys: ["node1", "node2"], on: "node0"), .removeNode("node3", primary: "node0"),
            ])
    }

    @Test("a removed node that is down is still removed (stop is then nothing)")
    func removeDownNode() throws {
        let spec = try Self.spec(standbys: ["node1", "node2"])
        let plan = try Self.make(
            spec, Self.observations(ssn: SynchronousMode.any(1).standbyNames(["node1", "node2", "node3"]), down: ["node3"]),
            recorded: Self.recorded(Self.three + ["node3"]))
        #expect(plan.steps.last == .removeNode("node3", primary: "node0"))
    }

    @Test("removing the current primary is refused: switchover first")
    func removePrimary() throws {
        let spec = try Self.spec(standbys: ["node2"], primary: "node1")
        let error = #expect(throws: ClusterError.self) {
            try Self.make(spec, Self.observations(), recorded: Self.recorded(Self.three))
        }
        #expect(error?.exitCode == .refused)
        #expect(error?.message.contains("switchover first") == true)
        #expect(error?.details.joined().contains("pgcluster switchover --candidate") == true)
    }

    @Test("a standby that stays but does not stream: refused, nothing changed")
    func notStreaming() throws {
        let spec = try Self.spec(standbys: ["node1", "node2", "node3"])
        let error = #expect(throws: ClusterError.self) {
            try Self.make(
                spec, Self.observations(streaming: ["node1"], ssn: SynchronousMode.any(1).standbyNames(["node1", "node2"]), down: ["node3"], extra: ["node2"]),
                recorded: Self.recorded(Self.three))
        }
        #expect(error?.exitCode == .refused)
        #expect(error?.message.contains("node2 does not stream") == true)
    }

    @Test("a standby the primary feeds that nobody knows where it lives: refused")
    func stranger() throws {
        let spec = try Self.spec()
        let error = #expect(throws: ClusterError.self) {
            var observations = Self.observations()
            observations[0].replication.append(NodeFixture.row("ghost"))
            return try Self.make(spec, observations, recorded: Self.recorded(Self.three))
        }
        #expect(error?.exitCode == .refused)
        #expect(error?.message.contains("ghost") == true)
    }

    @Test("removing the only standby of a restricted quorum: refused unless --force")
    func countUnsatisfiable() throws {
        let spec = try Self.spec(standbys: ["node1"])
        let recorded = Self.recorded(Self.three, standbys: ["node2"])
        let observations = Self.observations(ssn: SynchronousMode.any(1).standbyNames(["node2"]))
        let error = #expect(throws: ClusterError.self) { try Self.make(spec, observations, recorded: recorded) }
        #expect(error?.exitCode == .refused)
        #expect(error?.message.contains("WAIT") == true)
        let forced = try Self.make(spec, observations, recorded: recorded, force: true)
        #expect(forced.steps == [.synchronous(.any(1), standbys: [], on: "node0"), .removeNode("node2", primary: "node0")])
    }

    @Test("a changed replication.synchronous is set over the standbys")
    func synchronousChange() throws {
        let spec = try Self.spec(synchronous: "{mode: first, count: 1}")
        let plan = try Self.make(spec, Self.observations(), recorded: Self.recorded(Self.three), settings: Self.settings(spec))
        #expect(plan.steps == [.synchronous(.first(1), standbys: ["node1", "node2"], on: "node0")])
        #expect(plan.synchronousTo == #"FIRST 1 ("node1", "node2")"#)
    }

    static let workMem = LiveSetting(
        name: "work_mem", setting: "4096", unit: "kB", vartype: "integer", context: "user", sourcefile: nil)
    static func sharedBuffers(_ pages: String) -> LiveSetting {
        LiveSetting(name: "shared_buffers", setting: pages, unit: "8kB", vartype: "integer", context: "postmaster",
            sourcefile: "/d/postgresql.conf")
    }
    static func maxConnections(_ n: String) -> LiveSetting {
        LiveSetting(name: "max_connections", setting: n, vartype: "integer", context: "postmaster", sourcefile: "/d/postgresql.conf")
    }

    @Test("work_mem changed: every node reloads, none restarts")
    func reloadOnly() throws {
        let spec = try Self.spec(parameters: ["work_mem": "64MB"])
        let plan = try Self.make(
            spec, Self.observations(), recorded: Self.recorded(Self.three), settings: Self.settings(spec, ["*": [Self.workMem]]))
        #expect(plan.steps == [.reload(Self.three)])
        #expect(plan.changes.map(\.restart) == [false, false, false])
    }

    @Test("a setting taken out of the spec goes back to its default")
    func settingRemoved() throws {
        let spec = try Self.spec()
        var workMem = Self.workMem
        workMem.sourcefile = "/d/postgresql.conf"
        let plan = try Self.make(
            spec, Self.observations(), recorded: Self.recorded(Self.three), settings: Self.settings(spec, ["node1": [workMem]]))
        #expect(plan.steps == [.reload(["node1"])])
        #expect(plan.changes.first?.to == "(default)")
    }

    @Test(
        "shared_buffers changed: standbys restart one at a time, then the primary as asked",
        arguments: [PrimaryUpdate.switchover, .restart])
    func rollingRestart(update: PrimaryUpdate) throws {
        let spec = try Self.spec(parameters: ["shared_buffers": "48MB"])
        let plan = try Self.make(
            spec, Self.observations(), recorded: Self.recorded(Self.three),
            settings: Self.settings(spec, ["*": [Self.sharedBuffers("4096")]]), update: update)
        #expect(
            plan.steps == [
                .reload(Self.three), .restartStandby("node1"), .restartStandby("node2"), .restartPrimary("node0", update),
            ])
    }

    @Test("max_connections raised: standbys first, then the primary by switchover")
    func raised() throws {
        let spec = try Self.spec(parameters: ["max_connections": "200"])
        let plan = try Self.make(
            spec, Self.observations(), recorded: Self.recorded(Self.three),
            settings: Self.settings(spec, ["*": [Self.maxConnections("100")]]))
        #expect(plan.steps.suffix(3) == [.restartStandby("node1"), .restartStandby("node2"), .restartPrimary("node0", .switchover)])
    }

    @Test("max_connections lowered: the primary first, in place, then the standbys")
    func lowered() throws {
        let spec = try Self.spec(parameters: ["max_connections": "50"])
        let plan = try Self.make(
            spec, Self.observations(), recorded: Self.recorded(Self.three),
            settings: Self.settings(spec, ["*": [Self.maxConnections("100")]]))
        #expect(plan.steps.suffix(3) == [.restartPrimary("node0", .restart), .restartStandby("node1"), .restartStandby("node2")])
        #expect(plan.notes.contains { $0.contains("no switchover") })
    }

    @Test("a primary already restarted with the lower value: only the standbys remain")
    func loweredHalfDone() throws {
        let spec = try Self.spec(parameters: ["max_connections": "50"])
        let plan = try Self.make(
            spec, Self.observations(), recorded: Self.recorded(Self.three),
            settings: Self.settings(spec, ["node1": [Self.maxConnections("100")], "node2": [Self.maxConnections("100")]]))
        #expect(plan.steps == [.reload(["node1", "node2"]), .restartStandby("node1"), .restartStandby("node2")])
    }

    @Test("one setting raised and another lowered at once: refused, two edits")
    func raisedAndLowered() throws {
        let spec = try Self.spec(parameters: ["max_connections": "200", "max_worker_processes": "4"])
        let workers = LiveSetting(
            name: "max_worker_processes", setting: "8", vartype: "integer", context: "postmaster", sourcefile: nil)
        let error = #expect(throws: ClusterError.self) {
            try Self.make(
                spec, Self.observations(), recorded: Self.recorded(Self.three),
                settings: Self.settings(spec, ["*": [Self.maxConnections("100"), workers]]))
        }
        #expect(error?.exitCode == .refused)
        #expect(error?.details.joined().contains("two edits") == true)
    }

    @Test(
        "values compared as PostgreSQL reads them",
        arguments: [
            ("32MB", "4096", "8kB", "integer", true), ("48MB", "4096", "8kB", "integer", false),
            ("1GB", "1024", "MB", "integer", true), ("10s", "10000", "ms", "integer", true), ("1s", "1", "s", "integer", true),
            ("-1", "-1", "MB", "integer", true), ("on", "on", nil, "bool", true), ("true", "on", nil, "bool", true),
            ("off", "on", nil, "bool", false), ("Replica", "replica", nil, "enum", true), ("0.9", "0.9", nil, "real", true),
            ("8GB", "8192", "MB", "integer", true), ("%m [%p] a ", "%m [%p] a ", nil, "string", true),
        ] as [(String, String, String?, String, Bool)])
    func valueComparison(desired: String, setting: String, unit: String?, vartype: String, same: Bool) {
        #expect(SettingValue.same(desired, LiveSetting(name: "x", setting: setting, unit: unit, vartype: vartype)) == same)
    }

    @Test("postgresql.conf lines read back: quotes and escapes undone, include lines skipped")
    func parseConf() {
        let parsed = SettingValue.parseConf("# c\nport = 5432\nlog_line_prefix = '%m [%p] it''s '\ninclude_if_exists = 'standby.conf'\n")
        #expect(parsed.map(\.0) == ["port", "log_line_prefix"])
        #expect(parsed.last?.1 == "%m [%p] it's ")
    }

    @Test("a node moved to another address, or a new name at a member's address: refused, nothing changed (apply neither moves nor renames)")
    func moveAndRename() throws {
        // node2's port changed in the spec.
        let moved = try SpecLoader.parse(
            Self.specText(standbys: ["node1", "node2"]).replacingOccurrences(of: "port: \(Self.port("node2"))", with: "port: 16000"),
            file: "/tmp/apply-plan-test.yaml")
        let move = #expect(throws: ClusterError.self) {
            try Self.make(moved, Self.observations(), recorded: Self.recorded(Self.three))
        }
        #expect(move?.exitCode == .refused)
        #expect(move?.message.contains("node2 is at 127.0.0.1:15434") == true && move?.message.contains("apply does not move a node") == true, "\(move?.message ?? "")")
        // node2 renamed node9 at the same address.
        let renamed = try SpecLoader.parse(
            Self.specText(standbys: ["node1", "node2"]).replacingOccurrences(of: "name: node2", with: "name: node9"),
            file: "/tmp/apply-plan-test.yaml")
        let rename = #expect(throws: ClusterError.self) {
            try Self.make(renamed, Self.observations(), recorded: Self.recorded(Self.three))
        }
        #expect(rename?.exitCode == .refused)
        #expect(rename?.message.contains("node9 is new") == true && rename?.message.contains("node2's address") == true, "\(rename?.message ?? "")")
        // As it is live: node9's probe reaches node2's server at that address, which answers.
        let answered = #expect(throws: ClusterError.self) {
            try Self.make(renamed, Self.observations(extra: ["node9"]), recorded: Self.recorded(Self.three))
        }
        #expect(answered?.message.contains("apply does not rename a node") == true, "\(answered?.message ?? "")")
    }
}
