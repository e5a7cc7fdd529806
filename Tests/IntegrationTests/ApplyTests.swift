import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

extension TestCluster {
    /// Rewrites the spec file, as an operator editing it would.
    func editSpec(_ change: (String) -> String) throws {
        let text = try String(contentsOfFile: specPath, encoding: .utf8)
        let edited = change(text)
        try #require(edited != text, "the edit changed nothing in the spec")
        try edited.write(toFile: specPath, atomically: true, encoding: .utf8)
    }

    /// SQL on whatever node listens on `port` of this machine (also one not in the spec any more).
    func sqlAt(_ port: Int, _ query: String) throws -> QueryResult {
        let credentials = try credentials()
        let connection = try PGConnection.connect(
            ConnectionTarget(
                host: "127.0.0.1", port: port, user: credentials.superuser.user, password: credentials.superuser.password,
                connectTimeout: 5, rootCertificate: caFile))
        defer { connection.close() }
        return try connection.query(query)
    }

    /// Each node's pg_postmaster_start_time, by name.
    func startTimes(_ nodes: [String]) throws -> [String: String] {
        var times: [String: String] = [:]
        for node in nodes { times[node] = try sqlAt(port(node), "SELECT pg_postmaster_start_time()::text").scalar }
        return times
    }

    func primaryName(among nodes: [String]) throws -> String {
        try #require(nodes.first { (try? sqlAt(port($0), "SELECT pg_is_in_recovery()").scalar) == "f" })
    }
}

@Suite("apply: the spec is the desired state, on real servers", .serialized, .clusterLimit)
struct ApplyTests {
    static let node3YAML = "  - name: node3\n    port: %d\n"

    @Test("--dry-run changes nothing; a third standby joins and streams; removed, it is gone; removing the primary is refused")
    func addAndRemove() async throws {
        try await withCluster(name: "ap-nodes", basePort: 21300, synchronous: "{mode: any, count: 1}") { cluster in
            try await cluster.initCluster()
            let port3 = 21303
            try cluster.editSpec { $0 + String(format: Self.node3YAML, port3) }

            // --dry-run: the plan is printed, status and files stay as they were.
            let statusBefore = await cluster.run(["status", "--json"])
            let stateBefore = try String(contentsOfFile: "\(cluster.dataRoot)/state.json", encoding: .utf8)
            let confBefore = try String(contentsOfFile: "\(cluster.dataRoot)/node0/data/postgresql.conf", encoding: .utf8)
            let dry = await cluster.run(["apply", "--dry-run"])
            #expect(dry.status == 0, "\(dry.stderr)")
            #expect(dry.stdout.contains("add node3"), "\(dry.stdout)")
            let statusAfter = await cluster.run(["status", "--json"])
            #expect(Self.shape(statusBefore.stdout) == Self.shape(statusAfter.stdout))
            #expect(try String(contentsOfFile: "\(cluster.dataRoot)/state.json", encoding: .utf8) == stateBefore)
            #expect(try String(contentsOfFile: "\(cluster.dataRoot)/node0/data/postgresql.conf", encoding: .utf8) == confBefore)
            #expect(!FileManager.default.fileExists(atPath: "\(cluster.dataRoot)/node3"))

            // Added: it streams and is listed.
            let add = await cluster.run(["apply"])
            #expect(add.status == 0, "apply: \(add.stderr)\n\(add.stdout)")
            let primary = try cluster.primaryName(among: ["node0", "node1", "node2"])
            let rows = try cluster.sqlAt(cluster.port(primary), "SELECT application_name, state, sync_state FROM pg_stat_replication ORDER BY 1")
            #expect(rows.rows.contains { $0[0] == "node3" && $0[1] == "streaming" && $0[2] == "quorum" }, "\(rows.rows)")
            let names = try cluster.sqlAt(cluster.port(primary), "SHOW synchronous_standby_names").scalar ?? ""
            #expect(names.contains("\"node3\"") && names.hasPrefix("ANY 1"), "\(names)")
            // Nothing left to do: apply again plans nothing.
            let again = await cluster.run(["apply", "--dry-run"])
            #expect(again.stdout.contains("nothing to change"), "\(again.stdout)")

            // Removed: gone from the list, its slot dropped, no postmaster left.
            try cluster.editSpec { $0.replacingOccurrences(of: String(format: Self.node3YAML, port3), with: "") }
            let remove = await cluster.run(["apply"])
            #expect(remove.status == 0, "apply: \(remove.stderr)\n\(remove.stdout)")
            let primaryNow = try cluster.primaryName(among: ["node0", "node1", "node2"])
            let after = try cluster.sqlAt(cluster.port(primaryNow), "SELECT application_name FROM pg_stat_replication ORDER BY 1")
            #expect(after.rows.map { $0[0] } == ["node0", "node1", "node2"].filter { $0 != primaryNow })
            #expect(!(try cluster.sqlAt(cluster.port(primaryNow), "SHOW synchronous_standby_names").scalar ?? "").contains("node3"))
            #expect(try cluster.sqlAt(cluster.port(primaryNow), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pgcluster_node3'").scalar == "0")
            #expect(cluster.postmasterPID("node3") == nil)
            #expect(!cluster.runningServers().isEmpty)
            #expect(!FileManager.default.fileExists(atPath: "\(cluster.dataRoot)/node3/data"))

            // Removing the current primary: refused with the way forward, nothing touched.
            try cluster.editSpec { text in
                let lines = text.components(separatedBy: "\n")
                guard let at = lines.firstIndex(of: "  - name: \(primaryNow)") else { return text }
                var kept = lines
                kept.removeSubrange(at..<(at + 3 < lines.count && lines[at + 3].hasPrefix("    role") ? at + 4 : at + 3))
                if primaryNow == "node0" {
                    // The spec still needs a role: primary; name node1 as it.
                    if let one = kept.firstIndex(of: "  - name: node1") { kept.insert("    role: primary", at: one + 3) }
                }
                return kept.joined(separator: "\n")
            }
            let refused = await cluster.run(["apply"])
            #expect(refused.status == 2, "\(refused.stderr)\n\(refused.stdout)")
            #expect(refused.stderr.contains("switchover first"), "\(refused.stderr)")
            #expect(refused.stderr.contains("pgcluster switchover"), "\(refused.stderr)")
            #expect(try cluster.sqlAt(cluster.port(primaryNow), "SELECT pg_is_in_recovery()").scalar == "f")
        }
    }

