import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// One HTTP/1.0 request over a plain socket, as HAProxy's checks send it: the status code
/// and the body (nil when nothing answers on the port).
func httpRequest(_ method: String = "GET", port: Int, path: String, timeout: Double = 5) -> (code: Int, body: String)? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { return nil }
    let request = Array("\(method) \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".utf8)
    guard send(fd, request, request.count, Int32(MSG_NOSIGNAL)) == request.count else { return nil }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n <= 0 { break }
        response += buffer[0..<n]
    }
    let text = String(decoding: response, as: UTF8.self)
    let statusLine = text.split(separator: "\r\n", maxSplits: 1).first ?? ""
    let parts = statusLine.split(separator: " ")
    guard parts.count >= 2, let code = Int(parts[1]) else { return nil }
    let body = text.range(of: "\r\n\r\n").map { String(text[$0.upperBound...]) } ?? ""
    return (code, body)
}

/// A program the test starts as its child (HAProxy), its output in a file, stopped by PID.
final class ChildProcess: @unchecked Sendable {
    let pid: pid_t
    let logPath: String
    private var reaped = false

    init(_ argv: [String], logPath: String) throws {
        self.logPath = logPath
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let cArgs = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        // No signal blocked or ignored from this process: PgBouncer must get the SIGHUP a hook sends.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGINT, SIGTERM, SIGQUIT, SIGHUP] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var child: pid_t = 0
        let rc = posix_spawn(&child, argv[0], &actions, &attributes, cArgs, environ)
        try #require(rc == 0, "cannot start \(argv[0]): \(String(cString: strerror(rc)))")
        pid = child
    }

    var isRunning: Bool {
        if reaped { return false }
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == pid { reaped = true }
        return !reaped
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// SIGTERM, SIGKILL after 10 s; always reaped.
    func stop() async {
        guard isRunning else { return }
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(10)
        while isRunning && Date() < deadline { try? await Task.sleep(for: .milliseconds(50)) }
        if isRunning {
            kill(pid, SIGKILL)
            while isRunning { try? await Task.sleep(for: .milliseconds(50)) }
        }
    }
}

extension TestCluster {
    /// Polls node `index`'s endpoint until it answers `code`.
    func waitForCode(_ code: Int, port: Int, path: String, timeout: Double = 20) async -> Bool {
        await eventually(timeout) { httpRequest(port: port, path: path)?.code == code }
    }

    /// A libpq connection string through HAProxy's frontend on `port`, verifying the
    /// server's certificate as an application would (the nodes' certificates name 127.0.0.1).
    func proxyConninfo(port: Int) throws -> String {
        let credentials = try credentials()
        let ssl = caFile.map { "sslmode=verify-full sslrootcert=\($0)" } ?? "sslmode=disable"
        return "host=127.0.0.1 port=\(port) dbname=postgres user=\(credentials.superuser.user) connect_timeout=2 \(ssl)"
    }
}

/// Issue 22: Patroni's health endpoints served by `watch`, /metrics, and HAProxy from the
/// rendered haproxy.cfg following a failover. PostgreSQL on 22200-22299, the endpoints on
/// 22300-22399, HAProxy's frontends on 22400-22419.
@Suite("watch.http: health endpoints, metrics and HAProxy on real servers", .serialized, .clusterLimit)
struct HealthEndpointTests {
    static let checkPaths = ["/primary", "/master", "/read-write", "/replica", "/read-only", "/health", "/liveness", "/readiness"]

    /// The code of every path on one node's port, for all three methods.
    func codes(_ cluster: TestCluster, port: Int, extra: [String] = []) -> [String: Int] {
        var result: [String: Int] = [:]
        for path in Self.checkPaths + extra {
            for method in ["GET", "HEAD", "OPTIONS"] {
                let code = httpRequest(method, port: port, path: path)?.code ?? -1
                if method == "GET" { result[path] = code } else if result[path] != code { result[path + " " + method] = code }
            }
        }
        return result
    }

