import Foundation

/// The cluster's certificate authority (`tls.mode: generate`): an ECDSA P-256 key and a
/// self-signed certificate, kept in local.dir on this machine only, that signs one server
/// certificate per node. Pure: files are read and written by the caller. libcrypto does the
/// signing (``LibCrypto``).
public struct ClusterCA: Sendable {
    let certificate: X509Certificate
    let key: PrivateKey
    /// Both as PEM, written out once when the CA is made or read.
    public let certificatePEM: String
    public let keyPEM: String

    /// Ten years: long enough that nobody has to think about the CA; the nodes'
    /// certificates are the ones that are renewed (`pgcluster tls rotate`).
    public static let caValidity: TimeInterval = 10 * 365 * 86_400
    /// One year for a node's certificate; `status` warns when fewer than 30 days are left.
    public static let nodeValidity: TimeInterval = 365 * 86_400
    /// Certificates start an hour in the past, so that hosts whose clocks lag a little accept them.
    static let backdate: TimeInterval = 3600

    init(certificate: X509Certificate, key: PrivateKey) throws(LibCrypto.Failure) {
        self.certificate = certificate
        self.key = key
        certificatePEM = try certificate.pem()
        keyPEM = try key.pem()
    }

    /// A new CA for the cluster `name`.
    public static func generate(cluster name: String, now: Date = Date()) throws(ClusterError) -> ClusterCA {
        do {
            let key = try PrivateKey.p256()
            let certificate = try X509Certificate.make(
                subject: [("O", "pgcluster"), ("CN", "pgcluster CA of cluster \(name)")], key: key, issuer: nil,
                notBefore: now - backdate, notAfter: now + caValidity,
                extensions: [
                    ("basicConstraints", "critical,CA:TRUE,pathlen:0"),
                    ("keyUsage", "critical,keyCertSign,cRLSign"),
                    ("subjectKeyIdentifier", "hash"),
                ],
                alternativeNames: [])
            return try ClusterCA(certificate: certificate, key: key)
        } catch {
            throw ClusterError("cannot make the cluster CA: \(error)")
        }
    }

    /// The CA read back from its two PEM files.
    public static func load(certificatePEM: String, keyPEM: String, from folder: String) throws(ClusterError) -> ClusterCA {
        let advice = ["restore ca.crt and ca.key from a backup; a new CA needs every node re-certified (`pgcluster init --force`)"]
        let certificate: X509Certificate
        let key: PrivateKey
        do {
            certificate = try X509Certificate(pem: certificatePEM)
            key = try PrivateKey(pem: keyPEM)
        } catch {
            throw ClusterError("the cluster CA in \(folder) cannot be read: \(error)", details: advice)
        }
        guard certificate.belongs(key) else {
            throw ClusterError(
                "the cluster CA in \(folder) is damaged: the CA key does not belong to the CA certificate", details: advice)
        }
        do {
            return try ClusterCA(certificate: certificate, key: key)
        } catch {
            throw ClusterError("the cluster CA in \(folder) cannot be written out: \(error)", details: advice)
        }
    }


    /// A server certificate and its new key for a node reached by the names in `names`
    /// (addresses become IP SANs, everything else DNS SANs; the first is the subject's CN).
    ///
    /// `usages`: what the certificate may prove (a server, a client, or both: etcd's JSON
    /// gateway dials its own server with its server certificate, so etcd's needs both).
    /// `commonName`: the subject's CN when not the first name; empty: none, the node named
    /// as the organizational unit instead.
    public func issue(
        node: String, names: [String], usages: [CertificateUsage] = [.serverAuth], commonName: String? = nil,
        now: Date = Date()
    ) throws(ClusterError) -> NodeCertificate {
        do {
            let key = try PrivateKey.p256()
            let cn = commonName ?? names.first ?? node
            let certificate = try X509Certificate.make(
                subject: [("O", "pgcluster"), cn.isEmpty ? ("OU", node) : ("CN", cn)], key: key,
                issuer: (self.certificate, self.key), notBefore: now - Self.backdate, notAfter: now + Self.nodeValidity,
                extensions: [
                    ("basicConstraints", "critical,CA:FALSE"),
                    ("keyUsage", "critical,digitalSignature"),
                    ("subjectKeyIdentifier", "hash"),
                    ("authorityKeyIdentifier", "keyid:always"),
                ] + (usages.isEmpty ? [] : [("extendedKeyUsage", usages.map(\.rawValue).joined(separator: ","))]),
                alternativeNames: Self.alternativeNames(names))
            return NodeCertificate(certificatePEM: try certificate.pem(), keyPEM: try key.pem())
        } catch {
            throw ClusterError("\(node): cannot make its certificate: \(error)")
        }
    }

    /// IP SANs for addresses (v4 and v6), DNS SANs for names; each once, in order.
    static func alternativeNames(_ names: [String]) -> [AlternativeName] {
        var seen = Set<String>()
        return names.filter { seen.insert($0).inserted }.map { name in
            if let bytes = ipAddressBytes(name) { return .ipAddress(bytes) }
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
        let certificate = try X509Certificate(pem: pem)
        serial = certificate.serialHex
        notAfter = certificate.notAfter
    }

    /// Whole days from `now` until it expires (negative once it has).
    public func daysLeft(now: Date = Date()) -> Int { Int((notAfter.timeIntervalSince(now) / 86_400).rounded(.down)) }
}
