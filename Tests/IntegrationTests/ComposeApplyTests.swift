import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

extension ComposeTests {
    /// `apply` on compose (ports 22126-22128): settings by reload, a restart rolled through
    /// the standbys and a switchover, and nodes refused.
    @Test(
        "compose: apply reloads work_mem without a restart, rolls shared_buffers through every node (the primary by switchover), refuses a new node",
        ComposeEngine.required)
    func composeApply() async throws {
        try await withComposeCluster(name: "apply", basePort: 22126, subnet: "172.29.126.0/24") { cluster in
            let initResult = await cluster.pgcluster(["init"])
            try #require(initResult.status == 0, "init: \(initResult.stderr)")
            func started() throws -> [String: String] {
                var times: [String: String] = [:]
                for node in cluster.nodeNames {
                    times[node] = try cluster.sql(node, "SELECT pg_postmaster_start_time()::text").scalar
                }
                return times
            }
            func setting(_ name: String) throws -> Set<String?> {
                Set(try cluster.nodeNames.map { try cluster.sql($0, "SHOW \(name)").scalar })
            }
            func edit(_ old: String, _ new: String) throws {
                let text = try String(contentsOfFile: cluster.specPath, encoding: .utf8)
                #expect(text.contains(old), "the spec has no '\(old)'")
                try text.replacingOccurrences(of: old, with: new).write(toFile: cluster.specPath, atomically: true, encoding: .utf8)
            }

            // work_mem: written into each node's folder of the project, reloaded; no restart.
            let before = try started()
            try edit("shared_buffers: 32MB", "shared_buffers: 32MB\n    work_mem: 8MB")
            let reload = await cluster.pgcluster(["apply"])
            #expect(reload.status == 0, "apply: \(reload.stderr)")
            #expect(try setting("work_mem") == ["8MB"])
            #expect(try started() == before, "a reload restarted a server")

            // shared_buffers: pending_restart; standbys one at a time, then the primary by switchover.
            try edit("shared_buffers: 32MB", "shared_buffers: 48MB")
            let restart = await cluster.pgcluster(["apply"])
            #expect(restart.status == 0, "apply: \(restart.stderr)")
            #expect(restart.stdout.contains("switchover"), "\(restart.stdout)")
            #expect(try setting("shared_buffers") == ["48MB"])
            let after = try started()
            for node in cluster.nodeNames { #expect(after[node] != before[node], "\(node) was not restarted") }
            let primaries = try cluster.nodeNames.filter { try cluster.sql($0, "SELECT pg_is_in_recovery()").scalar == "f" }
            #expect(primaries.count == 1 && primaries != ["node0"], "primaries after apply: \(primaries)")
            #expect(await cluster.waitHealthy(60).status == 0)

            // A new node: refused on compose, nothing changed.
            try edit("  - {name: node2, port: 22128}\n", "  - {name: node2, port: 22128}\n  - {name: node3, port: 22129}\n")
            let add = await cluster.pgcluster(["apply"])
            #expect(add.status == 2, "apply with a new node: \(add.status) \(add.stderr)")
            #expect(add.stderr.contains("add node3: on backend compose"), "\(add.stderr)")
            #expect(try started() == after)
        }
    }
}
