import Foundation

/// TLS files on the hosts: the node's certificate and key, and the CA certificate, in the
/// node's `tls/` folder (see ``LocalLayout/tlsDir(_:)``), written through ``Host`` so that
/// they land the same way on this machine and over ssh.
extension HostCluster {
    /// The cluster CA in local.dir (`tls.mode: generate`), made there first when there is
    /// none: ca.crt 0644, ca.key 0600, on this machine only.
    public func clusterCA() throws(ClusterError) -> ClusterCA {
        let certificatePath = layout.caCertificate
        let keyPath = layout.caKey
        if let certificate = FileManager.default.contents(atPath: certificatePath),
            let key = FileManager.default.contents(atPath: keyPath)
        {
            return try ClusterCA.load(
                certificatePEM: String(decoding: certificate, as: UTF8.self), keyPEM: String(decoding: key, as: UTF8.self),
                from: layout.root)
        }
        try makeRoot()
        let ca = try ClusterCA.generate(cluster: spec.name)
        // The key first: a certificate without its key would be taken for a damaged CA.
        try FileWriter.writeAtomically(Data(ca.keyPEM.utf8), to: keyPath, mode: 0o600)
        try FileWriter.writeAtomically(Data(ca.certificatePEM.utf8), to: certificatePath, mode: 0o644)
        return ca
    }

    /// What goes into a node's tls folder: a new certificate signed by the cluster CA
    /// (generate), or the spec's files (files).
    func tlsMaterial(_ node: NodeSpec, ca: ClusterCA?) throws(ClusterError) -> (NodeCertificate, caPEM: String) {
        switch spec.tls.mode {
        case .off:
            throw ClusterError("\(node.name): TLS is off in \(spec.file)")
        case .generate:
            var authority: ClusterCA
            if let ca { authority = ca } else { authority = try clusterCA() }
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

    /// Writes the node's certificate (0644), key (0600, owned by the server's user, as
    /// PostgreSQL demands) and the CA certificate into its tls folder, replacing what was
    /// there. Returns the new certificate. A running server picks them up on reload.
    @discardableResult
    public func installTLS(_ node: NodeSpec, ca: ClusterCA? = nil) async throws(ClusterError) -> NodeCertificate {
        let (certificate, caPEM) = try tlsMaterial(node, ca: ca)
        let host = self.host(node)
        try await host.makeDirectories([(layout.tlsDir(node.name), 0o700)])
        try await host.writeFile(layout.serverKey(node.name), certificate.keyPEM, mode: 0o600)
        try await host.writeFile(layout.serverCertificate(node.name), certificate.certificatePEM, mode: 0o644)
        try await host.writeFile(layout.nodeCACertificate(node.name), caPEM, mode: 0o644)
        return certificate
    }
}
