import COpenSSL
import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// The cluster CA and the node certificates it signs, checked with OpenSSL's own verifier,
/// as libpq's `verify-full` checks them: the chain, the names, the key usages and the
/// validity.
@Suite("Cluster CA and node certificates")
struct ClusterCATests {
    /// True when OpenSSL accepts `leaf` for a TLS server reached as `host` (a name or an
    /// address), trusting `ca` alone, at `time`.
    static func verify(_ leaf: X509Certificate, ca: X509Certificate, host: String, at time: Date = Date()) -> Bool {
        guard let store = X509_STORE_new() else { return false }
        defer { X509_STORE_free(store) }
        guard X509_STORE_add_cert(store, ca.pointer) == 1, let context = X509_STORE_CTX_new() else { return false }
        defer { X509_STORE_CTX_free(context) }
        guard X509_STORE_CTX_init(context, store, leaf.pointer, nil) == 1 else { return false }
        let parameters = X509_STORE_CTX_get0_param(context)
        X509_VERIFY_PARAM_set_time(parameters, time_t(time.timeIntervalSince1970))
        X509_VERIFY_PARAM_set_purpose(parameters, X509_PURPOSE_SSL_SERVER)
        if ClusterCA.ipAddressBytes(host) != nil {
            guard X509_VERIFY_PARAM_set1_ip_asc(parameters, host) == 1 else { return false }
        } else {
            guard X509_VERIFY_PARAM_set1_host(parameters, host, 0) == 1 else { return false }
        }
        defer { ERR_clear_error() }
        return X509_verify_cert(context) == 1
    }

    /// Whether `certificate` has the extension `nid`, and whether it is marked critical.
    static func critical(_ certificate: X509Certificate, _ nid: Int32) -> Bool? {
        let index = X509_get_ext_by_NID(certificate.pointer, nid, -1)
        guard index >= 0, let found = X509_get_ext(certificate.pointer, index) else { return nil }
        return X509_EXTENSION_get_critical(found) == 1
    }

    @Test("a node certificate chains to the cluster CA, for each of its names and no other")
    func chainAndNames() throws {
        let ca = try ClusterCA.generate(cluster: "demo")
        var node = NodeSpec(name: "db_1", host: "10.0.0.11", port: 5432, sshHost: "db1.internal")
        node.serviceHost = "db-1"
        let names = ClusterCA.names(of: node, backend: .ssh)
        #expect(names == ["10.0.0.11", "db1.internal"])
        let issued = try ca.issue(node: node.name, names: names)
        let leaf = try X509Certificate(pem: issued.certificatePEM)

        #expect(Self.verify(leaf, ca: ca.certificate, host: "10.0.0.11"))
        #expect(Self.verify(leaf, ca: ca.certificate, host: "db1.internal"))
        // A name or address the certificate does not list is refused, as verify-full refuses it.
        #expect(!Self.verify(leaf, ca: ca.certificate, host: "10.0.0.12"))
        #expect(!Self.verify(leaf, ca: ca.certificate, host: "db2.internal"))
        // Another cluster's CA does not vouch for it.
        let other = try ClusterCA.generate(cluster: "other")
        #expect(!Self.verify(leaf, ca: other.certificate, host: "10.0.0.11"))
        // Nor is it valid once expired, nor before it starts.
        #expect(!Self.verify(leaf, ca: ca.certificate, host: "10.0.0.11", at: Date() + ClusterCA.nodeValidity + 86_400))
        #expect(!Self.verify(leaf, ca: ca.certificate, host: "10.0.0.11", at: Date() - 2 * ClusterCA.backdate))
        #expect(Self.verify(leaf, ca: ca.certificate, host: "10.0.0.11", at: Date() - ClusterCA.backdate / 2))

        #expect(leaf.alternativeNames == [.ipAddress([10, 0, 0, 11]), .dnsName("db1.internal")])
        // Its key is the one issued with it, and no other.
        #expect(leaf.belongs(try PrivateKey(pem: issued.keyPEM)))
        #expect(!leaf.belongs(try PrivateKey(pem: try ca.issue(node: "x", names: ["x"]).keyPEM)))
        #expect(leaf.isSigned(by: ca.certificate))
        #expect(!leaf.isSigned(by: other.certificate))
    }

