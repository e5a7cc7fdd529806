import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// Issue 25: hooks after a change of primary, on real servers. Ports 22530-22539.
@Suite("hooks on role change", .serialized, .clusterLimit)
struct HookTests {
    @Test("kill -9 under watch: the hook moves the \"VIP\" to the new primary; a failing (exit 3) and a hanging hook (sleep 60, timeout 1 s) are reported and the failover stands; switchover runs the hook too")
    func vip() async throws {
        let hooks = """
            hooks:
              onRoleChange: echo "$PGCLUSTER_NEW_PRIMARY $PGCLUSTER_REASON $PGCLUSTER_OLD_PRIMARY" > vip; exit 3
              onFailover: [/bin/sleep, "60"]
              timeout: 1s

            """
        try await withWatchedCluster(name: "hk-vip", basePort: 22530, synchronous: "{mode: async}", watch: hooks) {
            cluster, watcher in
            let watcher = try #require(watcher)
            let vip = "\(cluster.root)/vip"
            try cluster.kill9Postmaster("node0")
            #expect(await watcher.waitFor("failed-over", timeout: 40), "\(watcher.log)")
            let newPrimary = try #require(cluster.onePrimary(besides: "node0"), "\(watcher.log)")
            #expect((try? String(contentsOfFile: vip, encoding: .utf8)) == "\(newPrimary) failover node0\n")
            let warnings = watcher.lines("warning")
            #expect(warnings.contains { $0.contains("hook onRoleChange failed (exit 3") }, "\(watcher.log)")
            #expect(warnings.contains { $0.contains("hook onFailover failed") && $0.contains("did not end within 1") }, "\(watcher.log)")
            #expect(watcher.lines("failover-failed").isEmpty, "\(watcher.log)")
            // The failover stands: writes go to the new primary, the other standby follows.
            try cluster.sql(newPrimary, "CREATE TABLE after_hooks (id int)")
            let other = newPrimary == "node1" ? "node2" : "node1"
            #expect(await cluster.eventually(30) { try cluster.upstreamPort(of: other) == cluster.port(newPrimary) })
            // No hook is left running: the group of the hanging one was killed.
            #expect(Self.sleepers().isEmpty, "sleep 60 still runs: \(Self.sleepers())")

            // A person's switchover runs onRoleChange too (not onFailover), and exits 0.
            await watcher.stop()
            let back = await cluster.run(["switchover", "--candidate", other])
            #expect(back.status == 0, "\(back.stderr)\n\(back.stdout)")
            #expect(back.stdout.contains("hook onRoleChange failed (exit 3"), "\(back.stdout)")
            #expect((try? String(contentsOfFile: vip, encoding: .utf8)) == "\(other) switchover \(newPrimary)\n")
        }
    }

    /// PIDs of `/bin/sleep 60` processes (the hanging hook).
    static func sleepers() -> [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.filter { entry in
            guard Int(entry) != nil, let cmdline = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return false }
            return String(decoding: cmdline, as: UTF8.self) == "/bin/sleep\u{0}60\u{0}" && LocalHost.isAlive(pid_t(entry)!)
        }
    }
}
