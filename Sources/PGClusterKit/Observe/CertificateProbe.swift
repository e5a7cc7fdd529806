import Foundation

/// Reads the certificate each server is configured with (`ssl_cert_file`), over libpq,
/// so it works the same for every backend: the live server's view, not a file here.
public struct CertificateProbe: Sendable {
    public var credentials: Credentials
    public var timeout: Double

    public init(credentials: Credentials, timeout: Double = 2) {
        self.credentials = credentials
        self.timeout = timeout
    }

    /// The certificate of every node that answers with `ssl = on`, by node name.
    public func read(_ nodes: [NodeSpec]) async -> [String: CertificateSummary] {
        await withTaskGroup(of: (String, CertificateSummary?).self) { group in
            for node in nodes {
                group.addTask { (node.name, await read(node)) }
            }
            var result: [String: CertificateSummary] = [:]
            for await (name, summary) in group { if let summary { result[name] = summary } }
            return result
        }
    }

    static let query = """
        SELECT pg_read_file(current_setting('ssl_cert_file')) WHERE current_setting('ssl') = 'on'
        """

    public func read(_ node: NodeSpec) async -> CertificateSummary? {
        let target = Observer(credentials: credentials).target(node, connectTimeout: max(1, Int(timeout.rounded(.up))))
        guard let result = try? await ServerOps.execute([Self.query], on: target, name: node.name, timeout: timeout + 0.5),
            let pem = result.scalar
        else { return nil }
        return try? CertificateSummary(pem: pem)
    }
}
