import Foundation

/// TLS files on the hosts: the node's certificate and key, and the CA certificate, in the
/// node's `tls/` folder (see ``LocalLayout/tlsDir(_:)``), written through ``Host`` so that
/// they land the same way on this machine and over ssh.
extension HostCluster {
    /// The cluster CA in local.dir (``NodeTLS/clusterCA(_:create:)``), local.dir made first.
    public func clusterCA() throws(ClusterError) -> ClusterCA {
        try makeRoot()
        return try NodeTLS.clusterCA(spec)
    }

    /// Writes the node's certificate (0644), key (0600, owned by the server's user, as
    /// PostgreSQL demands) and the CA certificate into its tls folder, replacing what was
    /// there. Returns the new certificate. A running server picks them up on reload.
    @discardableResult
    public func installTLS(_ node: NodeSpec, ca: ClusterCA? = nil) async throws(ClusterError) -> NodeCertificate {
        // local.dir exists before a CA is made there.
        var authority = ca
        if authority == nil && spec.tls.mode == .generate { authority = try clusterCA() }
        let (certificate, caPEM) = try NodeTLS.material(spec, node, ca: authority)
        let host = self.host(node)
        try await host.makeDirectories([(layout.tlsDir(node.name), 0o700)])
        try await host.writeFile(layout.serverKey(node.name), certificate.keyPEM, mode: 0o600)
        try await host.writeFile(layout.serverCertificate(node.name), certificate.certificatePEM, mode: 0o644)
        try await host.writeFile(layout.nodeCACertificate(node.name), caPEM, mode: 0o644)
        return certificate
    }
}