    @Test("every path on a primary, a streaming, a stopped and a lagging standby; a paused watcher serves; /cluster; /metrics passes promtool")
    func everyPath() async throws {
        try await withWatchedCluster(
            name: "h-paths", basePort: 22200, standbys: 3, synchronous: "{mode: async}", watch: "  http: 127.0.0.1:22300\n"
        ) { cluster, watcher in
            let watcher = try #require(watcher)
            let port = { (node: String) in 22300 + Int(node.dropFirst(4))! }
            #expect(await cluster.waitForCode(200, port: port("node0"), path: "/primary"), "\(watcher.log)")
            #expect(await cluster.waitForCode(200, port: port("node3"), path: "/replica"), "\(watcher.log)")

            let primary = codes(cluster, port: port("node0"))
            #expect(
                primary == [
                    "/primary": 200, "/master": 200, "/read-write": 200, "/replica": 503, "/read-only": 200, "/health": 200,
                    "/liveness": 200, "/readiness": 200,
                ], "\(primary)")
            let streaming = codes(cluster, port: port("node1"))
            #expect(
                streaming == [
                    "/primary": 503, "/master": 503, "/read-write": 503, "/replica": 200, "/read-only": 200, "/health": 200,
                    "/liveness": 200, "/readiness": 200,
                ], "\(streaming)")
            // Under `async` no standby is synchronous; /leader is the primary.
            #expect(httpRequest(port: port("node1"), path: "/async")?.code == 200)
            #expect(httpRequest(port: port("node1"), path: "/sync")?.code == 503)
            #expect(httpRequest(port: port("node1"), path: "/leader")?.code == 503)
            #expect(httpRequest(port: port("node0"), path: "/leader")?.code == 200)
            #expect(httpRequest(port: port("node0"), path: "/read-only-sync")?.code == 200)
            #expect(httpRequest(port: port("node1"), path: "/patroni")?.code == 404)
            #expect(httpRequest(port: port("node1"), path: "/replica?lag=soon")?.code == 400)
            #expect(httpRequest("POST", port: port("node1"), path: "/replica")?.code == 405)

            // Paused, the watcher leaves a stopped standby stopped, and still serves.
            #expect(await cluster.run(["pause"]).status == 0)
            #expect(await cluster.run(["stop", "node2"]).status == 0)
            #expect(await cluster.waitForCode(503, port: port("node2"), path: "/health"), "\(watcher.log)")
            let stopped = codes(cluster, port: port("node2"))
            #expect(
                stopped == [
                    "/primary": 503, "/master": 503, "/read-write": 503, "/replica": 503, "/read-only": 503, "/health": 503,
                    "/liveness": 200, "/readiness": 503,
                ], "\(stopped)")

            // Lagging: node3 replays nothing while the primary writes ~20 MB of WAL.
            try cluster.sql("node3", "SELECT pg_wal_replay_pause()")
            try cluster.sql("node0", "CREATE TABLE filler AS SELECT g, repeat('x', 2000) AS pad FROM generate_series(1, 10000) AS g")
            #expect(await cluster.waitForCode(503, port: port("node3"), path: "/replica?lag=1MB"), "\(watcher.log)")
            let lagging = codes(cluster, port: port("node3"), extra: ["/replica?lag=1048576", "/replica?lag=1GB", "/read-only?lag=1MB"])
            #expect(lagging["/replica?lag=1048576"] == 503, "\(lagging)")
            #expect(lagging["/read-only?lag=1MB"] == 503, "\(lagging)")
            #expect(lagging["/replica?lag=1GB"] == 200, "\(lagging)")
            #expect(lagging["/replica"] == 200 && lagging["/health"] == 200 && lagging["/readiness"] == 200, "\(lagging)")
            #expect(lagging["/primary"] == 503, "\(lagging)")
            // Seconds: node3's replay delay grows while its replay stays paused and the
            // primary keeps committing.
            let lagsInSeconds = await cluster.eventually(30) {
                try cluster.sql("node0", "INSERT INTO filler VALUES (0, 'y')")
                return httpRequest(port: port("node3"), path: "/replica?lag=1s")?.code == 503
            }
            let lags = (try? cluster.sql("node0", "SELECT application_name, replay_lag::text FROM pg_stat_replication").rows) ?? []
            #expect(lagsInSeconds, "\(lags)")
            #expect(httpRequest(port: port("node3"), path: "/replica?lag=1h")?.code == 200)
            #expect(httpRequest(port: port("node1"), path: "/replica?lag=1s")?.code == 200)
            // Resumed, it catches up and passes the byte limit again.
            try cluster.sql("node3", "SELECT pg_wal_replay_resume()")
            #expect(await cluster.waitForCode(200, port: port("node3"), path: "/replica?lag=1MB"), "\(watcher.log)")

