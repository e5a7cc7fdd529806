import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

extension TestCluster {
    /// Replication connections to `node` (a primary) and whether each is over TLS.
    func replicationTLS(_ node: String) throws -> [String: String] {
        TLSProbe.replicationTLS(try sql(node, TLSProbe.replicationQuery))
    }

    /// The serial number of the certificate the server on `node` presents in its TLS
    /// handshake (not the file: what a client gets), read with `openssl s_client`.
    func servedSerial(_ node: String) -> String? {
        TLSProbe.servedSerial(host: host(node), port: port(node))
    }

    func mode(_ path: String) -> Int? { (try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int }
    func owner(_ path: String) -> String? {
        (try? FileManager.default.attributesOfItem(atPath: path))?[.ownerAccountName] as? String
    }
}

/// TLS by default (tls.mode generate): a cluster CA in local.dir, a certificate per node,
/// verify-full for replication, for pgcluster and for applications; `tls rotate`.
@Suite("TLS on real servers", .serialized, .clusterLimit)
struct TLSTests {
    /// The OS user the servers run as: `postgres` when the tests run as root, else us.
    static var serverUser: String { OSUser.isRoot ? "postgres" : (ProcessInfo.processInfo.environment["USER"] ?? NSUserName()) }

    @Test("init: replication, pgcluster and the dsn use verify-full; plain TCP and wrong names are refused; rotate reloads")
    func tlsByDefault() async throws {
        try await withCluster(name: "tls3", basePort: 21800) { cluster in
            try await cluster.initCluster()
            let ca = try #require(cluster.caFile, "init made no cluster CA in local.dir")

            // Every standby streams over TLS.
            #expect(try cluster.replicationTLS("node0") == ["node1": "true", "node2": "true"])

            // pgcluster's own connections (the Observer every command uses) are TLS, verified.
            let spec = try SpecLoader.load(path: cluster.specPath)
            let credentials = try Credentials.stored(spec: spec)
            #expect(credentials.rootCertificate == ca)
            let own = try PGConnection.connect(Observer(credentials: credentials).target(spec.primary))
            defer { own.close() }
            let ownTLS = try own.query(
                "SELECT s.ssl::text, a.application_name FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE pid = pg_backend_pid()")
            #expect(ownTLS.rows.first == ["true", "pgcluster"])

            // Without TLS, pg_hba.conf has no line for the client.
            let password = try cluster.credentials().superuser.password
            let plain = "host=127.0.0.1 port=21800 user=postgres dbname=postgres sslmode=disable connect_timeout=5"
            #expect {
                try PGConnection.connect(conninfo: plain, password: password)
            } throws: { error in
                "\(error)".contains("no pg_hba.conf entry") && "\(error)".contains("no encryption")
            }

            // The dsn names the CA by its absolute path and verify-full; an application connects with it.
            let (dsn, _) = try await cluster.readWriteDSN()
            #expect(dsn.contains("sslmode=verify-full"))
            #expect(dsn.contains("sslrootcert=\(ca)"))
            #expect(ca.hasPrefix("/"))
            let app = try PGConnection.connect(conninfo: dsn, password: password)
            #expect(try app.query("SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()").scalar == "true")
            app.close()

            // A name the certificate does not list: verify-full refuses the server.
            #expect {
                try cluster.connect("node1", host: "localhost")
            } throws: { error in
                "\(error)".contains("does not match host name")
            }

            // Files: keys 0600 owned by the server's user; the CA key only in local.dir, 0600.
            #expect(cluster.mode("\(cluster.dataRoot)/ca.key") == 0o600)
            for node in cluster.nodeNames {
                let key = "\(cluster.dataRoot)/\(node)/tls/server.key"
                #expect(cluster.mode(key) == 0o600, "\(key)")
                #expect(cluster.owner(key) == Self.serverUser, "\(key)")
                #expect(FileManager.default.fileExists(atPath: "\(cluster.dataRoot)/\(node)/tls/ca.crt"))
                let inTLS = try FileManager.default.contentsOfDirectory(atPath: "\(cluster.dataRoot)/\(node)/tls")
                #expect(Set(inTLS) == ["server.crt", "server.key", "ca.crt"], "\(node): \(inTLS)")
            }

            // status shows each certificate's days left.
            let status = await cluster.run(["status", "--json"])
            #expect(status.status == 0, "\(status.stderr)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])
            let days = (json["nodes"] as? [[String: Any]] ?? []).map { $0["certificateDaysLeft"] as? Int }
            #expect(days.count == 3 && days.allSatisfy { $0 == 364 || $0 == 365 }, "\(days)")