    /// status --json without the positions that move by themselves.
    static func shape(_ json: String) -> String {
        guard let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
            let nodes = object["nodes"] as? [[String: Any]]
        else { return json }
        let rows = nodes.map { node in
            ["name", "role", "syncState", "upstream", "streaming", "timeline"].map { "\(node[$0] ?? "-")" }.joined(separator: ",")
        }
        let synchronous = (object["synchronous"] as? [String: Any] ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        return "\(object["primary"] ?? "-") \(synchronous) " + rows.joined(separator: ";")
    }

    @Test("work_mem: reloaded on every node, none restarted; shared_buffers: each node restarted once, standbys first, nothing acknowledged lost")
    func settings() async throws {
        try await withCluster(name: "ap-set", basePort: 21310, synchronous: "{mode: any, count: 1}") { cluster in
            try await cluster.initCluster()
            let nodes = ["node0", "node1", "node2"]

            let started = try cluster.startTimes(nodes)
            // A name PostgreSQL does not know, or a value it refuses: refused with its words
            // (exit 65) before any file is written. Written, the server stopped reloading and
            // could not start again.
            let good = try String(contentsOfFile: cluster.specPath, encoding: .utf8)
            for (bad, said) in [
                ("not_a_setting: 1", #"unrecognized configuration parameter "not_a_setting""#),
                ("work_mem: banana", #"invalid value for parameter "work_mem": "banana""#),
            ] {
                try cluster.editSpec { $0.replacingOccurrences(of: "max_wal_size: 256MB", with: "max_wal_size: 256MB\n    \(bad)") }
                let refused = await cluster.run(["apply"])
                #expect(refused.status == 65 && refused.stderr.contains(said), "\(refused.status): \(refused.stderr)")
                for node in nodes {
                    let conf = try String(contentsOfFile: "\(cluster.dataRoot)/\(node)/data/postgresql.conf", encoding: .utf8)
                    #expect(!conf.contains(bad.split(separator: ":")[0] + " ="), "\(node)'s postgresql.conf took \(bad)")
                }
                try good.write(toFile: cluster.specPath, atomically: true, encoding: .utf8)
            }
            try cluster.editSpec { $0.replacingOccurrences(of: "max_wal_size: 256MB", with: "max_wal_size: 256MB\n    work_mem: 24MB") }
            let reload = await cluster.run(["apply"])
            #expect(reload.status == 0, "apply: \(reload.stderr)\n\(reload.stdout)")
            for node in nodes { #expect(try cluster.sqlAt(cluster.port(node), "SHOW work_mem").scalar == "24MB") }
            #expect(try cluster.startTimes(nodes) == started, "a node restarted for work_mem")

            let load = try await cluster.startLoad(clients: 4)
            #expect(await cluster.waitForAcks(load, atLeast: 200))
            try cluster.editSpec { $0.replacingOccurrences(of: "shared_buffers: 32MB", with: "shared_buffers: 40MB") }
            let restart = await cluster.run(["apply", "--json"])
            #expect(restart.status == 0, "apply: \(restart.stderr)\n\(restart.stdout)")
            let before = load.counts.acknowledged
            #expect(await cluster.waitForAcks(load, atLeast: before + 100), "no writes acknowledged after apply")
            let summary = await load.stop()

            let primary = try cluster.primaryName(among: nodes)
            #expect(primary != "node0", "the primary should have changed by switchover")
            let present = try cluster.presentIds(primary, summary.acknowledged)
            let lost = summary.acknowledged.filter { !present.contains($0) }
            #expect(lost.isEmpty, "lost \(lost.count) of \(summary.acknowledged.count) acknowledged rows")
            let restarted = try cluster.startTimes(nodes)
            for node in nodes {
                #expect(restarted[node] != started[node], "\(node) was not restarted")
                #expect(try cluster.sqlAt(cluster.port(node), "SHOW shared_buffers").scalar == "40MB")
            }
            // Standbys first: the old primary started last. Each once: the report restarts each node one time.
            #expect(restarted["node0"]! > restarted["node1"]! && restarted["node0"]! > restarted["node2"]!)
            let history = try String(contentsOfFile: "\(cluster.dataRoot)/history.json", encoding: .utf8)
            #expect(history.contains("switchover") && !history.contains("failover"))
            let report = try #require(try JSONSerialization.jsonObject(with: Data(restart.stdout.utf8)) as? [String: Any])
            let steps = try #require((report["plan"] as? [String: Any])?["steps"] as? [String])
            #expect(steps.filter { $0.hasPrefix("restart standby") }.count == 2, "\(steps)")
            #expect(steps.last?.hasPrefix("restart primary node0 by switchover") == true, "\(steps)")
            #expect(report["primary"] as? String == primary)
        }
    }

    @Test("max_connections raised, then lowered: every node up at the end of each; a standby started before apply keeps the primary's value")
    func orderedSettings() async throws {
        try await withCluster(name: "ap-conn", basePort: 21320, synchronous: "{mode: any, count: 1}") { cluster in
            try await cluster.initCluster()
            let nodes = ["node0", "node1", "node2"]
            for (from, to) in [("max_wal_size: 256MB", "max_wal_size: 256MB\n    max_connections: 150"),
                ("max_connections: 150", "max_connections: 60")]
            {
                try cluster.editSpec { $0.replacingOccurrences(of: from, with: to) }
                if to.hasSuffix("60") {
                    // Lowered in the spec, not applied yet: a standby stopped and started keeps
                    // the primary's 150 (PostgreSQL would refuse a standby below it).
                    let primary = try cluster.primaryName(among: nodes)
                    let standby = try #require(nodes.first { $0 != primary })
                    #expect(await cluster.run(["stop", standby]).status == 0)
                    let start = await cluster.run(["start", standby])
                    #expect(start.status == 0, "\(start.stderr)")
                    #expect(start.stderr.contains("max_connections = 150 as on \(primary)"), "\(start.stderr)")
                    #expect(try cluster.sqlAt(cluster.port(standby), "SHOW max_connections").scalar == "150")
                }
                let result = await cluster.run(["apply"])
                #expect(result.status == 0, "apply: \(result.stderr)\n\(result.stdout)")
                let value = to.hasSuffix("150") ? "150" : "60"
                for node in nodes {
                    #expect(try cluster.sqlAt(cluster.port(node), "SHOW max_connections").scalar == value, "\(node)")
                }
                let primary = try cluster.primaryName(among: nodes)
                let streaming = try cluster.sqlAt(
                    cluster.port(primary), "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
                #expect(streaming.scalar == "2")
            }
        }
    }
}
