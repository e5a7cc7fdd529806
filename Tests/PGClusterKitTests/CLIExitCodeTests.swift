import Foundation
import Testing

/// The documented exit codes, checked on the built `pgcluster` binary.
@Suite("pgcluster exit codes")
struct CLIExitCodeTests {
    /// The `pgcluster` executable of this build: next to the test bundle (any scratch
    /// path), else under the package's usual build folders.
    static let binary: String? = {
        var folders: [URL] = []
        #if os(macOS)
            for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
                folders.append(bundle.bundleURL.deletingLastPathComponent())
            }
        #endif
        if let executable = Bundle.main.executableURL {
            folders.append(executable.resolvingSymlinksInPath().deletingLastPathComponent())
        }
        for scratch in [".build-tests", ".build"] {
            folders.append(TestSupport.repoRoot.appendingPathComponent("\(scratch)/debug"))
        }
        for folder in folders {
            let candidate = folder.appendingPathComponent("pgcluster").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }()

    /// Runs pgcluster with `arguments` (no shell) in `folder`.
    static func run(_ arguments: [String], in folder: String) throws -> TestSupport.ProcessOutcome {
        let binary = try #require(Self.binary, "no built pgcluster binary next to the test bundle")
        return try TestSupport.run(binary, arguments, in: folder, environment: ["NO_COLOR": "1"])
    }

    struct BadFile: Sendable, CustomTestStringConvertible {
        var label: String
        var yaml: String
        var key: String
        init(_ label: String, _ yaml: String, _ key: String) {
            self.label = label
            self.yaml = yaml
            self.key = key
        }
        var testDescription: String { label }
    }

    static let badSpecs: [BadFile] = [
        BadFile("unknown key", "name: t\ncolour: blue\nnodes:\n  - {name: a, port: 15432, role: primary}\n", "colour"),
        BadFile(
            "duplicate port",
            "name: t\nnodes:\n  - {name: a, port: 15432, role: primary}\n  - {name: b, port: 15432}\n", "nodes[1].port"
        ),
        BadFile(
            "bad CIDR", "name: t\nnetwork:\n  allow: [10.0.0.1/8]\nnodes:\n  - {name: a, port: 15432, role: primary}\n",
            "network.allow[0]"
        ),
        BadFile(
            "two primaries",
            "name: t\nnodes:\n  - {name: a, port: 15432, role: primary}\n  - {name: b, port: 15433, role: primary}\n",
            "nodes[1].role"
        ),
        BadFile(
            "count over standbys",
            "name: t\nreplication:\n  synchronous: {mode: any, count: 2}\nnodes:\n  - {name: a, port: 15432, role: primary}\n  - {name: b, port: 15433}\n",
            "replication.synchronous.count"
        ),
        BadFile(
            "unsupported PostgreSQL version",
            "name: t\npostgres:\n  version: 99\nnodes:\n  - {name: a, port: 15432, role: primary}\n", "postgres.version"
        ),
        BadFile(
            "fsync off",
            "name: t\npostgres:\n  parameters: {fsync: off}\nnodes:\n  - {name: a, port: 15432, role: primary}\n",
            "postgres.parameters.fsync"
        ),
    ]

    @Test("validate refuses a bad spec with exit code 65, naming file and key", arguments: badSpecs)
    func badSpec(_ bad: BadFile) throws {
        let folder = try TestSupport.makeTempDir("cli")
        defer { TestSupport.remove(folder) }
        try TestSupport.write(bad.yaml, to: "\(folder)/bad.yaml")
        let outcome = try Self.run(["validate", "-f", "bad.yaml"], in: folder)
        #expect(outcome.status == 65, "\(bad.label): \(outcome.stderr)")
        #expect(outcome.stderr.contains("\(folder)/bad.yaml:"), "\(bad.label): \(outcome.stderr)")
        #expect(outcome.stderr.contains(": \(bad.key): "), "\(bad.label): \(outcome.stderr)")
        #expect(outcome.stdout.isEmpty)
    }

