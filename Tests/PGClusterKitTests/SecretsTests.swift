import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// Passwords never appear in errors, descriptions or command lines.
@Suite("secrets stay secret")
struct SecretsTests {
    let secret = "pgc-s3cret-Ã-pass"

    @Test("a failed connection's error does not hold the password")
    func connectionError() throws {
        // Port 1 on loopback: nothing listens there, the connection is refused at once.
        let target = ConnectionTarget(host: "127.0.0.1", port: 1, user: "postgres", password: secret, connectTimeout: 1)
        #expect(!target.description.contains(secret))
        do {
            _ = try PGConnection.connect(target)
            Issue.record("connecting to port 1 succeeded")
        } catch {
            #expect(error.description.contains("127.0.0.1"))
            #expect(!error.description.contains(secret))
            #expect(!String(describing: error).contains(secret))
        }
        do {
            _ = try PGConnection.connect(conninfo: "host=127.0.0.1 port=1 connect_timeout=1", password: secret)
            Issue.record("connecting to port 1 succeeded")
        } catch {
            #expect(!String(describing: error).contains(secret))
        }
    }

    @Test("credentials and commands describe themselves without passwords")
    func descriptions() async throws {
        let credentials = Credentials(
            superuser: .init(user: "postgres", password: secret), replication: .init(user: "replicator", password: secret))
        #expect(!credentials.description.contains(secret))
        #expect(!String(describing: credentials).contains(secret))

        let command = Command("/bin/false", ["--flag"], environment: ["PGPASSWORD": secret])
        #expect(!command.description.contains(secret))
        do {
            try await LocalRunner().check(command, what: "a step that fails")
            Issue.record("/bin/false succeeded")
        } catch {
            #expect(error.message.contains("a step that fails failed (exit 1)"))
            #expect(!error.description.contains(secret))
        }
    }

    @Test("the passfile line escapes ':' and '\\\\' so the password is read back whole")
    func passfile() {
        let credentials = Credentials(
            superuser: .init(user: "postgres", password: "x"), replication: .init(user: "replicator", password: "a:b\\c"))
        #expect(credentials.replicationPassfile == "*:*:*:replicator:a\\:b\\\\c\n")
    }
}
