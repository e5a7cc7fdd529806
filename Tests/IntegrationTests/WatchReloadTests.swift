import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// Issue 25: a running watcher follows the spec. Ports 22510-22529.
@Suite("watch: reload of the spec on real servers", .serialized, .clusterLimit)
struct WatchReloadTests {
    /// A three-node async cluster whose standbys may never be promoted (priority 0), with a
    /// watcher running on it; both always stopped.
    func withReloadCluster(
        name: String, basePort: Int, _ body: (TestCluster, WatchProcess) async throws -> Void
    ) async throws {
        let cluster = try TestCluster(
            name: name, basePort: basePort, standbys: 2, extraNodeYAML: "watch:\n  interval: 0.5\n  failoverAfter: 2\n")
        var watcher: WatchProcess?
        do {
            try cluster.editSpec { spec in
                [1, 2].reduce(spec) { text, i in
                    text.replacingOccurrences(of: "port: \(basePort + i)\n", with: "port: \(basePort + i)\n    priority: 0\n")
                }
            }
            try await cluster.initCluster()
            watcher = try WatchProcess(cluster)
            try #require(await watcher!.waitFor("start"), "watch did not start:\n\(watcher!.log)")
            try await body(cluster, watcher!)
        } catch {
            await watcher?.stop()
            print(watcher?.log ?? "")
            await cluster.teardown()
            throw error
        }
        await watcher?.stop()
        await cluster.teardown()
    }

    @Test("apply adds node3, SIGHUP: the watcher watches it, and kill -9 of the primary fails over to it")
    func addedNodeIsCandidate() async throws {
        try await withReloadCluster(name: "wr-add", basePort: 22510) { cluster, watcher in
            let port3 = 22513
            try cluster.editSpec { $0.replacingOccurrences(of: "watch:\n", with: "  - name: node3\n    port: \(port3)\nwatch:\n") }
            // A fourth node raises max_wal_senders: the primary restarts in place, and stays node0.
            let add = await cluster.run(["apply", "--primary-update", "restart"])
            try #require(add.status == 0, "apply: \(add.stderr)\n\(add.stdout)")
            try #require(cluster.onePrimary() == "node0", "\(add.stdout)")
            kill(watcher.pid, SIGHUP)
            #expect(await watcher.waitFor("reloaded"), "no reload:\n\(watcher.log)")
            #expect(watcher.lines("reloaded").contains { $0.contains("node3") }, "\(watcher.log)")
            #expect(await cluster.eventually(10) { watcher.lines("reloaded").contains { $0.contains("SIGHUP") } }, "\(watcher.log)")
            #expect(watcher.isRunning, "SIGHUP ended the watcher")
            // While spec and record disagreed about node3 the watcher said so, and then that they agree.
            #expect(watcher.lines("members").contains { $0.contains("node3") && $0.contains("differ") }, "\(watcher.log)")
            #expect(await cluster.eventually(10) { watcher.lines("members").last?.contains("agree again") == true }, "\(watcher.log)")

            try cluster.kill9Postmaster("node0")
            let promoted = await cluster.eventually(30) {
                try cluster.sqlAt(port3, "SELECT pg_is_in_recovery()").scalar == "f"
            }
            #expect(promoted, "node3 was not promoted:\n\(watcher.log)")
            #expect(await watcher.waitFor("failed-over", timeout: 30), "\(watcher.log)")
            #expect(watcher.lines("failed-over").contains { $0.contains("node3 is the primary") }, "\(watcher.log)")
            // The others follow the new primary.
            #expect(await cluster.eventually(30) { try cluster.upstreamPort(of: "node1") == port3 }, "\(watcher.log)")
        }
    }

    @Test("a bad spec is logged in one line and the old one kept: the watcher still fails over")
    func badSpecKept() async throws {
        try await withReloadCluster(name: "wr-bad", basePort: 22520) { cluster, watcher in
            // Priorities back to the default, then a broken file: the old spec (priority 0) stays.
            let good = try String(contentsOfFile: cluster.specPath, encoding: .utf8)
            try cluster.editSpec { $0.replacingOccurrences(of: "priority: 0", with: "priority: 100") + "bogus: 1\n" }
            kill(watcher.pid, SIGHUP)
            #expect(await watcher.waitFor("reload-refused"), "\(watcher.log)")
            let badLines = watcher.lines("reload-refused")
            #expect(badLines.first?.contains("bogus") == true, "\(badLines)")
            #expect(watcher.lines("reloaded").isEmpty)
            // A change the running watcher cannot take (its name) is refused too.
            try good.replacingOccurrences(of: "name: wr-bad", with: "name: wr-other")
                .write(toFile: cluster.specPath, atomically: true, encoding: .utf8)
            kill(watcher.pid, SIGHUP)
            #expect(await cluster.eventually(10) { watcher.lines("reload-refused").count >= 2 }, "\(watcher.log)")
            #expect(watcher.lines("reload-refused").last?.contains("restart the watcher") == true, "\(watcher.log)")
            #expect(watcher.isRunning)
            // With the old spec, node1 and node2 may not be promoted: no failover, a refusal.
            try cluster.kill9Postmaster("node0")
            let refused = await cluster.eventually(20) {
                !watcher.lines("refused").isEmpty || !watcher.lines("failover-failed").isEmpty
            }
            #expect(refused, "\(watcher.log)")
            #expect(cluster.primaries().isEmpty, "a priority-0 standby was promoted:\n\(watcher.log)")
        }
    }
}
