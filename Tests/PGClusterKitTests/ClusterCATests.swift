import Crypto
import Foundation
import SwiftASN1
import Testing
@_spi(FixedExpiryValidationTime) import X509

@testable import PGClusterKit
@testable import PGClusterRules

/// The cluster CA and the node certificates it signs, checked with swift-certificates'
/// own verifier: the chain, the names, the key usages and the validity.
@Suite("Cluster CA and node certificates")
struct ClusterCATests {
    static func verify(_ leaf: Certificate, ca: Certificate, host: String, at time: Date = Date()) async -> Bool {
        var verifier = Verifier(rootCertificates: CertificateStore([ca])) {
            RFC5280Policy(fixedExpiryValidationTime: time)
            ServerIdentityPolicy(
                serverHostname: ClusterCA.ipAddressBytes(host) == nil ? host : nil,
                serverIP: ClusterCA.ipAddressBytes(host) == nil ? nil : host)
        }
        if case .validCertificate = await verifier.validate(leaf: leaf, intermediates: CertificateStore()) { return true }
        return false
    }

    @Test("a node certificate chains to the cluster CA, for each of its names and no other")
    func chainAndNames() async throws {
        let ca = try ClusterCA.generate(cluster: "demo")
        var node = NodeSpec(name: "db_1", host: "10.0.0.11", port: 5432, sshHost: "db1.internal")
        node.serviceHost = "db-1"
        let names = ClusterCA.names(of: node, backend: .ssh)
        #expect(names == ["10.0.0.11", "db1.internal"])
        let issued = try ca.issue(node: node.name, names: names)
        let leaf = try Certificate(pemEncoded: issued.certificatePEM)

        #expect(await Self.verify(leaf, ca: ca.certificate, host: "10.0.0.11"))
        #expect(await Self.verify(leaf, ca: ca.certificate, host: "db1.internal"))
        // A name or address the certificate does not list is refused, as verify-full refuses it.
        #expect(!(await Self.verify(leaf, ca: ca.certificate, host: "10.0.0.12")))
        #expect(!(await Self.verify(leaf, ca: ca.certificate, host: "db2.internal")))
        // Another cluster's CA does not vouch for it.
        let other = try ClusterCA.generate(cluster: "other")
        #expect(!(await Self.verify(leaf, ca: other.certificate, host: "10.0.0.11")))
        // Nor is it valid once expired.
        #expect(!(await Self.verify(leaf, ca: ca.certificate, host: "10.0.0.11", at: Date() + ClusterCA.nodeValidity + 86_400)))

        let sans = try #require(try leaf.extensions.subjectAlternativeNames)
        #expect(Array(sans) == [.ipAddress(ASN1OctetString(contentBytes: [10, 0, 0, 11])), .dnsName("db1.internal")])
    }

    @Test("compose names the service, and each name appears once")
    func composeNames() {
        let node = NodeSpec(name: "db_0", host: "127.0.0.1", port: 15432, serviceHost: "db-0")
        #expect(ClusterCA.names(of: node, backend: .compose) == ["127.0.0.1", "db-0"])
        #expect(ClusterCA.names(of: node, backend: .local) == ["127.0.0.1"])
        let twice = ClusterCA.alternativeNames(["127.0.0.1", "127.0.0.1", "::1", "localhost"])
        #expect(twice.count == 3)
        #expect(twice.last == .dnsName("localhost"))
        #expect(twice[1] == .ipAddress(ASN1OctetString(contentBytes: ArraySlice([UInt8](repeating: 0, count: 15) + [1]))))
    }

    @Test("key usages: the CA signs certificates only; a node certificate is a server's, not a CA")
    func keyUsage() throws {
        let ca = try ClusterCA.generate(cluster: "demo")
        let caExtensions = ca.certificate.extensions
        #expect(try caExtensions.basicConstraints == .isCertificateAuthority(maxPathLength: 0))
        #expect(try caExtensions.keyUsage == KeyUsage(keyCertSign: true, cRLSign: true))
        let caKey = try P256.Signing.PrivateKey(pemRepresentation: ca.keyPEM)
        #expect(ca.certificate.publicKey == Certificate.PublicKey(caKey.publicKey))
        #expect(ca.certificate.notValidAfter.timeIntervalSinceNow > 9 * 365 * 86_400)

        let leaf = try Certificate(pemEncoded: try ca.issue(node: "db_0", names: ["127.0.0.1"]).certificatePEM)
        #expect(try leaf.extensions.basicConstraints == .notCertificateAuthority)
        #expect(try leaf.extensions.keyUsage == KeyUsage(digitalSignature: true))
        #expect(try leaf.extensions.extendedKeyUsage == ExtendedKeyUsage([.serverAuth]))
        #expect(leaf.issuer == ca.certificate.subject)
        #expect(leaf.signatureAlgorithm == .ecdsaWithSHA256)
        let summary = try CertificateSummary(pem: leaf.serializeAsPEM().pemString)
        #expect((364...365).contains(summary.daysLeft()))
    }

    @Test("the CA reads back from its PEM files, and two issues give two serials")
    func loadAndSerials() throws {
        let ca = try ClusterCA.generate(cluster: "demo")
        let loaded = try ClusterCA.load(certificatePEM: ca.certificatePEM, keyPEM: ca.keyPEM, from: "/tmp/x")
        #expect(loaded.certificate == ca.certificate)
        let first = try CertificateSummary(pem: loaded.issue(node: "a", names: ["a"]).certificatePEM)
        let second = try CertificateSummary(pem: loaded.issue(node: "a", names: ["a"]).certificatePEM)
        #expect(first.serial != second.serial)
        // A key that does not match the certificate is a damaged CA, said so.
        let stranger = try ClusterCA.generate(cluster: "other")
        #expect(throws: ClusterError.self) {
            try ClusterCA.load(certificatePEM: ca.certificatePEM, keyPEM: stranger.keyPEM, from: "/tmp/x")
        }
    }
}
