import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// Issue 20, "unknown is never stopped", on real containers: `docker pause` freezes a
/// container; its server comes back as a primary the moment it is unpaused. Before, the
/// compose backend read a paused container as stopped, and a watcher on an asynchronous
/// cluster promoted a standby within 8 s without a fence: two primaries after the unpause.
/// Ports 22130-22132.
extension ComposeTests {
    @Test(
        "compose: a paused primary container is unknown, not stopped: an async watcher does not fail over; unpaused, one primary",
        ComposeEngine.required)
    func pausedPrimary() async throws {
        try await withComposeCluster(
            name: "pause", basePort: 22130, subnet: "172.29.130.0/24",
            extra: "tls: {mode: off}\nwatch: {interval: 0.5, failoverAfter: 2}"
        ) { cluster in
            let initResult = await cluster.pgcluster(["init"])
            try #require(initResult.status == 0, "init: \(initResult.stderr)")
            _ = try cluster.sql("node0", "CREATE TABLE kept (id int PRIMARY KEY)")
            _ = try cluster.sql("node0", "INSERT INTO kept VALUES (1)")
            let log = "\(cluster.root)/watch.log"
            let watcher = try spawnDetached(
                [TestCluster.binary, "watch", "-f", cluster.specPath], output: log, environment: ["DOCKER_HOST": ComposeEngine.host])
            do {
                let watchLog = { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
                #expect(await pollUntil(30) { watchLog().contains(" start ") }, "\(watchLog())")
                // `docker pause` of the container, as the report did (compose v2's `unpause`
                // answers 0 against podman's API and leaves the container paused).
                let project = "\(cluster.stateDir)/compose"
                let id = await cluster.compose(["ps", "-q", "node0"], in: project).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                try #require(!id.isEmpty, "no container for node0")
                let paused = await ComposeEngine.docker(["pause", id])
                try #require(paused.status == 0, "docker pause: \(paused.stderr)")
                // Well past failoverAfter: the watcher reports, and nothing is promoted.
                var promoted: [String] = []
                let deadline = Date().addingTimeInterval(12)
                while Date() < deadline {
                    for node in ["node1", "node2"] where (try? cluster.sql(node, "SELECT pg_is_in_recovery()").scalar) == "f" {
                        promoted.append(node)
                    }
                    try await Task.sleep(for: .milliseconds(500))
                }
                #expect(promoted.isEmpty, "promoted while the primary was only paused: \(promoted)\n\(watchLog())")
                #expect(watchLog().contains(" refused "), "\(watchLog())")
                let unpaused = await ComposeEngine.docker(["unpause", id])
                try #require(unpaused.status == 0, "docker unpause: \(unpaused.stderr)")
                #expect(await pollUntil(30) { (try? cluster.sql("node0", "SELECT count(*) FROM kept").scalar) == "1" })
                let primaries = cluster.nodeNames.filter { (try? cluster.sql($0, "SELECT pg_is_in_recovery()").scalar) == "f" }
                #expect(primaries == ["node0"], "\(watchLog())")
            } catch {
                // A container left paused would keep its network from being removed.
                let id = await cluster.compose(["ps", "-q", "node0"], in: "\(cluster.stateDir)/compose").stdout
                _ = await ComposeEngine.docker(["unpause", id.trimmingCharacters(in: .whitespacesAndNewlines)])
                kill(watcher, SIGTERM)
                _ = await waitExit(watcher, timeout: 30)
                throw error
            }
            kill(watcher, SIGTERM)
            _ = await waitExit(watcher, timeout: 30)
        }
    }
}
