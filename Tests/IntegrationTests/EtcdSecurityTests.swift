import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// Issue 21: an etcd that lets no one else in. Real etcd (Debian's etcd-server) with
/// `--client-cert-auth` and `--trusted-ca-file`, certificates from `pgcluster tls etcd`, and
/// etcd authentication with a role limited to the cluster's prefix. The plain etcd passes the
/// same conformance table in StoreTests.
/// etcd on ports 23820-23859, PostgreSQL on 22600-22699.
@Suite("etcd over TLS, with client certificates and authentication", .serialized, .clusterLimit)
struct EtcdSecurityTests {
    /// A spec in `folder` named `file`, whose `store.etcd` holds `etcd` (flow-style entries).
    static func spec(_ folder: String, _ file: String, etcd: String) throws -> String {
        let path = "\(folder)/\(file).yaml"
        let yaml = """
            version: 1
            name: storetest
            local: {dir: ./state}
            store: {etcd: {\(etcd), prefix: /pgc-test, timeout: 5}}
            nodes:
              - {name: db_0, port: 5432, role: primary}
              - {name: db_1, port: 5433}

            """
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// `pgcluster tls etcd` for 127.0.0.1, from the CA of a spec in `folder`; its files.
    static func certificates(_ folder: String) async throws -> EtcdCertificateFiles {
        let issuer = "\(folder)/issuer.yaml"
        try """
        version: 1
        name: storetest
        local: {dir: ./state}
        nodes:
          - {name: db_0, port: 5432, role: primary}

        """.write(toFile: issuer, atomically: true, encoding: .utf8)
        let out = "\(folder)/certs"
        let issued = await TestCluster.runBinary(["tls", "etcd", "--out", out, "--host", "127.0.0.1", "-f", issuer])
        try #require(issued.status == 0, "\(issued.stderr)")
        for flag in ["--cert-file=\(out)/etcd-server.crt", "--key-file=\(out)/etcd-server.key", "--trusted-ca-file=\(out)/ca.crt", "--client-cert-auth",
            "--auto-compaction-mode=periodic", "--auto-compaction-retention=1h"] {
            #expect(issued.stdout.contains(flag), "\(issued.stdout)")
        }
        #expect(issued.stdout.contains("cert: \(out)/pgcluster-client.crt"), "\(issued.stdout)")
        #expect(!issued.stdout.contains("PRIVATE KEY"))
        for key in ["etcd-server.key", "pgcluster-client.key"] {
            let mode = try FileManager.default.attributesOfItem(atPath: "\(out)/\(key)")[.posixPermissions] as? Int
            #expect(mode == 0o600, "\(key): \(String(mode ?? 0, radix: 8))")
        }
        // Again without --force: the keys are not replaced.
        let again = await TestCluster.runBinary(["tls", "etcd", "--out", out, "--host", "127.0.0.1", "-f", issuer])
        #expect(again.status == 2 && again.stderr.contains("--force"), "\(again.stderr)")
        return EtcdCertificateFiles(folder: out)
    }

    /// `pgcluster pause` with `spec` fails (exit 1) with a first line that says `mustSay`,
    /// holds nothing secret, and writes nothing.
    static func refused(_ label: String, spec: String, mustSay: [String], secret: String? = nil) async {
        let result = await TestCluster.runBinary(["pause", "-f", spec])
        let first = result.stderr.split(separator: "\n").first.map(String.init) ?? ""
        print("\(label): \(first)")
        #expect(result.status == 1, "\(label): \(result.status) \(result.stderr)")
        #expect(mustSay.contains { first.contains($0) }, "\(label): \(result.stderr)")
        if let secret { #expect(!result.stderr.contains(secret) && !result.stdout.contains(secret), "\(label)") }
    }

    @Test("TLS with --client-cert-auth: the conformance table passes with the client certificate; without one, with a wrong CA, or by a host name not in etcd's certificate: one line, nothing written")
    func clientCertificates() async throws {
        let folder = try StoreTests.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let certs = try await Self.certificates(folder)
        try await withEtcd(port: 23820, tls: certs) { etcd in
            let good = try Self.spec(folder, "good", etcd: "endpoints: [\(etcd.endpoint)], ca: \(certs.ca), cert: \(certs.clientCertificate), key: \(certs.clientKey)")
            let store = Stores.of(try SpecLoader.load(path: good))
            try await StoreTests.conformance(store)

            // Another cluster's CA: etcd's certificate is not one it signed.
            let otherCA = "\(folder)/other-ca.crt"
            try ClusterCA.generate(cluster: "other").certificatePEM.write(toFile: otherCA, atomically: true, encoding: .utf8)
            let client = "cert: \(certs.clientCertificate), key: \(certs.clientKey)"
            await Self.refused(
                "no client certificate", spec: try Self.spec(folder, "nocert", etcd: "endpoints: [\(etcd.endpoint)], ca: \(certs.ca)"),
                mustSay: ["TLS: "])
            await Self.refused(
                "a wrong CA", spec: try Self.spec(folder, "wrongca", etcd: "endpoints: [\(etcd.endpoint)], ca: \(otherCA), \(client)"),
                mustSay: ["TLS: "])
            await Self.refused(
                "the system's trust store", spec: try Self.spec(folder, "system", etcd: "endpoints: [\(etcd.endpoint)], \(client)"),
                mustSay: ["TLS: "])
            await Self.refused(
                "a host name not in etcd's certificate",
                spec: try Self.spec(folder, "wronghost", etcd: "endpoints: [https://localhost:\(etcd.port)], ca: \(certs.ca), \(client)"),
                mustSay: ["TLS: "])
            // Plain http to the TLS port: not an answer either.
            await Self.refused(
                "http to etcd's TLS port", spec: try Self.spec(folder, "plain", etcd: "endpoints: [http://127.0.0.1:\(etcd.port)]"),
                mustSay: ["no etcd endpoint answered"])
            // None of them wrote anything.
            #expect(try await etcd.client().list(prefix: "/pgc-test/").isEmpty)
        }
    }

    @Test("TLS and authentication with a role limited to the prefix: the conformance table passes; a wrong password and a user without the prefix's role each fail in one line; an expired token is renewed once")
    func authentication() async throws {
        let folder = try StoreTests.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let certs = try await Self.certificates(folder)
        try await withEtcd(port: 23822, tls: certs) { etcd in
            let users = try await etcd.enableAuth(users: [("pgc", "/pgc-test/"), ("other", "/elsewhere/")])
            let tls = "ca: \(certs.ca), cert: \(certs.clientCertificate), key: \(certs.clientKey)"
            let good = try Self.spec(
                folder, "good", etcd: "endpoints: [\(etcd.endpoint)], \(tls), user: pgc, passwordFile: \(users[0].passwordFile)")
            let spec = try SpecLoader.load(path: good)
            let store = try #require(Stores.of(spec) as? EtcdStore)
            try await StoreTests.conformance(store)

            // A token etcd no longer knows: authenticated again, once, and the call goes through.
            store.client.replaceToken(with: "expired.token.1")
            _ = try await store.updateState { _ in ClusterState(primary: "db_0", synchronous: .init(.async)) }
            #expect(try await store.loadState()?.primary == "db_0")
            try await store.removeAll()

            // Without credentials, the keys are not readable at all.
            await Self.refused(
                "no user", spec: try Self.spec(folder, "nouser", etcd: "endpoints: [\(etcd.endpoint)], \(tls)"),
                mustSay: ["user name is empty", "permission denied", "user name not found"])
            let wrong = "\(folder)/wrong.password"
            try "not-the-password\n".write(toFile: wrong, atomically: true, encoding: .utf8)
            chmod(wrong, 0o600)
            await Self.refused(
                "a wrong password",
                spec: try Self.spec(folder, "wrongpw", etcd: "endpoints: [\(etcd.endpoint)], \(tls), user: pgc, passwordFile: \(wrong)"),
                mustSay: ["authentication failed"], secret: "not-the-password")
            let otherPassword = try String(contentsOfFile: users[1].passwordFile, encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            await Self.refused(
                "a user without the prefix's role",
                spec: try Self.spec(
                    folder, "otheruser", etcd: "endpoints: [\(etcd.endpoint)], \(tls), user: other, passwordFile: \(users[1].passwordFile)"),
                mustSay: ["permission denied"], secret: otherPassword)
            #expect(try await etcd.client(etcd.root).list(prefix: "/pgc-test/").isEmpty)
        }
    }

    @Test("the watcher over TLS: one without a client certificate never acts, nor says why in more than a line; with it, the watcher leads and fails over a kill -9 with nothing acknowledged lost")
    func watcherOverTLS() async throws {
        let folder = try StoreTests.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let certs = try await Self.certificates(folder)
        try await withEtcd(port: 23826, tls: certs) { etcd in
            let store = "store: {etcd: {endpoints: [\(etcd.endpoint)], prefix: /pgc-it, ca: \(certs.ca), cert: \(certs.clientCertificate), key: \(certs.clientKey)}}\nwatch: {interval: 0.5, failoverAfter: 2, leaseTTL: 3}\n"
            let cluster = try TestCluster(name: "wtls", basePort: 22600, synchronous: "{mode: any, count: 1}", extraNodeYAML: store)
            var watchers: [WatchProcess] = []
            do {
                try await cluster.initCluster()
                #expect(try await etcd.client().get("/pgc-it/wtls/state") != nil, "the state lives in etcd")
                // The same cluster, but no client certificate.
                let uncertified = "\(cluster.root)/uncertified.yaml"
                try String(contentsOfFile: cluster.specPath, encoding: .utf8)
                    .replacingOccurrences(of: ", cert: \(certs.clientCertificate), key: \(certs.clientKey)", with: "")
                    .write(toFile: uncertified, atomically: true, encoding: .utf8)
                let outsider = try WatchProcess(cluster, name: "watch-outsider", specPath: uncertified)
                watchers.append(outsider)

                let load = try await cluster.startLoad(clients: 4)
                #expect(await cluster.waitForAcks(load, atLeast: 200))
                try cluster.kill9Postmaster("node0")
                // Well past failoverAfter: the outsider cannot reach the store, so it does nothing.
                try await Task.sleep(for: .seconds(6))
                #expect(outsider.lines("failed-over").isEmpty, "\(outsider.log)")
                #expect(cluster.onePrimary(besides: "node0") == nil, "a primary without a watcher that may act")
                #expect(outsider.log.contains("TLS: "), "\(outsider.log)")

                let watcher = try WatchProcess(cluster, name: "watch-tls")
                watchers.append(watcher)
                #expect(await cluster.eventually(40) { cluster.onePrimary(besides: "node0") != nil }, "\(watcher.log)")
                let primary = try #require(cluster.onePrimary(besides: "node0"))
                let before = load.counts.acknowledged
                #expect(await cluster.waitForAcks(load, atLeast: before + 100))
                let summary = await load.stop()
                let present = try cluster.presentIds(primary, summary.acknowledged)
                #expect(present.count == summary.acknowledged.count, "lost \(summary.acknowledged.count - present.count)")
                // Writes resume once a standby follows; the failover's last steps (settle, record)
                // may still be under way: wait for its line.
                #expect(await watcher.waitFor("failed-over", timeout: 60), "\(watcher.log)")
                #expect(outsider.lines("failed-over").isEmpty, "\(outsider.log)")
                #expect(try await cluster.failovers().count == 1)
            } catch {
                for watcher in watchers { _ = await watcher.stop() }
                for watcher in watchers { print(watcher.log) }
                _ = await cluster.run(["destroy", "--yes"])
                try? FileManager.default.removeItem(atPath: cluster.root)
                throw error
            }
            for watcher in watchers { _ = await watcher.stop() }
            _ = await cluster.run(["destroy", "--yes"])
            try? FileManager.default.removeItem(atPath: cluster.root)
        }
    }
}
