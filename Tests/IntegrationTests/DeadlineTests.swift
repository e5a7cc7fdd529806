import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// A libpq call past its deadline is ended on the server too: its statement cancelled and
/// its connection closed, never a thread left holding a backend.
@Suite("libpq deadlines", .serialized, .clusterLimit)
struct LibpqDeadlineTests {
    @Test("SELECT pg_sleep(30) with a 1 s deadline: an error after about a second, and the server no longer runs it")
    func cancelled() async throws {
        try await withCluster(name: "dl-libpq", basePort: 22500, standbys: 1) { cluster in
            try await cluster.initCluster()
            let credentials = try cluster.credentials()
            let target = ConnectionTarget(
                host: "127.0.0.1", port: cluster.port("node0"), user: credentials.superuser.user,
                password: credentials.superuser.password, rootCertificate: cluster.caFile)
            let started = Date()
            do throws(ClusterError) {
                try await ServerOps.execute(["SELECT pg_sleep(30) /* deadline-test */"], on: target, name: "node0", timeout: 1)
                Issue.record("pg_sleep(30) returned within its 1 s deadline")
            } catch {
                #expect(error.message.contains("no answer within"), "\(error.message)")
            }
            let took = Date().timeIntervalSince(started)
            #expect(took < 4, "took \(took) s")
            let gone = await cluster.eventually(10) {
                try cluster.sql(
                    "node0", "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%deadline-test%' AND pid <> pg_backend_pid()"
                ).scalar == "0"
            }
            #expect(gone, "the statement still runs on the server, or its connection is still open")
            #expect(Date().timeIntervalSince(started) < 10)
        }
    }
}
