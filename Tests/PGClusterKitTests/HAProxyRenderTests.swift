import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// `render`'s haproxy.cfg (README.md, "Health endpoints and HAProxy"; docs/ARCHITECTURE.md, "pgcluster watch"): written only with
/// watch.http, timed from watch.interval, checked by Debian's haproxy where it is installed.
/// The full text of the etcd example is a golden file (Golden/etcd/haproxy.cfg).
@Suite("HAProxy configuration")
struct HAProxyRenderTests {
    static func spec(watch: String, routing: String = "") throws -> ClusterSpec {
        let yaml = "name: shop\nwatch:\n" + watch + routing
            + "nodes:\n  - {name: a, host: 10.0.0.1, port: 5432, role: primary}\n  - {name: b, host: 10.0.0.2, port: 5432}\n"
        return try SpecLoader.parse(yaml, file: "/srv/pgcluster.yaml")
    }

    @Test("no watch.http, no haproxy.cfg")
    func absent() throws {
        let spec = try Self.spec(watch: "  interval: 1\n")
        #expect(try Renderer(spec: spec).haproxyConf() == nil)
        #expect(try RenderCommand.files(Renderer(spec: spec)).allSatisfy { $0.path != "haproxy.cfg" })
    }

    @Test(
        "timings follow watch.interval: inter, downinter and the check timeout",
        arguments: [
            (0.5, "inter 500ms downinter 100ms", "timeout check 1000ms"),
            (0.25, "inter 250ms downinter 100ms", "timeout check 1000ms"),
            (0.05, "inter 50ms downinter 50ms", "timeout check 1000ms"),
            (2.0, "inter 2000ms downinter 400ms", "timeout check 4000ms"),
        ])
    func timings(_ interval: Double, _ inter: String, _ timeout: String) throws {
        let spec = try Self.spec(watch: "  interval: \(interval)\n  failoverAfter: 5\n  http: 10.0.0.9:8008\n")
        let text = try #require(try Renderer(spec: spec).haproxyConf())
        #expect(text.contains("default-server \(inter) fall 1 rise 1 on-marked-down shutdown-sessions"))
        #expect(text.contains(timeout))
    }

    @Test("node i is checked on port + i of watch.http; frontends on routing; a wildcard bind is checked on loopback")
    func servers() throws {
        let spec = try Self.spec(watch: "  http: 10.0.0.9:9100\n", routing: "routing: {rw: 6432, ro: 6433}\n")
        let text = try #require(try Renderer(spec: spec).haproxyConf())
        #expect(text.contains("server a 10.0.0.1:5432 check addr 10.0.0.9 port 9100\n"))
        #expect(text.contains("server b 10.0.0.2:5432 check addr 10.0.0.9 port 9101\n"))
        #expect(text.contains("bind *:6432\n") && text.contains("bind *:6433\n"))
        #expect(text.contains("option httpchk OPTIONS /primary") && text.contains("option httpchk OPTIONS /replica"))
        #expect(text.contains("http-check expect status 200"))
        #expect(text.contains("use_backend shop_replicas if { nbsrv(shop_replicas) gt 0 }"))

        let open = try Self.spec(watch: "  http: 0.0.0.0:8008\n  httpPublic: true\n")
        #expect(try #require(try Renderer(spec: open).haproxyConf()).contains("check addr 127.0.0.1 port 8008"))
    }

    @Test("haproxy -c accepts the rendered file")
    func haproxyAccepts() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/haproxy") else {
            print("haproxy not installed: skipping haproxy -c (scripts/ensure-deps.sh installs it)")
            return
        }
        let spec = try Self.spec(watch: "  http: 127.0.0.1:8008\n")
        let file = NSTemporaryDirectory() + "pgcluster-haproxy-\(UUID().uuidString).cfg"
        try #require(try Renderer(spec: spec).haproxyConf()).write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let result = Spawn.run(["/usr/sbin/haproxy", "-c", "-f", file], environment: [], stdout: .pipe, stderr: .pipe)
        guard case .success(let outcome) = result else {
            Issue.record("haproxy -c did not run: \(result)")
            return
        }
        #expect(outcome.status == 0, "\(outcome.output)")
    }
}
