import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// Settings the rendered postgresql.conf sets itself: those a spec may tune appear once,
/// with the spec's value; the replication cap comes from replication.maxSlotWalKeep.
@Suite("Owned settings in postgresql.conf")
struct OwnedSettingsTests {
    static func conf(parameters: String = "", replication: String = "") throws -> String {
        let yaml = """
            name: t
            postgres:
              parameters:
                work_mem: 64MB
            \(parameters)
            \(replication)
            nodes:
              - {name: a, port: 15432, role: primary}
              - {name: b, port: 15433}

            """
        let spec = try SpecLoader.parse(yaml, file: "/specs/pgcluster.yaml")
        return try Renderer(spec: spec).postgresqlConf(spec.primary)
    }

    /// The uncommented lines that set `name`.
    static func lines(_ text: String, _ name: String) -> [String] {
        text.split(separator: "\n").map(String.init).filter { $0.hasPrefix("\(name) =") }
    }

    @Test(
        "a tunable setting given in parameters is rendered once, with the spec's value",
        arguments: [
            ("max_connections", "200"), ("wal_keep_size", "1GB"), ("hot_standby_feedback", "off"),
            ("wal_sender_timeout", "30s"), ("wal_receiver_timeout", "30s"), ("wal_receiver_status_interval", "5s"),
            ("log_line_prefix", "'%m %u '"), ("log_replication_commands", "off"),
        ])
    func tunableOnce(_ name: String, _ value: String) throws {
        let text = try Self.conf(parameters: "    \(name): \(value)")
        let found = Self.lines(text, name)
        #expect(found.count == 1, "\(name) rendered \(found.count) times:\n\(text)")
        let rendered = try #require(found.first)
        let bare = value.trimmingCharacters(in: CharacterSet(charactersIn: "'"))
        #expect(rendered.contains(bare), "\(rendered)")
    }

    @Test("without parameters each tunable setting keeps pgcluster's default, once")
    func defaultsOnce() throws {
        let text = try Self.conf()
        #expect(Self.lines(text, "max_connections") == ["max_connections = 100"])
        #expect(Self.lines(text, "wal_keep_size") == ["wal_keep_size = 256MB"])
        #expect(Self.lines(text, "work_mem") == ["work_mem = '64MB'"])
    }

    @Test("max_slot_wal_keep_size: 8GB by default, the spec's cap, or -1 for unlimited")
    func slotCap() throws {
        #expect(Self.lines(try Self.conf(), "max_slot_wal_keep_size") == ["max_slot_wal_keep_size = 8GB"])
        #expect(
            Self.lines(try Self.conf(replication: "replication:\n  maxSlotWalKeep: 512MB"), "max_slot_wal_keep_size")
                == ["max_slot_wal_keep_size = 512MB"])
        #expect(
            Self.lines(try Self.conf(replication: "replication:\n  maxSlotWalKeep: unlimited"), "max_slot_wal_keep_size")
                == ["max_slot_wal_keep_size = -1"])
    }
}