    @Test("compose names the service, and each name appears once")
    func composeNames() throws {
        let node = NodeSpec(name: "db_0", host: "127.0.0.1", port: 15432, serviceHost: "db-0")
        #expect(ClusterCA.names(of: node, backend: .compose) == ["127.0.0.1", "db-0"])
        #expect(ClusterCA.names(of: node, backend: .local) == ["127.0.0.1"])
        let twice = ClusterCA.alternativeNames(["127.0.0.1", "127.0.0.1", "::1", "localhost"])
        #expect(twice.count == 3)
        #expect(twice.last == .dnsName("localhost"))
        #expect(twice[1] == .ipAddress([UInt8](repeating: 0, count: 15) + [1]))
        // And the certificate lists them as given, an IPv6 address among them.
        let leaf = try X509Certificate(
            pem: ClusterCA.generate(cluster: "demo").issue(node: "db_0", names: ["127.0.0.1", "::1", "localhost"]).certificatePEM)
        #expect(leaf.alternativeNames == twice)
    }

    @Test("key usages: the CA signs certificates only; a node certificate is a server's, not a CA")
    func keyUsage() throws {
        let ca = try ClusterCA.generate(cluster: "demo")
        let caCertificate = ca.certificate.pointer
        #expect(X509_check_ca(caCertificate) == 1)
        #expect(X509_get_pathlen(caCertificate) == 0)
        #expect(X509_get_key_usage(caCertificate) == UInt32(KU_KEY_CERT_SIGN | KU_CRL_SIGN))
        #expect(Self.critical(ca.certificate, NID_basic_constraints) == true)
        #expect(Self.critical(ca.certificate, NID_key_usage) == true)
        #expect(Self.critical(ca.certificate, NID_subject_key_identifier) == false)
        #expect(ca.certificate.belongs(try PrivateKey(pem: ca.keyPEM)))
        #expect(ca.certificate.isSigned(by: ca.certificate))
        #expect(ca.certificate.notAfter.timeIntervalSinceNow > 9 * 365 * 86_400)
        #expect(ca.keyPEM.hasPrefix("-----BEGIN PRIVATE KEY-----"))

        let leaf = try X509Certificate(pem: try ca.issue(node: "db_0", names: ["127.0.0.1"]).certificatePEM)
        #expect(X509_check_ca(leaf.pointer) == 0)
        #expect(Self.critical(leaf, NID_basic_constraints) == true)
        #expect(X509_get_key_usage(leaf.pointer) == UInt32(KU_DIGITAL_SIGNATURE))
        #expect(X509_get_extended_key_usage(leaf.pointer) == UInt32(XKU_SSL_SERVER))
        #expect(Self.critical(leaf, NID_authority_key_identifier) == false)
        #expect(X509_NAME_cmp(X509_get_issuer_name(leaf.pointer), X509_get_subject_name(caCertificate)) == 0)
        #expect(X509_get_signature_nid(leaf.pointer) == NID_ecdsa_with_SHA256)
        let summary = try CertificateSummary(pem: leaf.pem())
        #expect((364...365).contains(summary.daysLeft()))

        // etcd's: a server's and a client's; its client's: a client's only, with no CN.
        let both = try X509Certificate(
            pem: try ca.issue(node: "etcd", names: ["10.0.0.5"], usages: [.serverAuth, .clientAuth], commonName: "etcd-server")
                .certificatePEM)
        #expect(X509_get_extended_key_usage(both.pointer) == UInt32(XKU_SSL_SERVER | XKU_SSL_CLIENT))
        let client = try X509Certificate(
            pem: try ca.issue(node: "pgcluster-demo etcd client", names: [], usages: [.clientAuth], commonName: "").certificatePEM)
        #expect(X509_get_extended_key_usage(client.pointer) == UInt32(XKU_SSL_CLIENT))
        // No usage named: no extendedKeyUsage at all (an empty one is invalid).
        let unrestricted = try X509Certificate(pem: try ca.issue(node: "x", names: ["x"], usages: []).certificatePEM)
        #expect(Self.critical(unrestricted, NID_ext_key_usage) == nil)
        #expect(client.alternativeNames.isEmpty)
        #expect(X509_NAME_get_index_by_NID(X509_get_subject_name(client.pointer), NID_commonName, -1) < 0)
    }

