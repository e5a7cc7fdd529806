import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// The SCRAM secrets pgcluster makes for its generated passwords, and which passwords get them.
@Suite("SCRAM secrets")
struct SCRAMSecretTests {
    @Test(
        "the secret matches another implementation's (Python's hashlib and hmac)",
        arguments: [
            (
                "pencil", [UInt8](0..<16), 4096,
                "SCRAM-SHA-256$4096:AAECAwQFBgcICQoLDA0ODw==$zHCdol2044/ZyWzPLi7oxApCkamKw9Z+E4U/QApd/5Y=:dd5peBOitVnLNFu7VmwP+HiDaaw4OUCv396eVCWhYiE="
            ),
            (
                "kENgD8ovSndzt87ZgzeNPGLGpWzo6xaf", [UInt8](repeating: 0xa5, count: 16), 64,
                "SCRAM-SHA-256$64:paWlpaWlpaWlpaWlpaWlpQ==$ZZxxwoxAoa2MS6QD3vAPCDpEAHRg2HZYSs3PoKz+m+I=:WpGb9k21fcQJLjAj40bAwunlzOwtwIsdU5q13rjnQ+o="
            ),
            (
                "x", [UInt8](repeating: 0, count: 16), 1,
                "SCRAM-SHA-256$1:AAAAAAAAAAAAAAAAAAAAAA==$P1FkPIhPln7hNCbFhTQyS7WtrPNXrpBvJ+Su77rBaCg=:qKfkrLzjSAFSPvNQIdc6W4OvlxtYoY+whAJYH2uvqp8="
            ),
        ])
    func knownSecrets(password: String, salt: [UInt8], iterations: Int, expected: String) {
        #expect(SCRAMSecret.make(password: password, salt: salt, iterations: iterations) == expected)
    }

    @Test("a password SASLprep would change is left to libpq; each secret has its own salt")
    func refusedAndSalted() throws {
        #expect(SCRAMSecret.make(password: "pass-Ã-word") == nil)
        #expect(SCRAMSecret.make(password: "tab\there") == nil)
        #expect(SCRAMSecret.make(password: "") == nil)
        let first = try #require(SCRAMSecret.make(password: Credentials.generatePassword()))
        #expect(first.hasPrefix("SCRAM-SHA-256$\(SCRAMSecret.generatedIterations):"))
        let password = Credentials.generatePassword()
        #expect(SCRAMSecret.make(password: password) != SCRAMSecret.make(password: password))
    }

    @Test("only a password pgcluster generated is marked so; a spec's is a person's, also once stored")
    func provenance() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("scram-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let path = root + "/credentials.json"
        let given = try SpecLoader.parse(
            """
            version: 1
            name: scram
            superuser: {password: chosen-by-a-person}
            app: {user: shop, database: shop}
            nodes: [{name: a, port: 21999, role: primary}]
            """, file: root + "/spec.yaml")
        let first = try Credentials.resolve(spec: given, storedAt: path)
        #expect(!first.superuser.generated)
        #expect(first.replication.generated)
        #expect(try #require(first.app).generated)
        try first.save(to: path)

        // Stored, the spec no longer giving it: the password and where it came from stay.
        let plain = try SpecLoader.parse(
            "version: 1\nname: scram\napp: {user: shop, database: shop}\nnodes: [{name: a, port: 21999, role: primary}]",
            file: root + "/spec.yaml")
        let again = try Credentials.resolve(spec: plain, storedAt: path)
        #expect(again.superuser == first.superuser)
        #expect(again.replication == first.replication)
        #expect(again.app == first.app)

        // A file written before `generated` was recorded: every password counts as a person's.
        try Data(#"{"superuser":{"user":"postgres","password":"p"},"replication":{"user":"replicator","password":"r"}}"#.utf8)
            .write(to: URL(fileURLWithPath: path))
        let old = try #require(try Credentials.load(path))
        #expect(!old.superuser.generated && !old.replication.generated)
    }
}