            // tls rotate: a new certificate on every node, reloaded, no restart, streaming goes on.
            let before = Dictionary(uniqueKeysWithValues: cluster.nodeNames.map { ($0, cluster.servedSerial($0)) })
            #expect(before.values.allSatisfy { $0 != nil }, "\(before)")
            let started = try cluster.nodeNames.map { try cluster.sql($0, "SELECT pg_postmaster_start_time()::text").scalar }
            let rotate = await cluster.run(["tls", "rotate", "--json"])
            #expect(rotate.status == 0, "\(rotate.stderr)\n\(rotate.stdout)")
            let report = try #require(try JSONSerialization.jsonObject(with: Data(rotate.stdout.utf8)) as? [String: Any])
            let rotated = (report["nodes"] as? [[String: Any]] ?? []).map { ($0["name"] as? String ?? "", $0["serial"] as? String) }
            #expect(rotated.count == 3)
            for (node, serial) in rotated {
                #expect(serial != nil && serial != before[node] ?? nil, "\(node)")
                let served = await cluster.eventually(10) { cluster.servedSerial(node) == serial }
                #expect(served, "\(node) still serves \(cluster.servedSerial(node) ?? "nothing"), not \(serial ?? "")")
            }
            #expect(try cluster.nodeNames.map { try cluster.sql($0, "SELECT pg_postmaster_start_time()::text").scalar } == started)
            try cluster.sql("node0", "CREATE TABLE after_rotate (id int)")
            try cluster.sql("node0", "INSERT INTO after_rotate VALUES (1)")
            for standby in ["node1", "node2"] {
                let seen = await cluster.eventually { try cluster.sql(standby, "SELECT count(*) FROM after_rotate").scalar == "1" }
                #expect(seen, "\(standby) stopped replicating after the rotation")
            }
            #expect(try cluster.replicationTLS("node0") == ["node1": "true", "node2": "true"])
        }
    }

    @Test("switchover, failover and rejoin with TLS on: every standby streams over TLS after each")
    func haWithTLS() async throws {
        try await withCluster(name: "tlsha", basePort: 21810, synchronous: "{mode: any, count: 1}") { cluster in
            try await cluster.initCluster()

            let switchover = await cluster.run(["switchover", "--candidate", "node1"])
            #expect(switchover.status == 0, "\(switchover.stderr)")
            let afterSwitchover = await cluster.eventually {
                try cluster.replicationTLS("node1") == ["node0": "true", "node2": "true"]
            }
            #expect(afterSwitchover, "after switchover: \((try? cluster.replicationTLS("node1")) ?? [:])")

            try cluster.kill9Postmaster("node1")
            let failover = await cluster.run(["failover", "--json"])
            #expect(failover.status == 0, "\(failover.stderr)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(failover.stdout.utf8)) as? [String: Any])
            let promoted = try #require(json["candidate"] as? String, "\(failover.stdout)")
            let other = promoted == "node0" ? "node2" : "node0"

            let rejoin = await cluster.run(["rejoin", "node1"])
            #expect(rejoin.status == 0, "\(rejoin.stderr)")
            let streaming = await cluster.eventually(30) {
                try cluster.replicationTLS(promoted) == [other: "true", "node1": "true"]
            }
            #expect(streaming, "after failover and rejoin: \((try? cluster.replicationTLS(promoted)) ?? [:])")
            #expect(await cluster.run(["status"]).status == 0)
        }
    }

    @Test("tls.mode off: no CA, no TLS, a dsn without sslmode, and nothing to rotate")
    func tlsOff() async throws {
        try await withCluster(name: "tlsoff", basePort: 21820, standbys: 1, tls: "{mode: off}") { cluster in
            try await cluster.initCluster()
            #expect(cluster.caFile == nil)
            #expect(!FileManager.default.fileExists(atPath: "\(cluster.dataRoot)/node0/tls"))
            #expect(try cluster.replicationTLS("node0") == ["node1": "false"])
            #expect(try cluster.sql("node0", "SHOW ssl").scalar == "off")
            let (dsn, _) = try await cluster.readWriteDSN()
            #expect(!dsn.contains("sslmode"))
            let rotate = await cluster.run(["tls", "rotate"])
            #expect(rotate.status == 1)
            #expect(rotate.stderr.contains("TLS is off"))
        }
    }
}
