import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// Issue 25: the `hooks:` and `app:` sections, and what a running watcher may reload.
@Suite("hooks, app and spec reload")
struct HooksAndReloadTests {
    static let nodes = """
        nodes:
          - {name: db_0, port: 15432, role: primary}
          - {name: db_1, port: 15433}

        """

    func parse(_ yaml: String) throws -> ClusterSpec {
        try SpecLoader.parse("name: t\n" + yaml + Self.nodes, file: "/srv/t/pgcluster.yaml")
    }

    func problems(_ yaml: String) -> [String] {
        do {
            _ = try parse(yaml)
            return []
        } catch {
            return (error as? SpecError)?.problems.map { "\($0.key): \($0.reason)" } ?? ["\(error)"]
        }
    }

    @Test("a hook is a line for /bin/sh -c or an argument list; the timeout is a duration")
    func hooks() throws {
        let spec = try parse("hooks:\n  onRoleChange: echo $PGCLUSTER_NEW_PRIMARY > vip\n  onFailover: [/usr/bin/logger, failover]\n  timeout: 2s\n")
        #expect(spec.hooks.onRoleChange?.argv == ["/bin/sh", "-c", "echo $PGCLUSTER_NEW_PRIMARY > vip"])
        #expect(spec.hooks.onFailover?.argv == ["/usr/bin/logger", "failover"])
        #expect(spec.hooks.timeout == 2)
        #expect(try parse("").hooks == HookSettings())
    }

    @Test(
        "bad hooks and app sections are refused, naming the key",
        arguments: [
            ("hooks:\n  onRoleChange: [move-vip]\n", "hooks.onRoleChange: the program 'move-vip' must be an absolute path"),
            ("hooks:\n  timeout: forever\n", "hooks.timeout: 'forever' is not a duration"),
            ("hooks:\n  onPromote: x\n", "hooks.onPromote: unknown key"),
            ("app:\n  user: postgres\n", "app.user: must differ"),
            ("app:\n  user: shop\n  database: template1\n", "app.database: 'template1' is PostgreSQL's own"),
            ("app:\n  user: Shop-App\n", "app.user: 'Shop-App' is not a valid role name"),
        ])
    func refused(yaml: String, problem: String) {
        let found = problems(yaml)
        #expect(found.contains { $0.hasPrefix(problem) }, "\(found)")
    }

    @Test("app: the database defaults to the user's name")
    func app() throws {
        #expect(try parse("app:\n  user: shop\n").app == AppSettings(user: "shop", database: "shop"))
        #expect(try parse("app: {user: shop, database: orders}\n").app == AppSettings(user: "shop", database: "orders"))
        #expect(try parse("").app == nil)
    }

    @Test("a running watcher takes nodes, priorities and hooks, never a new name, backend, local.dir or store")
    func reloadRules() throws {
        let old = try parse("")
        var added = old
        added.nodes.append(NodeSpec(name: "db_2", port: 15434))
        added.nodes[1].priority = 0
        #expect(SpecReload.refusal(old: old, new: added) == nil)
        #expect(SpecReload.summary(old: old, new: added) == "nodes added: db_2; nodes changed: db_1")
        var renamed = old
        renamed.name = "u"
        #expect(SpecReload.refusal(old: old, new: renamed)?.contains("name (t -> u)") == true)
        var moved = old
        moved.local.dir = "/elsewhere"
        moved.backend = .ssh
        #expect(SpecReload.refusal(old: old, new: moved)?.hasPrefix("backend (local -> ssh), local.dir cannot change") == true)
        #expect(SpecReload.summary(old: old, new: old) == "no change that the watcher uses")
        // The order moves the health ports: said.
        var reordered = old
        reordered.nodes.reverse()
        #expect(SpecReload.summary(old: old, new: reordered) == "nodes reordered: db_1, db_0")
        #expect(SpecReload.summary(old: old, new: added) == "nodes added: db_2; nodes changed: db_1")
    }

    @Test("the event's environment, and a failing or hanging hook is a warning, never an error")
    func runHooks() async throws {
        let folder = "/tmp/pgc-hooks-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var spec = try parse("")
        spec.file = "\(folder)/pgcluster.yaml"
        spec.hooks = HookSettings(
            onRoleChange: .shell("env | grep ^PGCLUSTER_ | sort > event; exit 3"), onFailover: .shell("sleep 60"), timeout: 5)
        let event = RoleChange(cluster: "t", newPrimary: "db_1", oldPrimary: "db_0", timeline: 2, reason: .failover, by: "watch")
        let started = Date()
        let warnings = await Hooks.run(event, spec: spec)
        // Well under the hanging hook's 60 s (generous: the unit suite runs in parallel on 2 cores).
        #expect(Date().timeIntervalSince(started) < 30)
        #expect(warnings.count == 2, "\(warnings)")
        #expect(warnings.first?.contains("hook onRoleChange failed (exit 3") == true, "\(warnings)")
        #expect(warnings.last?.contains("hook onFailover failed") == true && warnings.last?.contains("did not end within") == true, "\(warnings)")
        let written = try String(contentsOfFile: "\(folder)/event", encoding: .utf8)
        #expect(
            written == """
                PGCLUSTER_BY=watch
                PGCLUSTER_CLUSTER=t
                PGCLUSTER_NEW_PRIMARY=db_1
                PGCLUSTER_NEW_PRIMARY_HOST=127.0.0.1
                PGCLUSTER_NEW_PRIMARY_PORT=15433
                PGCLUSTER_OLD_PRIMARY=db_0
                PGCLUSTER_REASON=failover
                PGCLUSTER_TIMELINE=2

                """)
        // A switchover runs onRoleChange only.
        spec.hooks.onRoleChange = .arguments(["/bin/true"])
        #expect(await Hooks.run(RoleChange(cluster: "t", newPrimary: "db_0", oldPrimary: "db_1", timeline: 3, reason: .switchover), spec: spec).isEmpty)
    }
}
