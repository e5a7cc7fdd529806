import Foundation
import Testing

@testable import PGClusterRules

@Suite("Major-version check: PG_VERSION against postgres.version")
struct MajorVersionTests {
    static func spec(version: Int = 15) throws -> ClusterSpec {
        try SpecLoader.parse(
            """
            name: demo
            postgres: {version: \(version)}
            nodes:
              - {name: db_0, port: 15432, role: primary}
              - {name: db_1, port: 15433}

            """, file: "/tmp/pgcluster.yaml")
    }

    static func found(_ db0: String?, _ db1: String?) -> [MajorVersion.Found] {
        [
            .init(node: "db_0", dataDir: "/d/db_0/data", pgVersion: db0),
            .init(node: "db_1", dataDir: "/d/db_1/data", pgVersion: db1),
        ]
    }

    @Test(
        "accepted: the same version, no data, an empty file",
        arguments: [("15\n", "15\n"), ("15", nil), (nil, nil), ("", "15\n"), (" 15 \n", "15")] as [(String?, String?)])
    func accepted(_ db0: String?, _ db1: String?) throws {
        try MajorVersion.check(spec: try Self.spec(), found: Self.found(db0, db1))
    }

    @Test("refused, exit 2, naming the node, the directory and both versions")
    func refused() throws {
        let error = try #require(throws: ClusterError.self) {
            try MajorVersion.check(spec: try Self.spec(), found: Self.found("15\n", "14\n"))
        }
        #expect(error.exitCode == .refused)
        #expect(
            error.message
                == "db_1: its data directory /d/db_1/data is PostgreSQL 14 (PG_VERSION), but /tmp/pgcluster.yaml says postgres.version 15: nothing was changed")
        #expect(error.details.contains { $0.contains("pg_upgrade") })
        #expect(error.details.contains { $0.contains("postgres.version: 14") })
    }

    @Test("every node of another version is named; a newer data directory is refused too")
    func several() throws {
        let error = try #require(throws: ClusterError.self) {
            try MajorVersion.check(spec: try Self.spec(version: 14), found: Self.found("16\n", "15\n"))
        }
        #expect(error.message.hasPrefix("db_0: its data directory /d/db_0/data is PostgreSQL 16"))
        #expect(error.details.first == "db_1 is PostgreSQL 15 too (/d/db_1/data)")
    }
}
