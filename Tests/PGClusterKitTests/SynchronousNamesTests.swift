import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

@Suite("synchronous_standby_names and quoting")
struct SynchronousNamesTests {
    struct NamesCase: Sendable, CustomTestStringConvertible {
        var mode: SynchronousMode
        var standbys: [String]
        var expected: String
        var testDescription: String { "\(mode) \(standbys) -> \(expected)" }
    }

    static let namesCases: [NamesCase] = [
        NamesCase(mode: .any(1), standbys: ["db_1", "db_2"], expected: #"ANY 1 ("db_1", "db_2")"#),
        NamesCase(mode: .first(1), standbys: ["sync", "async"], expected: #"FIRST 1 ("sync", "async")"#),
        NamesCase(mode: .any(2), standbys: ["db-sync", "1node", "under_score"], expected: #"ANY 2 ("db-sync", "1node", "under_score")"#),
        NamesCase(mode: .first(2), standbys: ["db-a", "db-b", "db-c"], expected: #"FIRST 2 ("db-a", "db-b", "db-c")"#),
        NamesCase(mode: .any(1), standbys: ["only"], expected: #"ANY 1 ("only")"#),
        // Not a valid node name, but the identifier rule must still hold.
        NamesCase(mode: .first(1), standbys: [#"we"ird"#], expected: #"FIRST 1 ("we""ird")"#),
        NamesCase(mode: .async, standbys: ["db_1", "db_2"], expected: ""),
        NamesCase(mode: .any(1), standbys: [], expected: ""),
        NamesCase(mode: .first(1), standbys: [], expected: ""),
        NamesCase(mode: .async, standbys: [], expected: ""),
    ]

    @Test("standbyNames", arguments: namesCases)
    func standbyNames(_ c: NamesCase) {
        #expect(c.mode.standbyNames(c.standbys) == c.expected)
    }

    @Test("standbyNames reads back as the same mode and names", arguments: namesCases.filter { !$0.expected.isEmpty })
    func roundTrip(_ c: NamesCase) throws {
        let parsed = try #require(SynchronousMode.parse(c.mode.standbyNames(c.standbys)))
        #expect(parsed.mode == c.mode)
        #expect(parsed.standbys == c.standbys)
    }

    struct ParseCase: Sendable, CustomTestStringConvertible {
        var text: String
        var mode: SynchronousMode
        var standbys: [String]
        var testDescription: String { "'\(text)'" }
    }

    static let parseCases: [ParseCase] = [
        ParseCase(text: "", mode: .async, standbys: []),
        ParseCase(text: "   ", mode: .async, standbys: []),
        // PostgreSQL's shorthands: a plain list is FIRST 1, `k (list)` is FIRST k.
        ParseCase(text: "a, b", mode: .first(1), standbys: ["a", "b"]),
        ParseCase(text: "db_1", mode: .first(1), standbys: ["db_1"]),
        ParseCase(text: "*", mode: .first(1), standbys: ["*"]),
        ParseCase(text: "2 (a, b)", mode: .first(2), standbys: ["a", "b"]),
        ParseCase(text: "2(a,b,c)", mode: .first(2), standbys: ["a", "b", "c"]),
        ParseCase(text: "ANY 1 (db_1, db_2)", mode: .any(1), standbys: ["db_1", "db_2"]),
        ParseCase(text: "any 2 (db_1, db_2, db_3)", mode: .any(2), standbys: ["db_1", "db_2", "db_3"]),
        ParseCase(text: "FIRST 1 (sync, async)", mode: .first(1), standbys: ["sync", "async"]),
        ParseCase(text: "First 3 ( a , b , c )", mode: .first(3), standbys: ["a", "b", "c"]),
        ParseCase(text: "ANY 1(\"db-1\",\"db-2\")", mode: .any(1), standbys: ["db-1", "db-2"]),
        ParseCase(text: #"ANY 1 ("1node", "db-sync")"#, mode: .any(1), standbys: ["1node", "db-sync"]),
        ParseCase(text: #"FIRST 1 ("we""ird", plain)"#, mode: .first(1), standbys: [#"we"ird"#, "plain"]),
        ParseCase(text: #""a,b", c"#, mode: .first(1), standbys: ["a,b", "c"]),
        ParseCase(text: "\"\"\"quoted\"", mode: .first(1), standbys: ["\"quoted"]),
        ParseCase(text: "  ANY 1 (a)  ", mode: .any(1), standbys: ["a"]),
        // Names that begin like a keyword are still names.
        ParseCase(text: "anyone, firstly", mode: .first(1), standbys: ["anyone", "firstly"]),
    ]

    @Test("parse", arguments: parseCases)
    func parse(_ c: ParseCase) throws {
        let parsed = try #require(SynchronousMode.parse(c.text))
        #expect(parsed.mode == c.mode)
        #expect(parsed.standbys == c.standbys)
    }

    @Test("parse refuses a keyword without a count", arguments: ["ANY x (a, b)", "FIRST (a, b)", "any  (a)"])
    func parseBad(_ text: String) {
        #expect(SynchronousMode.parse(text) == nil)
    }

    @Test("modes from the spec's words", arguments: [
        ("async", 1, SynchronousMode.async), ("any", 2, .any(2)), ("first", 1, .first(1)),
    ])
    func modeFromSpec(_ mode: String, _ count: Int, _ expected: SynchronousMode) {
        let parsed = SynchronousMode(mode: mode, count: count)
        #expect(parsed == expected)
        #expect(parsed?.modeName == mode)
        #expect(SynchronousMode(mode: "ANY", count: 1) == nil)
    }

    @Test("mode descriptions and counts")
    func descriptions() {
        #expect(SynchronousMode.async.description == "async")
        #expect(SynchronousMode.any(2).description == "ANY 2")
        #expect(SynchronousMode.first(1).description == "FIRST 1")
        #expect(SynchronousMode.async.count == 0)
        #expect(SynchronousMode.any(3).count == 3)
    }

    @Test(
        "confValue quotes postgresql.conf values",
        arguments: [
            ("", "''"),
            ("1GB", "'1GB'"),
            ("on", "'on'"),
            ("it's", "'it''s'"),
            ("''", "''''''"),
            (#"C:\data"#, #"'C:\\data'"#),
            (#"\'"#, #"'\\'''"#),
            (#"ANY 1 ("db_1", "db_2")"#, #"'ANY 1 ("db_1", "db_2")'"#),
            ("%m [%p] db_0 ", "'%m [%p] db_0 '"),
            ("/tmp/pgcluster demo/db_0/run", "'/tmp/pgcluster demo/db_0/run'"),
            // A quoted value may not span lines: line breaks are written as escapes.
            ("one\ntwo", #"'one\ntwo'"#),
            ("one\r\ntwo", #"'one\r\ntwo'"#),
            ("tab\there", "'tab\there'"),
        ])
    func confValue(_ value: String, _ expected: String) {
        #expect(ConfigText.confValue(value) == expected)
    }

    @Test(
        "conninfoPair quotes libpq values when needed",
        arguments: [
            ("host", "127.0.0.1", "host=127.0.0.1"),
            ("application_name", "db-sync", "application_name=db-sync"),
            ("application_name", "1node", "application_name=1node"),
            ("passfile", "/tmp/pgcluster-demo/pgpass", "passfile=/tmp/pgcluster-demo/pgpass"),
            ("password", "", "password=''"),
            ("passfile", "/tmp/my dir/pgpass", "passfile='/tmp/my dir/pgpass'"),
            ("passfile", "/tmp/my\tdir/pgpass", "passfile='/tmp/my\tdir/pgpass'"),
            ("passfile", "/tmp/my\ndir/pgpass", "passfile='/tmp/my\ndir/pgpass'"),
            ("user", "o'brien", #"user='o\'brien'"#),
            ("passfile", #"C:\pgpass"#, #"passfile='C:\\pgpass'"#),
            ("options", "-c a=b", "options='-c a=b'"),
            ("application_name", "a=b", "application_name='a=b'"),
        ])
    func conninfoPair(_ key: String, _ value: String, _ expected: String) {
        #expect(ConfigText.conninfoPair(key, value) == expected)
    }

    @Test("conninfo joins pairs in order")
    func conninfo() {
        let text = ConfigText.conninfo([("host", "db"), ("port", "5432"), ("passfile", "/a b/pgpass")])
        #expect(text == "host=db port=5432 passfile='/a b/pgpass'")
    }

    @Test("SQL literals and identifiers")
    func sql() {
        #expect(ConfigText.sqlLiteral("it's") == "'it''s'")
        #expect(ConfigText.sqlLiteral(#"ANY 1 ("a")"#) == #"'ANY 1 ("a")'"#)
        #expect(ConfigText.identifier("db-1") == #""db-1""#)
        #expect(ConfigText.identifier(#"a"b"#) == #""a""b""#)
    }

    @Test("primary_conninfo of a standby names it and never holds a password")
    func primaryConninfo() throws {
        let yaml = """
            name: odd
            replication:
              password: "s3cret pass'word"
            local:
              dir: /tmp/pgcluster odd
            nodes:
              - {name: db-0, port: 15432, role: primary}
              - {name: 1node, port: 15433}

            """
        let spec = try SpecLoader.parse(yaml, file: "/specs/odd.yaml")
        let renderer = Renderer(spec: spec)
        let standby = try #require(spec.node(named: "1node"))
        let conninfo = renderer.primaryConninfo(standby, upstream: spec.primary)
        #expect(
            conninfo
                == "host=127.0.0.1 port=15432 user=replicator application_name=1node passfile='/tmp/pgcluster odd/pgpass' connect_timeout=2"
                + " sslmode=verify-full sslrootcert='/tmp/pgcluster odd/1node/tls/ca.crt'"
        )
        #expect(!conninfo.contains("s3cret"))
        #expect(renderer.slotName(standby) == "pgcluster_1node")
        #expect(renderer.slotName(spec.primary) == "pgcluster_db_0")
        let conf = try renderer.standbyConf(standby, upstream: spec.primary)
        #expect(conf.contains("primary_conninfo = '\(conninfo.replacingOccurrences(of: "'", with: "''"))'\n"))
        #expect(conf.contains("primary_slot_name = 'pgcluster_1node'\n"))
        let primaryConf = try renderer.postgresqlConf(spec.primary)
        #expect(primaryConf.contains("synchronous_standby_names = ''\n"))
    }

    @Test("a primary's synchronous_standby_names lists every standby, quoted")
    func primaryNames() throws {
        let yaml = """
            name: odd
            replication:
              synchronous: {mode: any, count: 2}
            nodes:
              - {name: db-sync, port: 15432}
              - {name: 1node, port: 15433, role: primary}
              - {name: under_score, port: 15434}

            """
        let spec = try SpecLoader.parse(yaml, file: "/specs/odd.yaml")
        let renderer = Renderer(spec: spec)
        let primary = try renderer.postgresqlConf(spec.primary)
        #expect(primary.contains(#"synchronous_standby_names = 'ANY 2 ("db-sync", "under_score")'"#))
        // A standby is not the primary: it asks for nobody until it is promoted.
        let standby = try renderer.postgresqlConf(try #require(spec.node(named: "db-sync")))
        #expect(standby.contains("synchronous_standby_names = ''\n"))
    }

    @Test("slots off: no primary_slot_name")
    func noSlots() throws {
        let yaml = "name: t\nreplication: {slots: false}\nnodes:\n  - {name: a, port: 15432, role: primary}\n  - {name: b, port: 15433}\n"
        let spec = try SpecLoader.parse(yaml, file: "/specs/t.yaml")
        let conf = try Renderer(spec: spec).standbyConf(try #require(spec.node(named: "b")), upstream: spec.primary)
        #expect(!conf.contains("primary_slot_name"))
        #expect(conf.contains("primary_conninfo = "))
    }
}
