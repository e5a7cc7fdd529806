import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// The TLS files of a rendered compose project (`render --out DIR`, `init`): each node's
/// certificate, key and CA certificate in DIR/<node>/tls, from the cluster CA in local.dir.
@Suite("Compose render with TLS")
struct ComposeTLSRenderTests {
    static func spec(root: String, nodes: String? = nil) throws -> ClusterSpec {
        try SpecLoader.parse(
            ComposeTestSupport.spec(extra: "local: {dir: \(root)/state}\n", nodes: nodes), file: "\(root)/pgcluster.yaml")
    }

    static func mode(_ path: String) -> Int? {
        (try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int
    }

    @Test("each node gets server.crt, server.key (0600) and ca.crt, for its host and service name; the CA key stays in local.dir")
    func filesAndNames() async throws {
        let root = try ComposeTestSupport.makeTempDir("compose-tls")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let spec = try Self.spec(root: root)
        let out = "\(root)/project"
        let files = try RenderCommand.certificates(spec, outputDirectory: out, dryRun: false)
        try FileWriter().write(files, under: out)

        #expect(Set(files.map(\.path)) == Set(["db_0", "db_1"].flatMap { ["\($0)/tls/server.crt", "\($0)/tls/server.key", "\($0)/tls/ca.crt"] }))
        for file in files {
            #expect(file.mode == (file.path.hasSuffix(".key") ? 0o600 : 0o644), "\(file.path)")
            #expect(Self.mode("\(out)/\(file.path)") == file.mode, "\(file.path) on disk")
        }
        // The CA: made in local.dir, its key 0600 there and in no rendered file.
        let layout = LocalLayout(spec: spec)
        #expect(Self.mode(layout.caKey) == 0o600)
        let caKey = try String(contentsOfFile: layout.caKey, encoding: .utf8)
        #expect(!files.contains { $0.contents.contains(caKey) })
        let caPEM = try String(contentsOfFile: layout.caCertificate, encoding: .utf8)
        let ca = try X509Certificate(pem: caPEM)

        for node in spec.nodes {
            let pem = try #require(files.first { $0.path == "\(node.name)/tls/server.crt" }).contents
            let leaf = try X509Certificate(pem: pem)
            #expect(files.first { $0.path == "\(node.name)/tls/ca.crt" }?.contents == caPEM)
            // pgcluster and applications reach it at host, the other nodes at its service name.
            #expect(ClusterCATests.verify(leaf, ca: ca, host: node.host), "\(node.name) for \(node.host)")
            #expect(ClusterCATests.verify(leaf, ca: ca, host: node.serviceHost), "\(node.name) for \(node.serviceHost)")
            #expect(!ClusterCATests.verify(leaf, ca: ca, host: "localhost"), "\(node.name) for localhost")
            #expect(leaf.alternativeNames == ClusterCA.alternativeNames([node.host, node.serviceHost]))
            #expect(node.serviceHost == node.name)
        }
    }

    @Test("rendering again keeps certificates that are still good; a node reached by a new name gets a new one")
    func renderAgain() throws {
        let root = try ComposeTestSupport.makeTempDir("compose-tls-again")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let out = "\(root)/project"
        let spec = try Self.spec(root: root)
        try FileWriter().write(try RenderCommand.certificates(spec, outputDirectory: out, dryRun: false), under: out)

        let again = try FileWriter().write(try RenderCommand.certificates(spec, outputDirectory: out, dryRun: false), under: out)
        #expect(again.allSatisfy { $0.change == .unchanged }, "\(again)")

        let renamed = try Self.spec(
            root: root,
            nodes: """
                  - name: db_0
                    port: 25432
                    role: primary
                  - name: db_1
                    port: 25433
                    serviceHost: replica-1

                """)
        let changed = try FileWriter().write(try RenderCommand.certificates(renamed, outputDirectory: out, dryRun: false), under: out)
        let updated = Set(changed.filter { $0.change != .unchanged }.map { $0.path.replacingOccurrences(of: out + "/", with: "") })
        #expect(updated == ["db_1/tls/server.crt", "db_1/tls/server.key"], "\(changed)")
    }

    @Test("a dry run makes no CA; tls.mode off renders no TLS file")
    func dryRunAndOff() throws {
        let root = try ComposeTestSupport.makeTempDir("compose-tls-dry")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let spec = try Self.spec(root: root)
        let files = try RenderCommand.certificates(spec, outputDirectory: "\(root)/project", dryRun: true)
        #expect(files.count == 6)
        #expect(!FileManager.default.fileExists(atPath: LocalLayout(spec: spec).caKey))

        let off = try SpecLoader.parse(
            ComposeTestSupport.spec(extra: "local: {dir: \(root)/state}\ntls: {mode: off}\n"), file: "\(root)/pgcluster.yaml")
        #expect(try RenderCommand.certificates(off, outputDirectory: "\(root)/project", dryRun: false).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: LocalLayout(spec: off).caCertificate))
    }
}
