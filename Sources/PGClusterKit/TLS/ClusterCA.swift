import Crypto
import Foundation
import SwiftASN1
import X509

/// The cluster's certificate authority (`tls.mode: generate`): an ECDSA P-256 key and a
/// self-signed certificate, kept in local.dir on this machine only, that signs one server
/// certificate per node. Pure: files are read and written by the caller.
public struct ClusterCA: Sendable {
    public let certificate: Certificate
    let key: P256.Signing.PrivateKey

    /// Ten years: long enough that nobody has to think about the CA; the nodes'
    /// certificates are the ones that are renewed (`pgcluster tls rotate`).
    public static let caValidity: TimeInterval = 10 * 365 * 86_400
    /// One year for a node's certificate; `status` warns when fewer than 30 days are left.
    public static let nodeValidity: TimeInterval = 365 * 86_400
    /// Certificates start an hour in the past, so that hosts whose clocks lag a little accept them.
    static let backdate: TimeInterval = 3600

    init(certificate: Certificate, key: P256.Signing.PrivateKey) {
        self.certificate = certificate
        self.key = key
    }

    /// A new CA for the cluster `name`.
    public static func generate(cluster name: String, now: Date = Date()) throws(ClusterError) -> ClusterCA {
        let key = P256.Signing.PrivateKey()
        let publicKey = Certificate.PublicKey(key.publicKey)
        do {
            let subject = try DistinguishedName {
                OrganizationName("pgcluster")
                CommonName("pgcluster CA of cluster \(name)")
            }
            let certificate = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: publicKey,
                notValidBefore: now - backdate, notValidAfter: now + caValidity, issuer: subject, subject: subject,
                signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                    Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                    SubjectKeyIdentifier(hash: publicKey)
                },
                issuerPrivateKey: Certificate.PrivateKey(key))
            return ClusterCA(certificate: certificate, key: key)
        } catch {
            throw ClusterError("cannot make the cluster CA: \(error)")
        }
    }

    /// The CA read back from its two PEM files.
    public static func load(certificatePEM: String, keyPEM: String, from folder: String) throws(ClusterError) -> ClusterCA {
        do {
            let certificate = try Certificate(pemEncoded: certificatePEM)
            let key = try P256.Signing.PrivateKey(pemRepresentation: keyPEM)
            guard Certificate.PublicKey(key.publicKey) == certificate.publicKey else {
                throw ClusterError("the CA key does not belong to the CA certificate")
            }
            return ClusterCA(certificate: certificate, key: key)
        } catch let error as ClusterError {
            throw ClusterError(
                "the cluster CA in \(folder) is damaged: \(error.message)",
                details: ["restore ca.crt and ca.key from a backup; a new CA needs every node re-certified (`pgcluster init --force`)"])
        } catch {
            throw ClusterError(
                "the cluster CA in \(folder) cannot be read: \(error)",
                details: ["restore ca.crt and ca.key from a backup; a new CA needs every node re-certified (`pgcluster init --force`)"])
        }
    }

    public var certificatePEM: String { (try? certificate.serializeAsPEM().pemString) ?? "" }
    public var keyPEM: String { key.pemRepresentation }

    /// A server certificate and its new key for a node reached by the names in `names`
    /// (addresses become IP SANs, everything else DNS SANs; the first is the subject's CN).
    ///
    /// `usages`: what the certificate may prove (a server, a client, or both: etcd's JSON
    /// gateway dials its own server with its server certificate, so etcd's needs both).
    /// `commonName`: the subject's CN when not the first name; empty: none, the node named
    /// as the organizational unit instead.
    public func issue(
        node: String, names: [String], usages: [ExtendedKeyUsage.Usage] = [.serverAuth], commonName: String? = nil,
        now: Date = Date()
    ) throws(ClusterError) -> NodeCertificate {
        let key = P256.Signing.PrivateKey()
        let publicKey = Certificate.PublicKey(key.publicKey)
        do {
            let cn = commonName ?? names.first ?? node
            let subject =
                cn.isEmpty
                ? try DistinguishedName {
                    OrganizationName("pgcluster")
                    OrganizationalUnitName(node)
                }
                : try DistinguishedName {
                    OrganizationName("pgcluster")
                    CommonName(cn)
                }
            let certificate = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: publicKey,
                notValidBefore: now - Self.backdate, notValidAfter: now + Self.nodeValidity,
                issuer: self.certificate.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.notCertificateAuthority)
                    Critical(KeyUsage(digitalSignature: true))
                    try ExtendedKeyUsage(usages)
                    if !names.isEmpty { SubjectAlternativeNames(Self.alternativeNames(names)) }
                    SubjectKeyIdentifier(hash: publicKey)
                    AuthorityKeyIdentifier(
                        keyIdentifier: try self.certificate.extensions.subjectKeyIdentifier?.keyIdentifier)
                },
                issuerPrivateKey: Certificate.PrivateKey(self.key))
            return NodeCertificate(
                certificatePEM: try certificate.serializeAsPEM().pemString, keyPEM: key.pemRepresentation)
        } catch {
            throw ClusterError("\(node): cannot make its certificate: \(error)")
        }
    }

    /// IP SANs for addresses (v4 and v6), DNS SANs for names; each once, in order.
    static func alternativeNames(_ names: [String]) -> [GeneralName] {
        var seen = Set<String>()
        return names.filter { seen.insert($0).inserted }.map { name in
            if let bytes = ipAddressBytes(name) { return .ipAddress(ASN1OctetString(contentBytes: bytes[...])) }
            return .dnsName(name)
        }
    }

    static func ipAddressBytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }

    /// The names a node is reached by, as its certificate must list them: `host` (where
    /// pgcluster and applications connect), compose's `serviceHost` (where the other nodes
    /// connect inside the network) and ssh's `sshHost`.
    public static func names(of node: NodeSpec, backend: ClusterSpec.Backend) -> [String] {
        var names = [node.host]
        if backend == .compose { names.append(node.serviceHost) }
        if let sshHost = node.sshHost { names.append(sshHost) }
        return names
    }
}

/// A node's server certificate and key, as PEM text.
public struct NodeCertificate: Sendable, Equatable {
    public var certificatePEM: String
    public var keyPEM: String
}

/// What `status` and `tls rotate` tell of a certificate.
public struct CertificateSummary: Sendable, Equatable {
    public var serial: String
    public var notAfter: Date

    public init(pem: String) throws {
        let certificate = try Certificate(pemEncoded: pem)
        serial = certificate.serialNumber.bytes.map { String(format: "%02x", $0) }.joined()
        notAfter = certificate.notValidAfter
    }

    /// Whole days from `now` until it expires (negative once it has).
    public func daysLeft(now: Date = Date()) -> Int { Int((notAfter.timeIntervalSince(now) / 86_400).rounded(.down)) }
}
