import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// Paths and helpers shared by the unit tests.
enum TestSupport {
    /// The package root, found from this file's own path (Tests/PGClusterKitTests/TestSupport.swift).
    static let repoRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()
        .deletingLastPathComponent()
        .deletingLastPathComponent()

    static var examplesDir: URL { repoRoot.appendingPathComponent("examples") }
    static var templatesDir: URL { repoRoot.appendingPathComponent("templates") }
    static var goldenDir: URL { repoRoot.appendingPathComponent("Tests/PGClusterKitTests/Golden") }

    /// The example specs shipped in examples/, by file name (`any1.yaml`, ...), sorted.
    static let exampleNames: [String] = {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: repoRoot.appendingPathComponent("examples").path)) ?? []
        return names.filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted()
    }()

    static func examplePath(_ name: String) -> String {
        examplesDir.appendingPathComponent(name).path
    }

    /// The problems `SpecLoader.parse` reports for `yaml`, or an empty list when it is valid.
    static func problems(_ yaml: String, file: String = "/specs/pgcluster.yaml") -> [SpecProblem] {
        do {
            _ = try SpecLoader.parse(yaml, file: file)
            return []
        } catch {
            return error.problems
        }
    }

    /// A fresh folder under /tmp, removed by the caller (`defer { TestSupport.remove(dir) }`).
    static func makeTempDir(_ label: String) throws -> String {
        let path = "/tmp/pgcluster-test-\(label)-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        return path
    }

    static func remove(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    static func write(_ text: String, to path: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    /// How a child process ended.
    struct ProcessOutcome: Sendable {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `executable` with an argument array (never a shell) in `folder`, its output
    /// collected in files there (a daemon it starts must hold no pipe of ours), and waits.
    static func run(
        _ executable: String, _ arguments: [String], in folder: String, environment: [String: String] = [:]
    ) throws -> ProcessOutcome {
        let tag = UUID().uuidString.prefix(8)
        let outPath = "\(folder)/.stdout-\(tag)", errPath = "\(folder)/.stderr-\(tag)"
        defer {
            try? FileManager.default.removeItem(atPath: outPath)
            try? FileManager.default.removeItem(atPath: errPath)
        }
        let merged = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let result = try Spawn.run(
            ["/usr/bin/env", "-C", folder, "--", executable] + arguments,
            environment: merged.map { "\($0.key)=\($0.value)" }, stdout: .file(outPath), stderr: .file(errPath)
        ).get()
        return ProcessOutcome(
            status: result.status,
            stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
    }
}