    @Test("validate lists every problem of a spec and exits 65")
    func everyProblem() throws {
        let folder = try TestSupport.makeTempDir("cli")
        defer { TestSupport.remove(folder) }
        let yaml = "name: t\nbackend: kubernetes\nnodes:\n  - {name: a, port: 15432}\n  - {name: b, port: 0}\n"
        try TestSupport.write(yaml, to: "\(folder)/bad.yaml")
        let outcome = try Self.run(["validate", "--spec", "\(folder)/bad.yaml"], in: folder)
        #expect(outcome.status == 65)
        for key in ["backend", "nodes[1].port", "nodes"] {
            #expect(outcome.stderr.contains(": \(key): "), "missing \(key) in: \(outcome.stderr)")
        }
    }

    @Test("validate on malformed YAML exits 65 and gives the line")
    func malformed() throws {
        let folder = try TestSupport.makeTempDir("cli")
        defer { TestSupport.remove(folder) }
        try TestSupport.write("name: t\nnodes:\n  - name: a\n    port: [15432\n  - name: b\n", to: "\(folder)/bad.yaml")
        let outcome = try Self.run(["validate", "-f", "bad.yaml"], in: folder)
        #expect(outcome.status == 65)
        #expect(outcome.stderr.contains("\(folder)/bad.yaml:5: malformed YAML"), "\(outcome.stderr)")
    }

    @Test("validate on a missing spec exits 65 and names the file")
    func missingSpec() throws {
        let folder = try TestSupport.makeTempDir("cli")
        defer { TestSupport.remove(folder) }
        let outcome = try Self.run(["validate"], in: folder)
        #expect(outcome.status == 65)
        #expect(outcome.stderr.contains("\(folder)/pgcluster.yaml: no such file"), "\(outcome.stderr)")
    }

    @Test("validate accepts each example with exit code 0", arguments: TestSupport.exampleNames)
    func example(_ name: String) throws {
        let folder = try TestSupport.makeTempDir("cli")
        defer { TestSupport.remove(folder) }
        let path = TestSupport.examplePath(name)
        let outcome = try Self.run(["validate", "-f", path], in: folder)
        #expect(outcome.status == 0, "\(outcome.stderr)")
        #expect(outcome.stdout.contains("\(path): valid"), "\(outcome.stdout)")
    }

    @Test(
        "a bad command line exits 64",
        arguments: [
            ["validate", "--no-such-flag"],
            ["no-such-command"],
            ["validate", "-f"],
            ["validate", "--templates", "/nonexistent/pgcluster-templates", "-f", "EXAMPLE"],
        ])
    func usage(_ arguments: [String]) throws {
        let folder = try TestSupport.makeTempDir("cli")
        defer { TestSupport.remove(folder) }
        let args = arguments.map { $0 == "EXAMPLE" ? TestSupport.examplePath("local.yaml") : $0 }
        let outcome = try Self.run(args, in: folder)
        #expect(outcome.status == 64, "\(args): \(outcome.stderr)")
        #expect(!outcome.stderr.isEmpty)
    }
}

extension CLIExitCodeTests {
    @Test(
        "quorum's bad counts and lists exit 64 with a message quoting the flag",
        arguments: [
            (["quorum", "--first", "-1"], "--first needs a count of at least 1, not -1"),
            (["quorum", "--any", "-3"], "--any needs a count of at least 1, not -3"),
            (["quorum", "--any", "0"], "--any needs a count of at least 1, not 0"),
            (["quorum", "--standbys", ""], "--standbys needs at least one standby name"),
            (["quorum", "--standbys", " , "], "--standbys needs at least one standby name"),
            (["quorum", "--standbys", "db_1,,db_2"], "--standbys: an empty name"),
        ])
    func quorumUsage(_ arguments: [String], _ message: String) throws {
        let folder = try TestSupport.makeTempDir("cli")
        defer { TestSupport.remove(folder) }
        let outcome = try Self.run(arguments + ["-f", TestSupport.examplePath("local.yaml")], in: folder)
        #expect(outcome.status == 64, "\(arguments): \(outcome.stderr)")
        #expect(outcome.stderr.contains(message), "\(arguments): \(outcome.stderr)")
        #expect(!outcome.stderr.contains("Missing value"), "\(outcome.stderr)")
    }
}
