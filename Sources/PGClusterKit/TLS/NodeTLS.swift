import Foundation

/// What a node's TLS files hold, and where the cluster CA is kept: the same for every
/// backend. The backends only differ in where the files land (a node's `tls/` folder on
/// its host, or the node's folder of a compose project).
public enum NodeTLS {
    /// The cluster CA in local.dir (`tls.mode: generate`), made there first when there is
    /// none: ca.crt 0644, ca.key 0600, on this machine only. With `create: false` a missing
    /// CA gives a throwaway one that is not saved (for `render --dry-run`).
    public static func clusterCA(_ spec: ClusterSpec, create: Bool = true) throws(ClusterError) -> ClusterCA {
        let layout = LocalLayout(spec: spec)
        if let certificate = FileManager.default.contents(atPath: layout.caCertificate),
            let key = FileManager.default.contents(atPath: layout.caKey)
        {
            return try ClusterCA.load(
                certificatePEM: String(decoding: certificate, as: UTF8.self), keyPEM: String(decoding: key, as: UTF8.self),
                from: layout.root)
        }
        let ca = try ClusterCA.generate(cluster: spec.name)
        guard create else { return ca }
        // The key first: a certificate without its key would be taken for a damaged CA.
        try FileWriter.writeAtomically(Data(ca.keyPEM.utf8), to: layout.caKey, mode: 0o600)
        try FileWriter.writeAtomically(Data(ca.certificatePEM.utf8), to: layout.caCertificate, mode: 0o644)
        return ca
    }

    /// What goes into a node's TLS files: a new certificate signed by the cluster CA
    /// (generate; `ca` or the one in local.dir), or the spec's files (files).
    public static func material(_ spec: ClusterSpec, _ node: NodeSpec, ca: ClusterCA?) throws(ClusterError)
        -> (certificate: NodeCertificate, caPEM: String)
    {
        switch spec.tls.mode {
        case .off:
            throw ClusterError("\(node.name): TLS is off in \(spec.file)")
        case .generate:
            var authority: ClusterCA
            if let ca { authority = ca } else { authority = try clusterCA(spec) }
            let ca = authority
            return (try ca.issue(node: node.name, names: ClusterCA.names(of: node, backend: spec.backend)), ca.certificatePEM)
        case .files:
            func read(_ path: String?, _ key: String) throws(ClusterError) -> String {
                guard let path, let data = FileManager.default.contents(atPath: path) else {
                    throw ClusterError(
                        "\(node.name): cannot read \(key) \(path ?? "(not given)")", details: ["check \(key) in \(spec.file)"])
                }
                return String(decoding: data, as: UTF8.self)
            }
            let certificate = try read(node.tlsCert, "tlsCert")
            let caPEM = try read(spec.tls.caFile, "tls.caFile")
            for (pem, key) in [(certificate, "tlsCert"), (caPEM, "tls.caFile")] where (try? CertificateSummary(pem: pem)) == nil {
                throw ClusterError(
                    "\(node.name): \(key) is not a PEM certificate", details: ["check \(key) in \(spec.file)"])
            }
            return (NodeCertificate(certificatePEM: certificate, keyPEM: try read(node.tlsKey, "tlsKey")), caPEM)
        }
    }

    /// True when files already in place for `node` can stay (so that rendering again does
    /// not renew every certificate): they were signed by `ca`, whose certificate is the one
    /// beside them, they list exactly the names the node is reached by now, the key is the
    /// certificate's, and more than 30 days are left.
    public static func stillValid(
        _ existing: NodeCertificate, caPEM: String, for node: NodeSpec, spec: ClusterSpec, ca: ClusterCA, now: Date = Date()
    ) -> Bool {
        // (Compared as text without the line ends around it: files written before pgcluster
        // signed with libcrypto end without a newline, and are the same certificate.)
        let trimmed = { (pem: String) in pem.trimmingCharacters(in: .whitespacesAndNewlines) }
        guard trimmed(caPEM) == trimmed(ca.certificatePEM),
            let certificate = try? X509Certificate(pem: existing.certificatePEM),
            let key = try? PrivateKey(pem: existing.keyPEM),
            certificate.belongs(key),
            certificate.isSigned(by: ca.certificate),
            certificate.notAfter.timeIntervalSince(now) > 30 * 86_400
        else { return false }
        return certificate.alternativeNames == ClusterCA.alternativeNames(ClusterCA.names(of: node, backend: spec.backend))
    }
}
