import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

extension ComposeTestCluster {
    var projectDirectory: String { "\(stateDir)/compose" }

    /// Per standby streaming from `primary`: whether its connection is over TLS.
    func replicationTLS(_ primary: String) throws -> [String: String] {
        TLSProbe.replicationTLS(try sql(primary, TLSProbe.replicationQuery))
    }

    /// The serial of the certificate `node` presents in its TLS handshake on its published
    /// port (what a client gets, not a file), read with `openssl s_client`.
    func servedSerial(_ node: String) -> String? {
        TLSProbe.servedSerial(host: "127.0.0.1", port: port(node))
    }

    /// Polls `condition` until it holds, within `timeout`.
    func eventually(_ timeout: Double = 30, _ condition: () throws -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? condition()) == true { return true }
            try? await Task.sleep(for: .milliseconds(200))
        }
        return (try? condition()) == true
    }
}

extension ComposeTests {
    /// TLS by default on compose (ports 22120-22122): certificates from the cluster CA in
    /// local.dir, mounted into each container; verify-full everywhere; rotate reloads.
    @Test(
        "compose: TLS by default: replication over TLS, plain TCP and wrong names refused, dsn verify-full, key 0600 postgres, status expiry, rotate without restart, failover",
        ComposeEngine.required)
    func composeTLS() async throws {
        try await withComposeCluster(name: "tls", basePort: 22120, subnet: "172.29.120.0/24") { cluster in
            let initResult = await cluster.pgcluster(["init"])
            try #require(initResult.status == 0, "init: \(initResult.stderr)")

            // The CA lives in local.dir; the project holds each node's files, never the CA's key.
            let caPEM = try String(contentsOfFile: cluster.caCertificate, encoding: .utf8)
            let caKeyMode = try FileManager.default.attributesOfItem(atPath: "\(cluster.stateDir)/ca.key")[.posixPermissions] as? Int
            #expect(caKeyMode == 0o600)
            let projectFiles = FileManager.default.subpaths(atPath: cluster.projectDirectory) ?? []
            #expect(!projectFiles.contains { $0.hasSuffix("ca.key") }, "the CA key is in the project: \(projectFiles)")
            for node in cluster.nodeNames {
                let tls = "\(cluster.projectDirectory)/\(node)/tls"
                #expect(try String(contentsOfFile: "\(tls)/ca.crt", encoding: .utf8) == caPEM)
                let keyMode = try FileManager.default.attributesOfItem(atPath: "\(tls)/server.key")[.posixPermissions] as? Int
                #expect(keyMode == 0o600, "\(node): project key mode \(String(keyMode ?? 0, radix: 8))")
                // Inside the container the server reads its own copy: owned by postgres, 0600.
                let stat = await cluster.compose(
                    ["exec", "-T", node, "stat", "-c", "%U %a", ComposeRenderer.ContainerPath.serverKey], in: cluster.projectDirectory)
                #expect(stat.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "postgres 600", "\(node): \(stat.stdout)\(stat.stderr)")
            }

            // Both standbys stream over TLS, verified against the primary's service name.
            #expect(await cluster.eventually { try cluster.replicationTLS("node0") == ["node1": "true", "node2": "true"] },
                "replication: \((try? cluster.replicationTLS("node0")) ?? [:])")
            for standby in ["node1", "node2"] {
                let conninfo = try cluster.sql(standby, "SELECT setting FROM pg_settings WHERE name = 'primary_conninfo'").scalar ?? ""
                #expect(conninfo.contains("sslmode=verify-full") && conninfo.contains("host=node0"), "\(standby): \(conninfo)")
            }
            // pgcluster's own connection is over TLS too (this query's session).
            #expect(try cluster.sql("node0", "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()").scalar == "true")

            // Plain TCP is refused by pg_hba.conf; a name the certificate does not list, by verify-full.
            #expect(throws: PGError.self) { try cluster.sql("node0", "SELECT 1", tls: false) }
            do {
                _ = try cluster.sql("node0", "SELECT 1", tls: false)
            } catch {
                #expect(String(describing: error).contains("no pg_hba.conf entry"), "\(error)")
            }
            #expect(throws: PGError.self) { try cluster.sql("node0", "SELECT 1", host: "localhost") }

            // dsn: verify-full with the CA by its absolute path, and it connects.
            let dsn = await cluster.pgcluster(["dsn"])
            try #require(dsn.status == 0, "dsn: \(dsn.stderr)")
            let conninfo = dsn.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(conninfo.contains("sslmode=verify-full") && conninfo.contains("sslrootcert=\(cluster.caCertificate)"), "\(conninfo)")
            let application = try PGConnection.connect(conninfo: conninfo, password: try cluster.credentials().superuser.password)
            #expect(try application.query("SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()").scalar == "true")
            application.close()

            // status shows each node's certificate expiry.
            let status = try await cluster.status()
            let days = (status["nodes"] as? [[String: Any]] ?? []).map { $0["certificateDaysLeft"] as? Int }
            #expect(days.count == 3 && days.allSatisfy { (364...365).contains($0 ?? -1) }, "certificateDaysLeft: \(days)")

            // tls rotate: a new certificate on every node, served after a reload, no restart.
            let before = Dictionary(uniqueKeysWithValues: cluster.nodeNames.map { ($0, cluster.servedSerial($0)) })
            #expect(before.values.allSatisfy { $0 != nil }, "served serials: \(before)")
            let started = try cluster.nodeNames.map { try cluster.sql($0, "SELECT pg_postmaster_start_time()::text").scalar }
            let rotate = await cluster.pgcluster(["tls", "rotate", "--json"])
            #expect(rotate.status == 0, "tls rotate: \(rotate.stderr)\n\(rotate.stdout)")
            let report = try #require(try JSONSerialization.jsonObject(with: Data(rotate.stdout.utf8)) as? [String: Any])
            let rotated = (report["nodes"] as? [[String: Any]] ?? []).map { ($0["name"] as? String ?? "", $0["serial"] as? String) }
            #expect(rotated.count == 3)
            for (node, serial) in rotated {
                #expect(serial != nil && serial != before[node] ?? nil, "\(node)")
                let served = await cluster.eventually(10) { cluster.servedSerial(node) == serial }
                #expect(served, "\(node) serves \(cluster.servedSerial(node) ?? "nothing"), not \(serial ?? "")")
            }
            #expect(try cluster.nodeNames.map { try cluster.sql($0, "SELECT pg_postmaster_start_time()::text").scalar } == started)
            #expect(await cluster.eventually { try cluster.replicationTLS("node0") == ["node1": "true", "node2": "true"] })

            // Failover with TLS: the primary's container is killed; a standby takes over and
            // the other streams from it over TLS (verified against the new primary's name).
            let kill = await cluster.compose(["kill", "node0"], in: cluster.projectDirectory)
            #expect(kill.status == 0, "docker compose kill: \(kill.stderr)")
            let failover = await cluster.pgcluster(["failover", "--json"])
            try #require(failover.status == 0, "failover: \(failover.stderr)\n\(failover.stdout)")
            let decision = try #require(try JSONSerialization.jsonObject(with: Data(failover.stdout.utf8)) as? [String: Any])
            let newPrimary = try #require(decision["candidate"] as? String)
            let other = newPrimary == "node1" ? "node2" : "node1"
            #expect(try cluster.sql(newPrimary, "SELECT pg_is_in_recovery()").scalar == "f")
            #expect(await cluster.eventually(60) { try cluster.replicationTLS(newPrimary) == [other: "true"] },
                "after failover: \((try? cluster.replicationTLS(newPrimary)) ?? [:])")

            let destroy = await cluster.pgcluster(["destroy", "--yes"])
            #expect(destroy.status == 0, "destroy: \(destroy.stderr)")
            #expect(!FileManager.default.fileExists(atPath: "\(cluster.stateDir)/ca.key"))
        }
    }
}
