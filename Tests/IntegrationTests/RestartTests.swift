import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// `pgcluster restart` and `status --json`'s pendingRestart on real servers (ports 22550-22569).
@Suite("restart --pending and the major-version check on real servers", .serialized, .clusterLimit)
struct RestartTests {
    static func statusNodes(_ cluster: TestCluster) async throws -> (healthy: Bool, nodes: [String: [String: Any]]) {
        let status = await cluster.run(["status", "--json"])
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any], "status: \(status.stderr)")
        let nodes = try #require(object["nodes"] as? [[String: Any]])
        return (
            object["healthy"] as? Bool == true,
            Dictionary(uniqueKeysWithValues: nodes.map { ($0["name"] as? String ?? "", $0) })
        )
    }

    @Test("shared_buffers changed by ALTER SYSTEM on every node: restart --pending restarts them all, the primary by switchover, under 4 writers, nothing acknowledged lost")
    func pendingRollingRestart() async throws {
        try await withCluster(name: "restart-pending", basePort: 22550, synchronous: "{mode: any, count: 1}") { cluster in
            try await cluster.initCluster()
            // Nothing pending yet: nothing to restart.
            let idle = await cluster.run(["restart", "--pending"])
            #expect(idle.status == 0, "\(idle.stderr)")
            #expect(idle.stdout.contains("nothing to restart"), "\(idle.stdout)")

            let load = try await cluster.startLoad(clients: 4)
            #expect(await cluster.waitForAcks(load, atLeast: 100))
            for node in cluster.nodeNames {
                try cluster.sql(node, "ALTER SYSTEM SET shared_buffers = '48MB'")
                try cluster.sql(node, "SELECT pg_reload_conf()")
            }
            // status --json says which nodes wait for a restart.
            let pending = await cluster.eventuallyAsync(20) {
                let nodes = try await Self.statusNodes(cluster).nodes
                return cluster.nodeNames.allSatisfy { nodes[$0]?["pendingRestart"] as? Bool == true }
            }
            #expect(pending, "every node shows pendingRestart after the reload")

            let restart = await cluster.run(["restart", "--pending"])
            #expect(restart.status == 0, "restart: \(restart.stderr)\n\(restart.stdout)")
            #expect(restart.stdout.contains("restart standby node1"), "\(restart.stdout)")
            #expect(restart.stdout.contains("restart standby node2"), "\(restart.stdout)")
            #expect(restart.stdout.contains("restart primary node0 by switchover"), "\(restart.stdout)")
            let before = load.counts.acknowledged
            #expect(await cluster.waitForAcks(load, atLeast: before + 100), "writes resume on the new primary")
            let summary = await load.stop()

            // Every node runs with the new value, nothing waits, and node0 is no longer the primary.
            for node in cluster.nodeNames {
                #expect(try cluster.sql(node, "SHOW shared_buffers").scalar == "48MB", "\(node)")
            }
            let after = try await Self.statusNodes(cluster)
            #expect(after.healthy)
            #expect(cluster.nodeNames.allSatisfy { after.nodes[$0]?["pendingRestart"] as? Bool == false })
            let primary = try #require(after.nodes.values.first { $0["role"] as? String == "primary" }?["name"] as? String)
            #expect(primary != "node0", "the primary restarted by switchover")
            #expect(after.nodes["node0"]?["role"] as? String == "standby")
            for (name, node) in after.nodes where name != primary {
                #expect(node["lagSeconds"] is Double, "\(name): lagSeconds is known for a streaming standby")
            }
            // Nothing acknowledged is lost.
            #expect(summary.acknowledged.count > 200)
            #expect(try cluster.presentIds(primary, summary.acknowledged).count == summary.acknowledged.count)
            // And nothing waits any more.
            let again = await cluster.run(["restart", "--pending", "--json"])
            #expect(again.status == 0)
            let plan = try JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as? [String: Any]
            #expect((plan?["steps"] as? [String])?.isEmpty == true, "\(again.stdout)")
            #expect(plan?["skipped"] as? [String] == cluster.nodeNames, "\(again.stdout)")
        }
    }

    @Test("a stopped node's PG_VERSION says 14 with postgres.version 15: start, apply and init --force refuse (exit 2) naming both; put back, it starts")
    func majorVersionRefused() async throws {
        try await withCluster(name: "restart-version", basePort: 22560, synchronous: "{mode: async}") { cluster in
            try await cluster.initCluster()
            let stop = await cluster.run(["stop", "node2"])
            try #require(stop.status == 0, "stop: \(stop.stderr)")
            let path = "\(cluster.dataRoot)/node2/data/PG_VERSION"
            let original = try String(contentsOfFile: path, encoding: .utf8)
            #expect(original == "15\n")
            // Written in place: owner and mode stay the server user's.
            let handle = try #require(FileHandle(forWritingAtPath: path))
            try handle.truncate(atOffset: 0)
            try handle.write(contentsOf: Data("14\n".utf8))
            try handle.close()

            for command in [["start", "node2"], ["start"], ["apply"], ["init", "--force"]] {
                let result = await cluster.run(command)
                #expect(result.status == 2, "\(command): \(result.status) \(result.stderr)")
                #expect(
                    result.stderr.contains("node2: its data directory \(path.dropLast("/PG_VERSION".count)) is PostgreSQL 14")
                        && result.stderr.contains("postgres.version 15"), "\(command): \(result.stderr)")
                #expect(result.stderr.contains("pg_upgrade"), "\(command): \(result.stderr)")
            }
            // init --force erased nothing: the primary still runs with its data.
            #expect(try cluster.sql("node0", "SELECT 1").scalar == "1")
            #expect(FileManager.default.fileExists(atPath: "\(cluster.dataRoot)/node1/data/PG_VERSION"))

            let restore = try #require(FileHandle(forWritingAtPath: path))
            try restore.truncate(atOffset: 0)
            try restore.write(contentsOf: Data(original.utf8))
            try restore.close()
            let start = await cluster.run(["start", "node2"])
            #expect(start.status == 0, "start: \(start.stderr)")
            #expect(await cluster.run(["status"]).status == 0)
        }
    }
}
