import Foundation

extension Observer {
    static let certificateQuery = """
        SELECT pg_read_file(current_setting('ssl_cert_file')) WHERE current_setting('ssl') = 'on'
        """

    /// The certificate each node that answers with `ssl = on` is configured with
    /// (`ssl_cert_file`), read over libpq so that it works the same on every backend: the
    /// live server's view, not a file here. By node name.
    public func certificates(_ nodes: [NodeSpec]) async -> [String: CertificateSummary] {
        await withTaskGroup(of: (String, CertificateSummary?).self) { group in
            for node in nodes {
                group.addTask { (node.name, await certificate(node)) }
            }
            var result: [String: CertificateSummary] = [:]
            for await (name, summary) in group { if let summary { result[name] = summary } }
            return result
        }
    }

    public func certificate(_ node: NodeSpec) async -> CertificateSummary? {
        let target = self.target(node, connectTimeout: max(1, Int(timeout.rounded(.up))))
        guard let result = try? await ServerOps.execute([Self.certificateQuery], on: target, name: node.name, timeout: timeout + 0.5),
            let pem = result.scalar
        else { return nil }
        return try? CertificateSummary(pem: pem)
    }
}
