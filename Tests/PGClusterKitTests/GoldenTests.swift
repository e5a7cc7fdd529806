import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// What `pgcluster render` writes for each example, compared with the reviewed copies
/// in Golden/<example>/. To re-record after an intended change, run the tests with
/// `PGCLUSTER_RECORD_GOLDEN=1` and review the diff of Golden/ before committing it.
@Suite("Golden files")
struct GoldenTests {
    static var recording: Bool { ProcessInfo.processInfo.environment["PGCLUSTER_RECORD_GOLDEN"] == "1" }

    /// Replaces what depends on where the package is checked out, so the golden files
    /// are the same on every machine.
    static func normalised(_ text: String) -> String {
        text.replacingOccurrences(of: TestSupport.repoRoot.path, with: "$REPO")
    }

    /// Every regular file below `folder`, as paths relative to it.
    static func files(under folder: URL) -> Set<String> {
        guard let enumerator = FileManager.default.enumerator(atPath: folder.path) else { return [] }
        var result = Set<String>()
        while let path = enumerator.nextObject() as? String {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: folder.appendingPathComponent(path).path, isDirectory: &isDirectory),
                !isDirectory.boolValue
            {
                result.insert(path)
            }
        }
        return result
    }

    /// The first line where two texts differ, for a readable failure.
    static func firstDifference(_ actual: String, _ expected: String) -> String {
        let a = actual.components(separatedBy: "\n"), e = expected.components(separatedBy: "\n")
        for i in 0..<max(a.count, e.count) {
            let left = i < a.count ? a[i] : "<end of file>", right = i < e.count ? e[i] : "<end of file>"
            if left != right { return "line \(i + 1):\n  rendered: \(left)\n  golden:   \(right)" }
        }
        return "no difference"
    }

    @Test("rendering each example gives the golden files", arguments: TestSupport.exampleNames)
    func example(_ file: String) throws {
        try check(file, tlsOff: false)
    }

    /// With `tls: {mode: off}` every example renders exactly what it rendered before TLS
    /// existed: Golden/tls-off/ holds those files, unchanged (for compose, but for the
    /// entrypoint script, which also carries the TLS steps that TLS_SOURCE_DIR turns on).
    /// An example whose TLS is off already would be checked against its own golden files.
    @Test("with tls.mode off, each example renders the files of before TLS", arguments: TestSupport.exampleNames)
    func exampleWithTLSOff(_ file: String) throws {
        try check(file, tlsOff: true)
    }

    func check(_ file: String, tlsOff: Bool) throws {
        let name = (file as NSString).deletingPathExtension
        var spec = try SpecLoader.load(path: TestSupport.examplePath(file))
        let ownGolden = !tlsOff || !spec.tls.enabled
        if tlsOff { spec.tls = TLSSettings(mode: .off) }
        // Passwords a spec leaves out are generated when rendering (compose's .env): fix
        // them here so that the golden files stay the same from run to run.
        if spec.superuser.password == nil { spec.superuser.password = "golden-superuser-password" }
        if spec.replication.password == nil { spec.replication.password = "golden-replication-password" }
        let rendered = try RenderCommand.files(Renderer(spec: spec))
        let folder = TestSupport.goldenDir.appendingPathComponent(ownGolden ? name : "tls-off/\(name)")

        #expect(Set(rendered.map(\.path)).count == rendered.count, "two rendered files share a path")
        if Self.recording {
            try? FileManager.default.removeItem(at: folder)
            for file in rendered {
                let url = folder.appendingPathComponent(file.path)
                try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                try Data(Self.normalised(file.contents).utf8).write(to: url)
            }
            return
        }

        let golden = Self.files(under: folder)
        #expect(!golden.isEmpty, "no golden files in \(folder.path); record them with PGCLUSTER_RECORD_GOLDEN=1")
        #expect(
            Set(rendered.map(\.path)) == golden,
            "rendered: \(rendered.map(\.path).sorted()), golden: \(golden.sorted())")
        for file in rendered {
            let url = folder.appendingPathComponent(file.path)
            guard let data = FileManager.default.contents(atPath: url.path) else { continue }
            let expected = String(decoding: data, as: UTF8.self)
            let actual = Self.normalised(file.contents)
            #expect(actual == expected, "\(name)/\(file.path) differs at \(Self.firstDifference(actual, expected))")
        }
    }

    @Test("a rendered file holds a password only when it is private (mode 0600)", arguments: TestSupport.exampleNames)
    func secrets(_ file: String) throws {
        var spec = try SpecLoader.load(path: TestSupport.examplePath(file))
        spec.superuser.password = "super-secret-1"
        spec.replication.password = "repl-secret-2"
        for rendered in try RenderCommand.files(Renderer(spec: spec)) {
            #expect(rendered.mode & 0o022 == 0, "\(rendered.path) has mode \(String(rendered.mode, radix: 8))")
            if rendered.mode & 0o077 != 0 {
                #expect(!rendered.contents.contains("super-secret-1"), "\(rendered.path)")
                #expect(!rendered.contents.contains("repl-secret-2"), "\(rendered.path)")
            }
        }
    }
}
