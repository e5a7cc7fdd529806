import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

@Suite("quorum and dsn on real servers", .serialized, .clusterLimit)
struct QuorumTests {
    func syncStates(_ cluster: TestCluster) throws -> [String: String] {
        let rows = try cluster.sql("node0", "SELECT application_name, sync_state FROM pg_stat_replication")
        return Dictionary(uniqueKeysWithValues: rows.rows.map { ($0[0]!, $0[1]!) })
    }

    /// Reads a command's --json output as a JSON value.
    static func json(_ stdout: String) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(stdout.utf8))
    }

    @Test("--json on init, quorum, stop, start and dsn: documents a script can read, that say what happened")
    func jsonOutput() async throws {
        try await withCluster(name: "quorumjson", basePort: 21045, standbys: 1) { cluster in
            let made = await cluster.run(["init", "--json"])
            try #require(made.status == 0, "init --json: \(made.stderr)")
            // The status document, each node with its role.
            let status = try #require(try Self.json(made.stdout) as? [String: Any], "\(made.stdout)")
            let nodes = try #require(status["nodes"] as? [[String: Any]], "\(made.stdout)")
            #expect(nodes.compactMap { $0["role"] as? String }.sorted() == ["primary", "standby"], "\(made.stdout)")

            let quorum = await cluster.run(["quorum", "--any", "1", "--json"])
            #expect(quorum.status == 0, "quorum --json: \(quorum.stderr)")
            let set = try #require(try Self.json(quorum.stdout) as? [String: Any], "\(quorum.stdout)")
            #expect(set["primary"] as? String == "node0")
            #expect(set["synchronousStandbyNames"] as? String == "ANY 1 (\"node1\")", "\(quorum.stdout)")
            let rows = try #require(set["replication"] as? [[String: String]], "\(quorum.stdout)")
            #expect(rows == [["standby": "node1", "state": "streaming", "sync": "quorum"]], "\(quorum.stdout)")

            let stopped = await cluster.run(["stop", "--json", "node1"])
            #expect(stopped.status == 0, "stop --json: \(stopped.stderr)")
            #expect(try Self.json(stopped.stdout) as? [[String: String]] == [["node": "node1", "result": "stopped"]], "\(stopped.stdout)")
            let again = await cluster.run(["stop", "--json", "node1"])
            #expect(try Self.json(again.stdout) as? [[String: String]] == [["node": "node1", "result": "was not running"]], "\(again.stdout)")
            let started = await cluster.run(["start", "--json", "node1"])
            #expect(started.status == 0, "start --json: \(started.stderr)")
            #expect(
                try Self.json(started.stdout) as? [[String: String]] == [["node": "node1", "result": "started as a standby of node0"]],
                "\(started.stdout)")

            let dsn = await cluster.run(["dsn", "--json"])
            #expect(dsn.status == 0, "dsn --json: \(dsn.stderr)")
            let strings = try #require(try Self.json(dsn.stdout) as? [String: String], "\(dsn.stdout)")
            #expect(strings["readWrite"]?.contains("target_session_attrs=read-write") == true, "\(dsn.stdout)")
            #expect(strings["readOnly"]?.contains("target_session_attrs=prefer-standby") == true, "\(dsn.stdout)")
            #expect(strings["database"] == "postgres" && strings["user"] != nil)
            // The read-write string reaches the primary.
            let connection = try PGConnection.connect(
                conninfo: try #require(strings["readWrite"]), password: try cluster.credentials().superuser.password)
            defer { connection.close() }
            #expect(try connection.query("SELECT pg_is_in_recovery()").scalar == "f")
        }
    }

    @Test("ANY 1 holds with one standby down and blocks commits with both down; FIRST 1 and async switch back")
    func quorumModes() async throws {
        try await withCluster(name: "quorum", basePort: 21040) { cluster in
            try await cluster.initCluster()
            try cluster.sql("node0", "CREATE TABLE t (id serial PRIMARY KEY, at timestamptz DEFAULT now())")

            // Default: ANY 1 over both standbys.
            let quorum = await cluster.run(["quorum"])
            #expect(quorum.status == 0, "quorum: \(quorum.stderr)")
            #expect(try syncStates(cluster) == ["node1": "quorum", "node2": "quorum"])
            #expect(try cluster.sql("node0", "SHOW synchronous_standby_names").scalar == "ANY 1 (\"node1\", \"node2\")")
            #expect(quorum.stdout.contains("ANY 1"))
            let state = try #require(try ClusterState.load("\(cluster.dataRoot)/state.json"))
            #expect(state.synchronous.mode == "any" && state.synchronous.count == 1)

            // One standby stopped: commits still return, and stop says nothing of them.
            let one = await cluster.run(["stop", "node2"])
            #expect(one.status == 0 && !one.stderr.contains("WAIT"), "\(one.stderr)")
            try cluster.sql("node0", "INSERT INTO t DEFAULT VALUES")
            #expect(try cluster.sql("node0", "SELECT count(*) FROM t").scalar == "1")

            // Both stopped: a commit does not return within 2 seconds; stop said so.
            let both = await cluster.run(["stop", "node1"])
            #expect(both.status == 0)
            #expect(both.stderr.contains("warning: commits on node0 WAIT") && both.stderr.contains("start node1 again"), "\(both.stderr)")
            let blocked = try cluster.connect("node0")
            let returned = await Blocking.run(timeout: 2.0) { () -> Bool in
                (try? blocked.query("INSERT INTO t DEFAULT VALUES")) != nil
            }
            #expect(returned == nil, "a commit returned with no standby streaming under ANY 1")
            blocked.cancel()
            let status = await cluster.run(["status"])
            #expect(status.status == 1)
            #expect(status.stdout.contains("WAIT"), "status should say commits wait: \(status.stdout)")

            // Refusals: more than the standbys that answer, and too few streaming.
            let tooMany = await cluster.run(["quorum", "--any", "3"])
            #expect(tooMany.status == 2)
            #expect(tooMany.stderr.contains("needs at least 3"))

            #expect(await cluster.run(["start", "node1", "node2"]).status == 0)
            let back = await cluster.eventually { try syncStates(cluster).values.sorted() == ["quorum", "quorum"] }
            #expect(back)

            // FIRST 1: one sync, one potential.
            let first = await cluster.run(["quorum", "--first", "1"])
            #expect(first.status == 0, "first: \(first.stderr)")
            #expect(try syncStates(cluster).values.sorted() == ["potential", "sync"])

            // --standbys restricts the list; the other becomes async.
            let only = await cluster.run(["quorum", "--any", "1", "--standbys", "node2"])
            #expect(only.status == 0, "only: \(only.stderr)")
            #expect(try syncStates(cluster) == ["node1": "async", "node2": "quorum"])
            let notANode = await cluster.run(["quorum", "--standbys", "nope"])
            #expect(notANode.status == 64)

            // Back to async.
            let async = await cluster.run(["quorum", "--async"])
            #expect(async.status == 0, "async: \(async.stderr)")
            #expect(try syncStates(cluster) == ["node1": "async", "node2": "async"])
            #expect(try cluster.sql("node0", "SHOW synchronous_standby_names").scalar == "")

            // Too few streaming is refused without --force.
            #expect(await cluster.run(["stop", "node1", "node2"]).status == 0)
            let noneStreaming = await cluster.run(["quorum", "--any", "1", "--standbys", "node1"])
            #expect(noneStreaming.status == 2)
            #expect(noneStreaming.stderr.contains("--force"))
            #expect(try cluster.sql("node0", "SHOW synchronous_standby_names").scalar == "", "a refusal must change nothing")
        }
    }

    @Test("init applies the spec's ANY 1; the DSNs reach the primary and a standby")
    func initModeAndDSN() async throws {
        try await withCluster(name: "dsn", basePort: 21050, synchronous: "{mode: any, count: 1}") { cluster in
            try await cluster.initCluster()
            #expect(try syncStates(cluster) == ["node1": "quorum", "node2": "quorum"])

            let readWrite = await cluster.run(["dsn"])
            #expect(readWrite.status == 0)
            #expect(readWrite.stdout.contains("target_session_attrs=read-write"))
            #expect(!readWrite.stdout.contains("password"))
            let readOnly = await cluster.run(["dsn", "--read-only"])
            #expect(readOnly.stdout.contains("target_session_attrs=prefer-standby"))

            let password = try cluster.credentials().superuser.password
            let primary = try PGConnection.connect(
                conninfo: readWrite.stdout.trimmingCharacters(in: .whitespacesAndNewlines), password: password)
            #expect(try primary.query("SELECT pg_is_in_recovery()").scalar == "f")
            let standby = try PGConnection.connect(
                conninfo: readOnly.stdout.trimmingCharacters(in: .whitespacesAndNewlines), password: password)
            #expect(try standby.query("SELECT pg_is_in_recovery()").scalar == "t")

            let withPassword = await cluster.run(["dsn", "--with-password"])
            #expect(withPassword.stdout.contains("password=\(password)"))
        }
    }
}
