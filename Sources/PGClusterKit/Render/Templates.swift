import Foundation
import Mustache

/// The text of every rendered file: the copies embedded in the binary, or a user's
/// own folder given with `--templates DIR` (a file missing there falls back to the
/// embedded one, so a user may override just one template).
public struct TemplateSet: Sendable {
    private let overrides: [String: String]
    public let directory: String?

    public static let embedded = TemplateSet(overrides: [:], directory: nil)

    /// Names of the templates pgcluster knows, such as `postgresql.conf.mustache`.
    public static var names: [String] { EmbeddedTemplates.files.keys.sorted() }

    init(overrides: [String: String], directory: String?) {
        self.overrides = overrides
        self.directory = directory
    }

    public init(directory: String) throws(ClusterError) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ClusterError("--templates \(directory): no such folder", exitCode: .usage)
        }
        var overrides: [String: String] = [:]
        for name in Self.names {
            let path = (directory as NSString).appendingPathComponent(name)
            if let data = FileManager.default.contents(atPath: path) {
                guard let text = String(data: data, encoding: .utf8) else {
                    throw ClusterError("template \(path) is not UTF-8 text", exitCode: .usage)
                }
                overrides[name] = text
            }
        }
        self.init(overrides: overrides, directory: directory)
    }

    public func text(_ name: String) -> String {
        overrides[name] ?? EmbeddedTemplates.files[name]!
    }

    /// Renders a template with plain-text substitution (no HTML escaping).
    public func render(_ name: String, _ context: [String: Any]) throws(ClusterError) -> String {
        let template: MustacheTemplate
        do {
            template = try MustacheTemplate(string: "{{% CONTENT_TYPE: TEXT}}" + text(name))
        } catch {
            let origin = overrides[name] != nil ? "\(directory ?? "")/\(name)" : "embedded \(name)"
            throw ClusterError("template \(origin) does not parse: \(error)", exitCode: .usage)
        }
        let text = template.render(context)
        return text.hasSuffix("\n") || text.isEmpty ? text : text + "\n"
    }
}
