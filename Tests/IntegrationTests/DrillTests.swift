import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

@Suite("drill on real servers", .serialized, .clusterLimit)
struct DrillTests {
    func report(_ result: RunResult) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
    }

    @Test("ANY 1, three rounds of kill -9, failover and rejoin: nothing acknowledged is lost")
    func quorumRounds() async throws {
        try await withCluster(name: "drill-any", basePort: 21200) { cluster in
            try await cluster.initCluster()
            let result = await cluster.run(["drill", "--mode", "any", "--rounds", "3", "--duration", "2", "--keep-table", "--json"])
            #expect(result.status == 0, "drill: \(result.stderr)")
            let json = try report(result)
            let rounds = try #require(json["rounds"] as? [[String: Any]])
            #expect(rounds.count == 3)
            for round in rounds {
                #expect(round["lost"] as? Int == 0, "round \(round["round"] ?? "?") lost rows: \(round["lostIds"] ?? [])")
                #expect((round["acknowledged"] as? Int ?? 0) > 100)
                #expect(round["present"] as? Int == round["acknowledged"] as? Int)
                #expect(round["refusal"] == nil || round["refusal"] is NSNull)
                #expect((round["recoverySeconds"] as? Double ?? 99) < 10)
            }
            // The last round's counts agree with the new primary's own count.
            let last = try #require(rounds.last)
            let primary = try #require(last["newPrimary"] as? String)
            let count = try cluster.sql(primary, "SELECT count(*) FROM \(WriteLoad.table)").scalar.flatMap { Int($0) }
            #expect(count == last["rowsOnPrimary"] as? Int)
            #expect(count ?? 0 >= last["acknowledged"] as? Int ?? .max)
            #expect(json["totalLost"] as? Int == 0)
            // Primaries changed hands each round, and the cluster is whole again.
            #expect(Set(rounds.compactMap { $0["newPrimary"] as? String }).count >= 2)
            #expect(await cluster.run(["status"]).status == 0)
        }
    }

    @Test("async: the figures add up (present + lost = acknowledged)")
    func asyncFigures() async throws {
        try await withCluster(name: "drill-async", basePort: 21210) { cluster in
            try await cluster.initCluster()
            let result = await cluster.run(["drill", "--mode", "async", "--duration", "2", "--json"])
            #expect(result.status == 0, "drill: \(result.stderr)")
            let round = try #require((try report(result)["rounds"] as? [[String: Any]])?.first)
            let acknowledged = try #require(round["acknowledged"] as? Int)
            let present = try #require(round["present"] as? Int)
            let lost = try #require(round["lost"] as? Int)
            #expect(acknowledged > 100)
            #expect(present + lost == acknowledged)
            #expect((round["lostIds"] as? [Any])?.count == min(lost, 1000))
            #expect(round["mode"] as? String == "async")
            #expect(try cluster.sql(round["newPrimary"] as! String, "SELECT to_regclass('\(WriteLoad.table)') IS NULL").scalar == "t",
                "the drill table is dropped without --keep-table")
        }
    }

    @Test("primary and a standby killed under ANY 1: the quorum guard refuses instead of losing data")
    func quorumGuardInDrill() async throws {
        try await withCluster(name: "drill-guard", basePort: 21220) { cluster in
            try await cluster.initCluster()
            let result = await cluster.run(["drill", "--mode", "any", "--kill", "primary+standby", "--duration", "2", "--json"])
            #expect(result.status == 0, "drill: \(result.stderr)")
            let round = try #require((try report(result)["rounds"] as? [[String: Any]])?.first)
            let refusal = try #require(round["refusal"] as? String)
            #expect(refusal.contains("quorum cannot be proven"))
            #expect(round["lost"] as? Int == 0)
            #expect((round["killed"] as? [String])?.count == 2)
            // Nothing was promoted; the killed nodes were started again as they were.
            #expect(try cluster.sql("node0", "SELECT pg_is_in_recovery()").scalar == "f")
            #expect(await cluster.run(["status"]).status == 0)
        }
    }

    @Test("a degraded cluster is refused")
    func degradedRefused() async throws {
        try await withCluster(name: "drill-degraded", basePort: 21230, standbys: 1) { cluster in
            try await cluster.initCluster()
            #expect(await cluster.run(["stop", "node1"]).status == 0)
            let result = await cluster.run(["drill"])
            #expect(result.status == 2)
            #expect(result.stderr.contains("degraded"))
        }
    }
}
