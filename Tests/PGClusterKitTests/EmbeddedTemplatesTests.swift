import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

@Suite("Embedded templates")
struct EmbeddedTemplatesTests {
    static let templateFiles: [String] = {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: TestSupport.templatesDir.path)) ?? []
        return names.filter { !$0.hasPrefix(".") }.sorted()
    }()

    @Test("templates/ and the embedded copies hold the same files")
    func sameNames() {
        #expect(!Self.templateFiles.isEmpty)
        #expect(
            Self.templateFiles == EmbeddedTemplates.files.keys.sorted(),
            "templates/ and EmbeddedTemplates.swift differ; run: make templates")
        #expect(TemplateSet.names == Self.templateFiles)
    }

    @Test("each template in templates/ is embedded as it is (run `make templates` after editing)", arguments: templateFiles)
    func embedded(_ name: String) throws {
        let data = try #require(FileManager.default.contents(atPath: TestSupport.templatesDir.appendingPathComponent(name).path))
        let text = try #require(String(data: data, encoding: .utf8))
        #expect(EmbeddedTemplates.files[name] == text, "\(name) differs from its embedded copy; run: make templates")
        #expect(TemplateSet.embedded.text(name) == text)
    }

    @Test("a templates folder overrides one template, the rest stay embedded")
    func override() throws {
        let folder = try TestSupport.makeTempDir("templates")
        defer { TestSupport.remove(folder) }
        let custom = "# custom pg_hba.conf for {{node}} of {{cluster}}\n{{#allow}}\nhostssl all all {{cidr}} scram-sha-256\n{{/allow}}\n"
        try TestSupport.write(custom, to: "\(folder)/pg_hba.conf.mustache")
        // A file pgcluster does not know is ignored.
        try TestSupport.write("{{nonsense", to: "\(folder)/unrelated.mustache")

        let templates = try TemplateSet(directory: folder)
        #expect(templates.directory == folder)
        #expect(templates.text("pg_hba.conf.mustache") == custom)
        #expect(templates.text("postgresql.conf.mustache") == EmbeddedTemplates.files["postgresql.conf.mustache"])
        #expect(templates.text("standby.conf.mustache") == EmbeddedTemplates.files["standby.conf.mustache"])

        let spec = try SpecLoader.load(path: TestSupport.examplePath("any1.yaml"))
        let custom1 = Renderer(spec: spec, templates: templates)
        let embedded = Renderer(spec: spec)
        #expect(
            try custom1.hbaConf(spec.primary)
                == "# custom pg_hba.conf for db_0 of any1\nhostssl all all 127.0.0.1/32 scram-sha-256\n")
        #expect(try custom1.postgresqlConf(spec.primary) == (try embedded.postgresqlConf(spec.primary)))
        let standby = spec.standbys[0]
        #expect(
            try custom1.standbyConf(standby, upstream: spec.primary)
                == (try embedded.standbyConf(standby, upstream: spec.primary)))
    }

    @Test("substitution is plain text, not HTML-escaped")
    func plainText() throws {
        let folder = try TestSupport.makeTempDir("templates")
        defer { TestSupport.remove(folder) }
        try TestSupport.write("{{primaryConninfo}}", to: "\(folder)/standby.conf.mustache")
        let spec = try SpecLoader.parse(
            "name: t\nlocal: {dir: \"/tmp/a&b <c>\"}\nnodes:\n  - {name: a, port: 15432, role: primary}\n  - {name: b, port: 15433}\n",
            file: "/specs/t.yaml")
        let text = try Renderer(spec: spec, templates: TemplateSet(directory: folder))
            .standbyConf(spec.standbys[0], upstream: spec.primary)
        // A rendered file always ends with a newline.
        #expect(text.hasSuffix("pgpass'' connect_timeout=2 sslmode=verify-full sslrootcert=''/tmp/a&b <c>/b/tls/ca.crt'''\n"))
        #expect(text.contains("/tmp/a&b <c>/pgpass"))
        #expect(!text.contains("&amp;"))
    }

    @Test("a missing templates folder is a usage error")
    func missingFolder() {
        let error = #expect(throws: ClusterError.self) {
            try TemplateSet(directory: "/nonexistent/pgcluster-templates-\(UUID().uuidString)")
        }
        #expect(error?.exitCode == .usage)
        #expect(error?.message.contains("--templates") == true)
    }

    @Test("a template that does not parse names its file")
    func badTemplate() throws {
        let folder = try TestSupport.makeTempDir("templates")
        defer { TestSupport.remove(folder) }
        try TestSupport.write("{{#allow}}unclosed section\n", to: "\(folder)/pg_hba.conf.mustache")
        let spec = try SpecLoader.load(path: TestSupport.examplePath("any1.yaml"))
        let renderer = Renderer(spec: spec, templates: try TemplateSet(directory: folder))
        let error = #expect(throws: ClusterError.self) { try renderer.hbaConf(spec.primary) }
        #expect(error?.message.contains("\(folder)/pg_hba.conf.mustache") == true, "\(String(describing: error))")
    }
}