            // /cluster: the status document with "leader", on every port.
            let document = try #require(httpRequest(port: port("node2"), path: "/cluster"))
            #expect(document.code == 200)
            let json = try #require(try JSONSerialization.jsonObject(with: Data(document.body.utf8)) as? [String: Any])
            #expect(json["leader"] as? Bool == true, "\(document.body)")
            #expect(json["paused"] as? Bool == true, "\(document.body)")
            #expect(json["primary"] as? String == "node0", "\(document.body)")
            #expect((json["nodes"] as? [[String: Any]])?.count == 4, "\(document.body)")

            // /metrics: every family for every node, and promtool accepts the text.
            let metrics = try #require(httpRequest(port: port("node1"), path: "/metrics"))
            #expect(metrics.code == 200)
            for family in WatchMetrics.nodeFamilies {
                for node in cluster.nodeNames {
                    #expect(
                        metrics.body.contains("\(family){cluster=\"h-paths\",node=\"\(node)\"}")
                            || metrics.body.contains("\(family){node=\"\(node)\",cluster=\"h-paths\"}"),
                        "\(family) for \(node) missing:\n\(metrics.body)")
                }
            }
            for family in WatchMetrics.watcherFamilies {
                #expect(metrics.body.contains("\n\(family){"), "\(family) missing:\n\(metrics.body)")
            }
            #expect(metrics.body.contains("pgcluster_watch_paused{cluster=\"h-paths\"} 1"), "\(metrics.body)")
            #expect(metrics.body.contains("pgcluster_watch_leader{cluster=\"h-paths\"} 1"), "\(metrics.body)")
            try checkWithPromtool(metrics.body, folder: cluster.root)

            // Resumed, the watcher starts node2 itself. The servers it starts hold none of its
            // sockets: its listening sockets were inherited by the postgres that pg_ctl left
            // running, and the health ports stayed bound after the watcher stopped.
            #expect(await cluster.run(["resume"]).status == 0)
            #expect(await cluster.waitForCode(200, port: port("node2"), path: "/replica"), "\(watcher.log)")

            // Liveness is the loop's: once the watcher stops, nothing answers at all, and the
            // ports are free for the next watcher.
            #expect(await watcher.stop() == 0)
            #expect(httpRequest(port: port("node0"), path: "/liveness") == nil)
            for node in cluster.nodeNames {
                #expect(PortProbe.isFree(host: "127.0.0.1", port: port(node)), "\(node)'s health port is still bound after the watcher stopped")
            }
        }
    }

    @Test("a watcher that does not lead serves from its own probes, with \"leader\": false; the leader's ports follow a reordered spec")
    func follower() async throws {
        try await withWatchedCluster(name: "h-follow", basePort: 22220, watch: "  http: 127.0.0.1:22320\n") { cluster, watcher in
            let watcher = try #require(watcher)
            #expect(await cluster.waitForCode(200, port: 22320, path: "/primary"), "\(watcher.log)")
            // A second watcher with the same ports cannot serve them: it says which and exits 1.
            let clash = await cluster.run(["watch"], timeout: 60)
            #expect(clash.status == 1, "\(clash.stderr)")
            #expect(clash.stderr.contains("cannot serve node0's health endpoints on 127.0.0.1:22320"), "\(clash.stderr)")
            // The same cluster (same local.dir), its endpoints on other ports: the second
            // watcher finds the leadership taken and only observes.
            let text = try String(contentsOfFile: cluster.specPath, encoding: .utf8)
            let followerSpec = "\(cluster.root)/follower.yaml"
            try text.replacingOccurrences(of: "http: 127.0.0.1:22320", with: "http: 127.0.0.1:22330")
                .write(toFile: followerSpec, atomically: true, encoding: .utf8)
            let follower = try ChildProcess(
                [TestCluster.binary, "watch", "-f", followerSpec], logPath: "\(cluster.root)/follower.log")
            do {
                #expect(await cluster.waitForCode(200, port: 22330, path: "/primary"), "\(follower.log)")
                #expect(httpRequest(port: 22331, path: "/replica")?.code == 200)
                #expect(httpRequest(port: 22330, path: "/liveness")?.code == 200)
                let document = try #require(httpRequest(port: 22331, path: "/cluster"))
                let json = try #require(try JSONSerialization.jsonObject(with: Data(document.body.utf8)) as? [String: Any])
                #expect(json["leader"] as? Bool == false, "\(document.body)")
                // ANY 1: both standbys are in the quorum, none is FIRST's `sync`.
                #expect(await cluster.waitForCode(200, port: 22321, path: "/quorum"), "\(watcher.log)")
                #expect(httpRequest(port: 22322, path: "/read-only-quorum")?.code == 200)
                #expect(httpRequest(port: 22321, path: "/sync")?.code == 503)
                #expect(httpRequest(port: 22321, path: "/async")?.code == 503)
                let leader = try #require(httpRequest(port: 22321, path: "/cluster"))
                #expect(leader.body.contains("\"leader\" : true"), "\(leader.body)")
                let metrics = try #require(httpRequest(port: 22332, path: "/metrics"))
                #expect(metrics.body.contains("pgcluster_watch_leader{cluster=\"h-follow\"} 0"), "\(metrics.body)")
                // The leader's spec reordered (node2 before node1) and reloaded: the ports move
                // with the nodes, node i of the new order on port + i, as the haproxy.cfg
                // rendered from the new spec asks. (They kept the old order.)
                func block(_ node: String) -> String {
                    "  - name: \(node)\n    host: 127.0.0.1\n    port: \(cluster.port(node))\n"
                }
                let specText = try String(contentsOfFile: cluster.specPath, encoding: .utf8)
                try #require(specText.contains(block("node1") + block("node2")), "\(specText)")
                try specText.replacingOccurrences(of: block("node1") + block("node2"), with: block("node2") + block("node1"))
                    .write(toFile: cluster.specPath, atomically: true, encoding: .utf8)
                kill(watcher.pid, SIGHUP)
                #expect(await cluster.eventually(20) { httpRequest(port: 22321, path: "/replica")?.body.contains("node2") == true }, "\(watcher.log)")
                #expect(httpRequest(port: 22322, path: "/replica")?.body.contains("node1") == true)
                #expect(httpRequest(port: 22320, path: "/primary")?.code == 200)
                // What the follower sees follows the servers: a stopped standby is seen stopped,
                // by the leader on node2's new port.
                #expect(await cluster.run(["pause"]).status == 0)
                #expect(await cluster.run(["stop", "node2"]).status == 0)
                #expect(await cluster.waitForCode(503, port: 22332, path: "/health"), "\(follower.log)")
                #expect(await cluster.waitForCode(503, port: 22321, path: "/health"), "\(watcher.log)")
                #expect(httpRequest(port: 22322, path: "/health")?.code == 200, "\(watcher.log)")
                // destroy while a watcher leads: refused, naming it, nothing removed.
                let destroy = await cluster.run(["destroy", "--yes"])
                #expect(destroy.status == 2 && destroy.stderr.contains("pgcluster watch ("), "\(destroy.stderr)")
                #expect(cluster.primaries() == ["node0"])
            } catch {
                await follower.stop()
                throw error
            }
            await follower.stop()
        }
    }

    func checkWithPromtool(_ text: String, folder: String) throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/promtool") else {
            print("promtool not installed (Debian package prometheus): skipping the check of /metrics")
            return
        }
        let file = "\(folder)/metrics.txt"
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        let result = TestCluster.spawnWithFiles(["/bin/sh", "-c", "/usr/bin/promtool check metrics < '\(file)'"], timeout: 30)
        #expect(result.status == 0, "promtool check metrics refused /metrics:\n\(result.stdout)\(result.stderr)\n\(text)")
    }

    @Test("HAProxy from the rendered haproxy.cfg: kill -9 of the primary, 4 writers resume on the new primary with nothing acknowledged lost; readers never land on a primary while a standby streams")
    func haproxyFollowsFailover() async throws {
        let haproxy = "/usr/sbin/haproxy"
        try #require(FileManager.default.isExecutableFile(atPath: haproxy), "haproxy is not installed: run scripts/ensure-deps.sh")
        try await withWatchedCluster(
            name: "h-proxy", basePort: 22210, watch: "  http: 127.0.0.1:22310\nrouting: {rw: 22400, ro: 22401}\n"
        ) { cluster, watcher in
            let watcher = try #require(watcher)
            let out = "\(cluster.root)/rendered"
            let render = await cluster.run(["render", "--out", out])
            try #require(render.status == 0, "\(render.stderr)")
            let config = "\(out)/haproxy.cfg"
            let check = TestCluster.spawnWithFiles([haproxy, "-c", "-f", config], timeout: 30)
            #expect(check.status == 0, "haproxy -c refused the rendered config:\n\(check.stdout)\(check.stderr)")
            let proxy = try ChildProcess([haproxy, "-f", config, "-db"], logPath: "\(cluster.root)/haproxy.log")
            // A frontend port taken by another program makes HAProxy exit at once; say so
            // rather than test against whatever holds the port.
            try? await Task.sleep(for: .milliseconds(500))
            try #require(proxy.isRunning, "haproxy exited (a frontend port 22400/22401 in use?):\n\(proxy.log)")
            do {
                try await routeThroughFailover(cluster, watcher: watcher, proxy: proxy)
            } catch {
                await proxy.stop()
                throw error
            }
            await proxy.stop()
        }
    }

    func routeThroughFailover(_ cluster: TestCluster, watcher: WatchProcess, proxy: ChildProcess) async throws {
        let password = try cluster.credentials().superuser.password
        let rw = try cluster.proxyConninfo(port: 22400)
        let ro = try cluster.proxyConninfo(port: 22401)
        /// Which server a new connection through a frontend lands on: its port, and whether it is in recovery.
        func land(_ conninfo: String) -> (port: Int, recovery: Bool)? {
            guard let connection = try? PGConnection.connect(conninfo: conninfo, password: password) else { return nil }
            defer { connection.close() }
            guard let row = try? connection.query("SELECT inet_server_port(), pg_is_in_recovery()"),
                let port = row.value(0, "inet_server_port").flatMap({ Int($0) })
            else { return nil }
            return (port, row.value(0, "pg_is_in_recovery") == "t")
        }
        #expect(await cluster.eventually(30) { land(rw)?.port == cluster.port("node0") }, "rw never reached node0:\n\(proxy.log)\n\(watcher.log)")
        // HAProxy counts every server up until its first check: wait for the checks to settle.
        #expect(
            await cluster.eventually(30) { (0..<6).allSatisfy { _ in land(ro)?.recovery == true } },
            "ro never settled on the standbys:\n\(proxy.log)")

        // Readers before the failure: only standbys.
        var readsOnPrimary = 0
        for _ in 0..<20 where land(ro)?.recovery == false { readsOnPrimary += 1 }
        #expect(readsOnPrimary == 0, "a read through the ro port landed on the primary while both standbys stream")

        try WriteLoad.prepare(conninfo: rw, password: password)
        let load = WriteLoad(conninfo: rw, password: password, clients: 4)
        load.start()
        #expect(await cluster.waitForAcks(load, atLeast: 300), "no writes through HAProxy")
        /// HAProxy's log lines of `name` leaving the replicas' backend, with the reason.
        func outOfReplicas(_ name: String) -> [Substring] { proxy.log.split(separator: "\n").filter { $0.contains("_replicas/\(name) is DOWN") } }
        let standbysOut = ["node1": outOfReplicas("node1").count, "node2": outOfReplicas("node2").count]
        let killedAt = Date()
        try cluster.kill9Postmaster("node0")
        // When a standby's /primary first answers 200: the watcher's part of the outage.
        let primaryAnswered = Task { () -> Date? in
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline {
                if httpRequest(port: 22311, path: "/primary")?.code == 200 || httpRequest(port: 22312, path: "/primary")?.code == 200 {
                    return Date()
                }
                try? await Task.sleep(for: .milliseconds(10))
            }
            return nil
        }
        #expect(await cluster.eventually(20) { cluster.onePrimary(besides: "node0") != nil }, "no failover:\n\(watcher.log)")
        let newPrimary = try #require(cluster.onePrimary(besides: "node0"))
        let other = newPrimary == "node1" ? "node2" : "node1"
        let before = load.counts.acknowledged
        #expect(await cluster.waitForAcks(load, atLeast: before + 200), "writers did not resume through HAProxy:\n\(proxy.log)")
        let summary = await load.stop()
        // The outage is the longest pause between acknowledgements after the kill (a commit in
        // flight at the kill may still be acknowledged just after it).
        let acks = ([killedAt] + summary.ackTimes.filter { $0 > killedAt }).sorted()
        if let resumed = zip(acks, acks.dropFirst()).max(by: { $0.1.timeIntervalSince($0.0) < $1.1.timeIntervalSince($1.0) })?.1 {
            let watcherPart = await primaryAnswered.value.map { String(format: "%.2f", $0.timeIntervalSince(killedAt)) } ?? "?"
            print(
                "kill -9 -> /primary 200 on the new primary: \(watcherPart) s; -> first acknowledged write through HAProxy: "
                    + "\(String(format: "%.2f", resumed.timeIntervalSince(killedAt))) s")
        }
        let present = try cluster.presentIds(newPrimary, summary.acknowledged)
        #expect(summary.acknowledged.filter { !present.contains($0) }.isEmpty, "acknowledged rows lost")
        // A new connection through rw lands there too (polled: under load, HAProxy's check of
        // the dead primary may not yet have seen the watcher's 503, and with retries 0 a
        // connection sent there fails at once, as the writers' reconnects did).
        #expect(await cluster.eventually(10) { land(rw)?.port == cluster.port(newPrimary) }, "rw does not land on \(newPrimary):\n\(proxy.log)")

        // Once the other standby streams from the new primary, reads land only on standbys again.
        #expect(await cluster.eventually(30) { try cluster.upstreamPort(of: other) == cluster.port(newPrimary) })
        #expect(await cluster.eventually(10) { land(ro)?.port == cluster.port(other) }, "\(proxy.log)")
        // The promoted standby answers 503 on /replica from the watcher's next look; until
        // HAProxy's next check of it (within watch.interval) it is still counted a replica.
        #expect(
            await cluster.eventually(10) { outOfReplicas(newPrimary).count > standbysOut[newPrimary]! },
            "HAProxy never took \(newPrimary) out of the replicas:\n\(proxy.log)")
        // ro sends reads to the primary only while HAProxy counts no replica up: a read that
        // lands there is wrong unless HAProxy took the standby out meanwhile (one failed check
        // does, fall 1: a check timed out on a busy machine, or the watcher's 503), which its
        // log then says, with the reason.
        let otherOutBefore = outOfReplicas(other).count
        var misplaced: [Int] = []
        for _ in 0..<20 {
            if let landed = land(ro), !landed.recovery { misplaced.append(landed.port) }
        }
        let outages = outOfReplicas(other).dropFirst(otherOutBefore)
        if !misplaced.isEmpty && !outages.isEmpty {
            print("reads went to the primary \(misplaced.count) times while HAProxy had \(other) out: \(outages.joined(separator: " | "))")
        } else {
            #expect(misplaced.isEmpty, "reads through the ro port landed on the primary while \(other) streams and HAProxy counted it up: \(misplaced)\n\(proxy.log)")
        }
        #expect(await watcher.waitFor("failed-over", timeout: 30), "\(watcher.log)")
    }
}
