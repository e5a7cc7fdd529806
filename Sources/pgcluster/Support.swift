import ArgumentParser
import Foundation
import PGClusterKit

/// Node names given on the command line, checked against the spec.
enum NodeSelection {
    static func resolve(_ names: [String], in spec: ClusterSpec, primaryFirst: Bool) throws(ClusterError) -> [NodeSpec] {
        var nodes: [NodeSpec] = []
        for name in names {
            guard let node = spec.node(named: name) else {
                throw ClusterError(
                    "no node named '\(name)' in \(spec.file) (nodes: \(spec.nodes.map(\.name).joined(separator: ", ")))",
                    exitCode: .usage)
            }
            nodes.append(node)
        }
        if nodes.isEmpty { nodes = spec.nodes }
        return primaryFirst ? nodes.filter { $0.role == .primary } + nodes.filter { $0.role != .primary } : nodes
    }
}

enum ClusterAccess {
    /// Credentials for any backend: the cluster's stored file under local.dir.
    static func credentials(_ spec: ClusterSpec) throws(ClusterError) -> Credentials {
        try Credentials.stored(spec: spec)
    }
}

extension ClusterAccess {
    /// The server-side control for the spec's backend.
    static func control(_ spec: ClusterSpec, _ options: SpecOptions) throws(ClusterError) -> any ServerControl {
        switch spec.backend {
        case .local, .ssh: return try HostCluster(spec: spec, templates: options.templateSet())
        case .compose: return ComposeCluster(spec: spec, templates: try options.templateSet())
        }
    }
}

enum JSONOutput {
    static func encode<T: Encodable>(_ value: T) throws(ClusterError) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        // Times as ISO 8601, as history writes them (Foundation's default is seconds since 2001).
        encoder.dateEncodingStrategy = .iso8601
        do {
            return String(decoding: try encoder.encode(value), as: UTF8.self)
        } catch {
            throw ClusterError("cannot encode JSON: \(error)")
        }
    }
}

/// `start --json` and `stop --json`: one line per node, in the order the command took them.
struct NodeLines: Encodable {
    var lines: [String]

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(lines.map { line in
            let node = String(line.prefix { $0 != " " })
            return ["node": node, "result": String(line.dropFirst(node.count + 1))]
        })
    }
}
