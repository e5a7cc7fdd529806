import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// The watcher as a service of the compose project (`compose.watcher: true`, profile
/// `watch`), on real containers. Ports 22700-22702, its endpoints 22705-22707.
@Suite("compose: the watcher as a service", .serialized, .clusterLimit)
struct ComposeWatcherTests {
    static let endpoints = 22705

    static func code(_ node: Int, _ path: String) -> Int? { httpRequest(port: endpoints + node, path: path, timeout: 2)?.code }

    @Test(
        "compose.watcher: `docker compose --profile watch up -d` runs the watcher, which serves the endpoints and fails over a killed primary with nothing acknowledged lost; destroy removes it too",
        ComposeEngine.required)
    func watcherService() async throws {
        try await withComposeCluster(
            name: "watcher", basePort: 22700, subnet: "172.29.170.0/24",
            extra: "watch: {interval: 0.5, failoverAfter: 2, http: 127.0.0.1:\(Self.endpoints)}", composeExtra: ", watcher: true"
        ) { cluster in
            let initResult = await cluster.pgcluster(["init"])
            try #require(initResult.status == 0, "init: \(initResult.stderr)")
            let project = "\(cluster.stateDir)/compose"
            #expect(FileManager.default.isExecutableFile(atPath: "\(project)/watcher.d/bin/pgcluster"))
            // pgcluster's own `up` leaves the profile alone: nothing serves yet.
            #expect(Self.code(0, "/health") == nil)
            let quorum = await cluster.pgcluster(["quorum", "--any", "1"])
            try #require(quorum.status == 0, "quorum: \(quorum.stderr)")

            let up = await cluster.compose(["--profile", "watch", "up", "-d", ComposeRenderer.watcherService], in: project)
            try #require(up.status == 0, "docker compose --profile watch up -d: \(up.stderr)")
            let logs = { await cluster.compose(["logs", "--no-color", ComposeRenderer.watcherService], in: project) }
            let serving = await pollUntil(60) { Self.code(0, "/primary") == 200 && Self.code(1, "/replica") == 200 }
            if !serving {
                let log = await logs()
                Issue.record("the watcher's endpoints never said node0 primary, node1 replica; its log:\n\(log.stdout)\(log.stderr)")
                return
            }

            let load = try await cluster.startWriters()
            let acknowledged = await pollUntil(30) { load.counts.acknowledged >= 200 }
            let kill = await cluster.compose(["kill", "node0"], in: project)
            // The watcher, in its container, sees node0 gone and promotes a standby.
            let promoted = await pollUntil(90) { Self.code(1, "/primary") == 200 || Self.code(2, "/primary") == 200 }
            let before = load.counts.acknowledged
            let resumed = promoted ? await pollUntil(30) { load.counts.acknowledged >= before + 100 } : false
            let summary = await load.stop()
            #expect(acknowledged, "the writers got no acknowledgements before the kill")
            #expect(kill.status == 0, "docker compose kill: \(kill.stderr)")
            if !promoted {
                let log = await logs()
                Issue.record("no standby became primary after node0 was killed; the watcher's log:\n\(log.stdout)\(log.stderr)")
                return
            }
            #expect(resumed, "no write acknowledged after the watcher's failover")
            #expect(Self.code(0, "/health") == 503)

            let status = try await cluster.status()
            let newPrimary = try #require(status["primary"] as? String)
            #expect(["node1", "node2"].contains(newPrimary))
            let list = "{" + summary.acknowledged.map(String.init).joined(separator: ",") + "}"
            let present = try cluster.sql(
                newPrimary, "SELECT count(*) FROM \(WriteLoad.table) WHERE id = ANY($1::bigint[])", [list]
            ).scalar.flatMap { Int($0) }
            #expect(present == summary.acknowledged.count, "lost \(summary.acknowledged.count - (present ?? 0)) acknowledged rows")
            let history = await cluster.pgcluster(["history", "--json"])
            let events = try #require(try JSONSerialization.jsonObject(with: Data(history.stdout.utf8)) as? [[String: Any]])
            let failovers = events.filter { $0["kind"] as? String == "failover" }
            #expect(failovers.count == 1 && failovers.first?["by"] as? String == "watch", "history: \(history.stdout)")

            // destroy stops the project's watcher (which holds the cluster lock while it runs) first.

            let destroy = await cluster.pgcluster(["destroy", "--yes"])
            #expect(destroy.status == 0, "destroy: \(destroy.stderr)")
            #expect(await cluster.leftovers() == [], "containers or volumes left after destroy (the watcher's among them?)")
            #expect(Self.code(0, "/liveness") == nil, "the watcher still serves after destroy")
        }
    }
}