    @Test("the CA reads back from its PEM files, and two issues give two serials")
    func loadAndSerials() throws {
        let ca = try ClusterCA.generate(cluster: "demo")
        let loaded = try ClusterCA.load(certificatePEM: ca.certificatePEM, keyPEM: ca.keyPEM, from: "/tmp/x")
        #expect(loaded.certificatePEM == ca.certificatePEM)
        let first = try CertificateSummary(pem: loaded.issue(node: "a", names: ["a"]).certificatePEM)
        let second = try CertificateSummary(pem: loaded.issue(node: "a", names: ["a"]).certificatePEM)
        #expect(first.serial != second.serial)
        #expect(first.serial.count == 32)
        // A key that does not match the certificate is a damaged CA, said so.
        let stranger = try ClusterCA.generate(cluster: "other")
        #expect(throws: ClusterError.self) {
            try ClusterCA.load(certificatePEM: ca.certificatePEM, keyPEM: stranger.keyPEM, from: "/tmp/x")
        }
        // An encrypted CA key is refused, and no pass phrase is asked for (a prompt would hang
        // a watcher or a script).
        let encrypted = try #require(BIO_new(BIO_s_mem()))
        defer { BIO_free(encrypted) }
        let key = try PrivateKey(pem: ca.keyPEM)
        let phrase = Array("secret".utf8)
        try #require(PEM_write_bio_PrivateKey(encrypted, key.pointer, EVP_aes_256_cbc(), phrase, Int32(phrase.count), nil, nil) == 1)
        let encryptedPEM = LibCrypto.text(of: encrypted)
        #expect(encryptedPEM.contains("ENCRYPTED PRIVATE KEY"))
        #expect(throws: ClusterError.self) { try ClusterCA.load(certificatePEM: ca.certificatePEM, keyPEM: encryptedPEM, from: "/tmp/x") }
        // Text that is no certificate is an error with a reason, not a crash.
        #expect(throws: ClusterError.self) { try ClusterCA.load(certificatePEM: "junk", keyPEM: ca.keyPEM, from: "/tmp/x") }
        #expect(throws: (any Error).self) { try CertificateSummary(pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n") }
    }

    @Test("a CA written before libcrypto signed (swift-certificates' PEM, no final newline) reads and still vouches")
    func earlierFiles() throws {
        let ca = try ClusterCA.generate(cluster: "demo")
        let trimmed = ca.certificatePEM.trimmingCharacters(in: .newlines)
        let loaded = try ClusterCA.load(certificatePEM: trimmed, keyPEM: ca.keyPEM, from: "/tmp/x")
        let spec = try StatusReportTests.spec()
        let node = spec.nodes[0]
        let issued = try loaded.issue(node: node.name, names: ClusterCA.names(of: node, backend: spec.backend))
        #expect(NodeTLS.stillValid(issued, caPEM: trimmed, for: node, spec: spec, ca: loaded))
        #expect(!NodeTLS.stillValid(issued, caPEM: trimmed, for: node, spec: spec, ca: try ClusterCA.generate(cluster: "other")))
        #expect(!NodeTLS.stillValid(issued, caPEM: trimmed, for: node, spec: spec, ca: loaded, now: Date() + ClusterCA.nodeValidity))
    }
}
