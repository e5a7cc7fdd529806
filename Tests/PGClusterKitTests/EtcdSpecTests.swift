import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// Issue 21: `store.etcd`'s TLS and authentication settings, by table, against real files
/// whose modes the loader checks (a key or a password file open to others is refused).
@Suite("Spec: store.etcd TLS and authentication")
struct EtcdSpecTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var label: String
        /// The lines under `store.etcd:` after `endpoints:`, in the folder of the files below.
        var etcd: String
        var endpoints = "[https://127.0.0.1:2379]"
        /// nil: accepted; otherwise the key and a part of the reason of the one problem.
        var refused: (key: String, reason: String)?

        var testDescription: String { label }
    }

    /// Files every case can name: ca.crt, client.crt (0644), client.key and pw (0600),
    /// open.key and open.pw (0644), group.pw (0640).
    static let files: [(name: String, mode: Int)] = [
        ("ca.crt", 0o644), ("client.crt", 0o644), ("client.key", 0o600), ("pw", 0o600), ("ro.pw", 0o400),
        ("open.key", 0o644), ("open.pw", 0o644), ("group.pw", 0o640),
    ]

    static let cases: [Case] = [
        Case(label: "https with the system trust store", etcd: ""),
        Case(label: "https with a CA", etcd: "ca: ca.crt"),
        Case(label: "https with a CA and a client certificate", etcd: "ca: ca.crt\ncert: client.crt\nkey: client.key"),
        Case(label: "a user and a 0600 password file", etcd: "ca: ca.crt\nuser: pgcluster\npasswordFile: pw"),
        Case(label: "a 0400 password file", etcd: "user: pgcluster\npasswordFile: ro.pw"),
        Case(label: "a user over http", etcd: "user: pgcluster\npasswordFile: pw", endpoints: "[http://127.0.0.1:2379]"),
        Case(label: "a CA that does not exist", etcd: "ca: nothing.crt", refused: ("store.etcd.ca", "no such file")),
        Case(label: "a certificate without its key", etcd: "cert: client.crt", refused: ("store.etcd.key", "go together")),
        Case(label: "a key without its certificate", etcd: "key: client.key", refused: ("store.etcd.cert", "go together")),
        Case(label: "a key open to others", etcd: "cert: client.crt\nkey: open.key", refused: ("store.etcd.key", "mode 0644")),
        Case(label: "a missing key", etcd: "cert: client.crt\nkey: gone.key", refused: ("store.etcd.key", "no such file")),
        Case(label: "a user without a password file", etcd: "user: pgcluster", refused: ("store.etcd.passwordFile", "required with store.etcd.user")),
        Case(label: "a password file without a user", etcd: "passwordFile: pw", refused: ("store.etcd.passwordFile", "name the etcd user")),
        Case(label: "a password file open to others", etcd: "user: u\npasswordFile: open.pw", refused: ("store.etcd.passwordFile", "mode 0644")),
        Case(label: "a password file open to its group", etcd: "user: u\npasswordFile: group.pw", refused: ("store.etcd.passwordFile", "chmod 600")),
        Case(label: "a missing password file", etcd: "user: u\npasswordFile: none.pw", refused: ("store.etcd.passwordFile", "no such file")),
        Case(label: "a client key with http", etcd: "key: client.key", endpoints: "[http://127.0.0.1:2379]", refused: ("store.etcd.key", "https:// endpoints only")),
        Case(label: "an endpoint that is not a URL", etcd: "", endpoints: "[etcd:2379]", refused: ("store.etcd.endpoints[0]", "not an etcd client URL")),
    ]

    @Test("store.etcd's files: present, and keys and passwords 0600", arguments: cases)
    func table(_ test: Case) throws {
        let folder = try TestSupport.makeTempDir("etcdspec")
        defer { TestSupport.remove(folder) }
        for file in Self.files {
            try TestSupport.write("x\n", to: "\(folder)/\(file.name)")
            chmod("\(folder)/\(file.name)", mode_t(file.mode))
        }
        let lines = test.etcd.isEmpty ? "" : test.etcd.split(separator: "\n").map { "    \($0)\n" }.joined()
        let yaml = """
            name: t
            store:
              etcd:
                endpoints: \(test.endpoints)
            \(lines)nodes:
              - {name: db_0, port: 15432, role: primary}
              - {name: db_1, port: 15433}

            """
        let file = "\(folder)/pgcluster.yaml"
        let problems = TestSupport.problems(yaml, file: file)
        guard let refused = test.refused else {
            #expect(problems.isEmpty, "\(problems.map(\.description))")
            return
        }
        #expect(problems.count == 1, "\(problems.map(\.description))")
        let match = problems.first { $0.key == refused.key && $0.reason.contains(refused.reason) }
        #expect(match != nil, "no problem at \(refused.key) with '\(refused.reason)' in \(problems.map(\.description))")
        // What an operator reads: the file, the key, the reason.
        #expect(match?.description.hasPrefix(file) == true)
    }

    @Test("the files resolve against the spec's folder; the password never enters the spec")
    func resolved() throws {
        let folder = try TestSupport.makeTempDir("etcdspec")
        defer { TestSupport.remove(folder) }
        for file in Self.files {
            try TestSupport.write("secret-password\n", to: "\(folder)/\(file.name)")
            chmod("\(folder)/\(file.name)", mode_t(file.mode))
        }
        let yaml = """
            name: t
            store: {etcd: {endpoints: [https://a:2379, https://b:2379], ca: ca.crt, cert: client.crt, key: client.key, user: pgc, passwordFile: pw}}
            nodes:
              - {name: db_0, port: 15432, role: primary}
              - {name: db_1, port: 15433}

            """
        let spec = try SpecLoader.parse(yaml, file: "\(folder)/pgcluster.yaml")
        let etcd = try #require(spec.store.etcd)
        #expect(etcd.usesTLS)
        #expect(etcd.ca == "\(folder)/ca.crt")
        #expect(etcd.cert == "\(folder)/client.crt")
        #expect(etcd.key == "\(folder)/client.key")
        #expect(etcd.user == "pgc")
        #expect(etcd.passwordFile == "\(folder)/pw")
        #expect(!"\(spec)".contains("secret-password"))
    }

    @Test("a refused etcd file exits 65 from the command line, naming file, key and reason")
    func exit65() async throws {
        let folder = try TestSupport.makeTempDir("etcdspec")
        defer { TestSupport.remove(folder) }
        try TestSupport.write("pw\n", to: "\(folder)/pw")
        chmod("\(folder)/pw", 0o644)
        let yaml = """
            name: t
            store: {etcd: {endpoints: [https://127.0.0.1:2379], user: pgc, passwordFile: pw}}
            nodes:
              - {name: db_0, port: 15432, role: primary}
              - {name: db_1, port: 15433}

            """
        try TestSupport.write(yaml, to: "\(folder)/pgcluster.yaml")
        let result = try CLIExitCodeTests.run(["validate", "-f", "\(folder)/pgcluster.yaml"], in: folder)
        #expect(result.status == 65, "\(result)")
        #expect(result.stderr.contains("\(folder)/pgcluster.yaml"), "\(result.stderr)")
        #expect(result.stderr.contains("store.etcd.passwordFile"), "\(result.stderr)")
        #expect(result.stderr.contains("chmod 600"), "\(result.stderr)")
    }
}
