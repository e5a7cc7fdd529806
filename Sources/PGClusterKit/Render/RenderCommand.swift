import Foundation

/// What `pgcluster render` writes for a spec, by backend.
public enum RenderCommand {
    /// - Parameter outputDirectory: where the files go; for compose, passwords already in
    ///   its `.env` are kept, so rendering again never changes the secrets of a cluster
    ///   whose volumes were initialised with them.
    public static func files(_ renderer: Renderer, outputDirectory: String? = nil) throws(ClusterError) -> [RenderedFile] {
        switch renderer.spec.backend {
        case .local, .ssh:
            return try renderer.nodeFiles()
        case .compose:
            let existing = outputDirectory.flatMap { EnvFile.read("\($0)/\(ComposeRenderer.FileName.env)") } ?? [:]
            let compose = ComposeRenderer(
                renderer: renderer, superuserPassword: existing["POSTGRES_PASSWORD"],
                replicationPassword: existing["REPLICATION_PASSWORD"])
            return try renderer.nodeFiles() + compose.projectFiles()
        }
    }
}

/// Reads `KEY=value` lines of a docker-compose `.env` file.
public enum EnvFile {
    public static func read(_ path: String) -> [String: String]? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            values[String(line[..<equals]).trimmingCharacters(in: .whitespaces)] = String(line[line.index(after: equals)...])
        }
        return values
    }
}
