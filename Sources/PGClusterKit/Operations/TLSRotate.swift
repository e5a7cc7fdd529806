import Foundation

/// `pgcluster tls rotate`: every node gets a new certificate (signed by the same cluster CA,
/// or the spec's files again with `tls.mode: files`), installed on its host (compose: in
/// its folder of the project and its container), and its server reloads it
/// (`pg_reload_conf()`): connections keep going, nothing restarts.
public struct TLSRotate: Sendable {
    public let cluster: any ServerControl
    public let credentials: Credentials

    public init(cluster: any ServerControl, credentials: Credentials) {
        self.cluster = cluster
        self.credentials = credentials
    }

    public struct NodeResult: Sendable, Encodable, Equatable {
        public var name: String
        /// The new certificate's serial number (hex), when it was installed.
        public var serial: String?
        public var expires: Date?
        /// Whether the running server reloaded it; a node that is down reads it when it starts.
        public var reloaded: Bool
        public var problem: String?
    }

    public struct Report: Sendable, Encodable {
        public var nodes: [NodeResult]
        public var problems: [String] { nodes.compactMap { $0.problem.map { p in p } } }

        public var text: String {
            let rows = [["NODE", "SERIAL", "EXPIRES", "RELOADED"]] + nodes.map { node in
                [
                    node.name, node.serial ?? "-",
                    node.expires.map { ISO8601DateFormatter().string(from: $0) } ?? "-",
                    node.reloaded ? "yes" : "no",
                ]
            }
            var lines = [TextTable.render(rows)]
            if problems.isEmpty {
                lines.append("every node has a new certificate")
            } else {
                lines.append("PROBLEMS:")
                lines += problems.map { "  - " + $0 }
            }
            return lines.joined(separator: "\n")
        }
    }

    public func run() async throws(ClusterError) -> Report {
        let spec = cluster.spec
        guard spec.tls.enabled else {
            throw ClusterError(
                "TLS is off in \(spec.file) (tls.mode: off): there is no certificate to rotate",
                details: ["set tls.mode to generate or files first"])
        }
        let ca = spec.tls.mode == .generate ? try NodeTLS.clusterCA(spec) : nil
        let nodes = spec.nodes
        let results = await withTaskGroup(of: (Int, NodeResult).self) { group in
            for (index, node) in nodes.enumerated() {
                group.addTask { (index, await rotate(node, ca: ca)) }
            }
            var results = [NodeResult?](repeating: nil, count: nodes.count)
            for await (index, result) in group { results[index] = result }
            return results.map { $0! }
        }
        return Report(nodes: results)
    }

    func rotate(_ node: NodeSpec, ca: ClusterCA?) async -> NodeResult {
        var result = NodeResult(name: node.name, reloaded: false)
        do throws(ClusterError) {
            let certificate = try await cluster.installTLS(node, ca: ca)
            let summary = try? CertificateSummary(pem: certificate.certificatePEM)
            result.serial = summary?.serial
            result.expires = summary?.notAfter
            Console.progress("[\(node.name)] new certificate \(result.serial ?? "")")
        } catch {
            result.problem = "\(node.name): not installed: \(error.message)"
            return result
        }
        guard await cluster.isRunning(node) else {
            result.problem = "\(node.name): not running; it uses the new certificate when it starts"
            return result
        }
        do throws(ClusterError) {
            try await ServerOps(spec: cluster.spec, credentials: credentials, templates: cluster.renderer.templates)
                .execute(node, ["SELECT pg_reload_conf()"])
            result.reloaded = true
        } catch {
            result.problem = "\(node.name): installed, but the reload failed: \(error.message); run `pgcluster tls rotate` again"
        }
        return result
    }
}
