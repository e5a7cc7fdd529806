import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

extension TestCluster {
    /// The failovers the store recorded, through `pgcluster history --json`.
    func failovers() async throws -> [[String: Any]] {
        let history = await run(["history", "--json"])
        try #require(history.status == 0, "history: \(history.stderr)")
        let events = try #require(try JSONSerialization.jsonObject(with: Data(history.stdout.utf8)) as? [[String: Any]])
        return events.filter { $0["kind"] as? String == "failover" }
    }
}

/// `pgcluster watch` beyond one machine: on the ssh test hosts (the primary's host cut off,
/// or only the watcher's), and several watchers sharing a cluster through a real etcd.
/// Ports 21590-21599, etcd 23798-23799.
@Suite("watch across machines: ssh hosts and watchers sharing etcd", .serialized, .clusterLimitOnTestHosts)
struct WatchAcrossTests {
    @Test("ssh: the primary's host cut off → the watcher fails over, nothing lost; healed, the old primary is rejoined")
    func partitionedPrimaryHost() async throws {
        try await withTestHosts(count: 3, operatorHost: true) { hosts in
            let cluster = try TestCluster.onHosts(name: "wpart", basePort: 21590)
            defer { try? FileManager.default.removeItem(atPath: cluster.root) }
            try await cluster.initCluster()
            let load = try await cluster.startLoad(clients: 4)
            #expect(await cluster.waitForAcks(load, atLeast: 200))
            // The watcher runs on its own machine, the operator namespace.
            let watcher = try WatchProcess(cluster, name: "watch-op", netns: "pgct-op")
            do {
                #expect(await watcher.waitFor("start"), "\(watcher.log)")
                try await hosts.partition(1)
                #expect(await watcher.waitFor("failed-over", timeout: 40), "no failover:\n\(watcher.log)")
                let primary = try #require(cluster.onePrimary(besides: "node0"), "\(watcher.log)")
                try cluster.sql(primary, "INSERT INTO \(WriteLoad.table) (id, writer) VALUES (-1, -1)")

                // Healed: the old primary comes back believing it is one; the watcher fences and
                // rejoins it: never two primaries serving.
                try await hosts.heal(1)
                let rejoined = await cluster.eventually(90) { try cluster.upstreamPort(of: "node0") == cluster.port(primary) }
                #expect(rejoined, "node0 was not rejoined:\n\(watcher.log)")
                #expect(cluster.primaries() == [primary])
                let summary = await load.stop()
                let present = try cluster.presentIds(primary, summary.acknowledged)
                #expect(present.count == summary.acknowledged.count, "lost \(summary.acknowledged.count - present.count)")
                #expect(try await cluster.failovers().count == 1)
            } catch {
                await watcher.stop()
                print(watcher.log)
                throw error
            }
            #expect(await watcher.stop() == 0)
            _ = await cluster.run(["destroy", "--yes"])
        }
    }

    @Test("ssh: only the watcher's machine cut off (the standbys still reach the primary) → no failover")
    func watcherAloneCutOff() async throws {
        try await withTestHosts(count: 3, operatorHost: true) { hosts in
            let cluster = try TestCluster.onHosts(name: "wlone", basePort: 21591)
            defer { try? FileManager.default.removeItem(atPath: cluster.root) }
            try await cluster.initCluster()
            let watcher = try WatchProcess(cluster, name: "watch-op", netns: "pgct-op")
            #expect(await watcher.waitFor("start"), "\(watcher.log)")
            try await Task.sleep(for: .seconds(1))
            try await hosts.partition("op")
            // Well past failoverAfter (2 s): the watcher lost everyone, nobody else lost anything.
            try await Task.sleep(for: .seconds(8))
            try await hosts.heal("op")
            try await Task.sleep(for: .seconds(2))
            #expect(await watcher.stop() == 0)
            #expect(watcher.lines("failed-over").isEmpty, "a failover because only the watcher was cut off:\n\(watcher.log)")
            #expect(cluster.primaries() == ["node0"])
            #expect(try await cluster.failovers().isEmpty)
            #expect(await cluster.run(["status"]).status == 0)
            _ = await cluster.run(["destroy", "--yes"])
        }
    }

    @Test("ssh: every ssh to a standby's host hangs (its sshd's sessions SIGSTOPped) and a server there is gone → the watcher is not stuck: kill -9 of the primary elsewhere is failed over, nothing lost")
    func hungSSH() async throws {
        try await withTestHosts(count: 3, operatorHost: true) { hosts in
            let cluster = try TestCluster(
                // durability available: after the failover only node2 follows, and ANY 2 would hold commits.
                name: "whung", basePort: 21590, standbys: 3, synchronous: "{mode: any, count: 2}",
                extraNodeYAML: "watch: {durability: available}\n",
                ssh: (
                    block: "ssh: {user: root, identityFile: \(TestHosts.keyFile), dir: \(TestHosts.sshDir), connectTimeout: 2}",
                    // node2 and node3 share h3.
                    hosts: [1, 2, 3, 3].map(TestHosts.address)
                ))
            defer { try? FileManager.default.removeItem(atPath: cluster.root) }
            try await cluster.initCluster()
            let load = try await cluster.startLoad(clients: 4)
            #expect(await cluster.waitForAcks(load, atLeast: 200))
            let watcher = try WatchProcess(cluster, name: "watch-op", netns: "pgct-op")
            var stopped: [pid_t] = []
            do {
                // Its first tick done ("ok"): its connections to every host are open. Then h3's
                // sshd and the sessions it serves stop: an ssh through an open master connection
                // hangs without an error, and a new connection gets no banner.
                #expect(await watcher.waitFor("ok"), "\(watcher.log)")
                let sshd = try #require(await hosts.sshdPID("h3"), "no sshd on h3")
                stopped = [sshd] + descendants(of: sshd)
                try #require(stopped.count > 1, "h3's sshd serves no session")
                for pid in stopped { kill(pid, SIGSTOP) }
                // node3's server on h3 dies: the watcher can only ask h3 by ssh about it.
                try await hosts.kill9Postmaster(3, dataDir: cluster.remoteDataDir("node3"))
                try await hosts.kill9Postmaster(1, dataDir: cluster.remoteDataDir("node0"))
                // ANY 2 over node1..node3: node1 and node2 answering prove the quorum.
                #expect(await watcher.waitFor("failed-over", timeout: 90), "no failover while ssh to h3 hangs:\n\(watcher.log)")
                let primary = try #require(cluster.onePrimary(besides: "node0"), "\(watcher.log)")
                #expect(["node1", "node2"].contains(primary))
                let before = load.counts.acknowledged
                #expect(await cluster.waitForAcks(load, atLeast: before + 100), "\(watcher.log)")
                let summary = await load.stop()
                let present = try cluster.presentIds(primary, summary.acknowledged)
                #expect(present.count == summary.acknowledged.count, "lost \(summary.acknowledged.count - present.count)")
                #expect(try await cluster.failovers().count == 1)
            } catch {
                for pid in stopped { kill(pid, SIGCONT) }
                await watcher.stop()
                print(watcher.log)
                throw error
            }
            for pid in stopped { kill(pid, SIGCONT) }
            #expect(await watcher.stop() == 0, "\(watcher.log)")
            _ = await cluster.run(["destroy", "--yes"])
        }
    }

    @Test("ssh: the leading watcher's machine cut off from etcd → it stops acting within TTL/2; the other takes over")
    func leaderCutOffFromEtcd() async throws {
        try await withTestHosts(count: 3, operatorHost: true) { hosts in
            try await withEtcd(port: 23798, address: TestHosts.bridgeAddress) { etcd in
                let cluster = try TestCluster(
                    name: "wcut", basePort: 21595, synchronous: "{mode: any, count: 1}",
                    extraNodeYAML: "store: {etcd: {endpoints: [\(etcd.endpoint)], prefix: /pgc-it}}\nwatch: {interval: 0.5, failoverAfter: 2, leaseTTL: 4}\n")
                try await withWatchers(on: cluster) { group in
                    try await cluster.initCluster()
                    let client = EtcdClient(endpoints: [URL(string: etcd.endpoint)!])
                    func leaderPID() async -> pid_t? {
                        guard let kv = try? await client.get("/pgc-it/wcut/leader") else { return nil }
                        return pid_t(String(decoding: kv.value, as: UTF8.self).split(separator: ":").last ?? "")
                    }
                    // The first watcher runs on the operator's machine and leads; the second here.
                    let remote = group.add(try WatchProcess(cluster, name: "watch-op", netns: "pgct-op"))
                    #expect(await remote.waitFor("start"))
                    var led = false
                    for _ in 0..<50 where !led {
                        led = await leaderPID() != nil
                        if !led { try await Task.sleep(for: .milliseconds(100)) }
                    }
                    let local = group.add(try WatchProcess(cluster, name: "watch-here"))
                    #expect(await local.waitFor("start"))
                    let first = await leaderPID()
                    #expect(first != nil && first != local.pid, "the operator-machine watcher should lead first")

                    try await hosts.partition("op")
                    let cut = ContinuousClock.now
                    var other: pid_t?
                    while other != local.pid && ContinuousClock.now - cut < .seconds(10) {
                        other = await leaderPID()
                        try await Task.sleep(for: .milliseconds(100))
                    }
                    #expect(other == local.pid, "the watcher here did not take over")
                    #expect(ContinuousClock.now - cut < .seconds(7), "took \(ContinuousClock.now - cut)")
                    // The cut-off one said it stopped acting; healed, it follows.
                    try await hosts.heal("op")
                    try await Task.sleep(for: .seconds(2))
                    #expect(
                        !remote.lines("wait").filter { $0.contains("follow") || $0.contains("observing only") }.isEmpty,
                        "\(remote.log)")
                    // The cluster still has one primary, and a failure is handled by the new leader.
                    try cluster.kill9Postmaster("node0")
                    #expect(await cluster.eventually(20) { cluster.onePrimary(besides: "node0") != nil }, "\(local.log)")
                    #expect(await local.waitFor("failed-over"), "\(local.log)")
                    #expect(remote.lines("failed-over").isEmpty, "\(remote.log)")
                }
            }
        }
    }
}

/// Several watchers sharing a local cluster through a real etcd on loopback: no test hosts,
/// so these do not wait in the hosts' chain. Ports 21580-21589, etcd 23794-23797.
@Suite("watchers sharing etcd on this machine", .serialized, .clusterLimit)
struct WatchEtcdTests {
    @Test("two watchers through etcd: one leads; kill -9 of the primary → one failover; the leader killed → the other leads and handles the next; a switchover is no failover")
    func twoWatchers() async throws {
        try await withEtcd(port: 23794) { etcd in
            let store = "store: {etcd: {endpoints: [\(etcd.endpoint)], prefix: /pgc-it}}\nwatch: {interval: 0.5, failoverAfter: 2, leaseTTL: 3}\n"
            let cluster = try TestCluster(
                name: "wetcd", basePort: 21580, synchronous: "{mode: any, count: 1}", extraNodeYAML: store)
            try await withWatchers(on: cluster) { group in
                try await cluster.initCluster()
                let client = EtcdClient(endpoints: [URL(string: etcd.endpoint)!])
                let leaderKey = "/pgc-it/wetcd/leader"
                // The state lives in etcd, not in local.dir.
                #expect(try await client.get("/pgc-it/wetcd/state") != nil)
                #expect(!FileManager.default.fileExists(atPath: "\(cluster.dataRoot)/state.json"))

                let watchers = [group.add(try WatchProcess(cluster, name: "watch-a")), group.add(try WatchProcess(cluster, name: "watch-b"))]
                for watcher in watchers { #expect(await watcher.waitFor("start"), "\(watcher.log)") }
                func leader() async -> WatchProcess? {
                    guard let kv = try? await client.get(leaderKey) else { return nil }
                    let id = String(decoding: kv.value, as: UTF8.self)
                    return watchers.first { id.hasSuffix(":\($0.pid)") }
                }
                var first: WatchProcess?
                for _ in 0..<50 where first == nil {
                    first = await leader()
                    if first == nil { try await Task.sleep(for: .milliseconds(100)) }
                }
                let leading = try #require(first, "nobody leads")
                let follower = try #require(watchers.first { $0.pid != leading.pid })

                // Idle, the two watchers write nothing to etcd, which keeps every revision until
                // it is compacted: they look before they take the lock (taking it each probe
                // was four revisions a second).
                func revision() async throws -> Int64 {
                    let reply = try await client.call("/v3/kv/range", ["key": EtcdClient.b64(leaderKey)])
                    return EtcdClient.int((reply["header"] as? [String: Any])?["revision"]) ?? -1
                }
                let idleFrom = try await revision()
                try await Task.sleep(for: .seconds(3))
                let idleTo = try await revision()
                #expect(idleFrom > 0 && idleTo == idleFrom, "the idle watchers wrote \(idleTo - idleFrom) revisions in 3 s")

                // kill -9 of the primary: exactly one failover, nothing lost.
                let load = try await cluster.startLoad(clients: 4)
                #expect(await cluster.waitForAcks(load, atLeast: 200))
                try cluster.kill9Postmaster("node0")
                #expect(await cluster.eventually(20) { cluster.onePrimary(besides: "node0") != nil })
                let primary = try #require(cluster.onePrimary(besides: "node0"))
                let before = load.counts.acknowledged
                #expect(await cluster.waitForAcks(load, atLeast: before + 100))
                let summary = await load.stop()
                let present = try cluster.presentIds(primary, summary.acknowledged)
                #expect(present.count == summary.acknowledged.count, "lost \(summary.acknowledged.count - present.count)")
                #expect(await cluster.eventually(60) { try cluster.upstreamPort(of: "node0") == cluster.port(primary) })
                #expect(try await cluster.failovers().count == 1)
                #expect(!leading.lines("failed-over").isEmpty && follower.lines("failed-over").isEmpty)

                // The leading watcher dies: the other leads within the lease TTL (3 s) and handles
                // the next failure.
                kill(leading.pid, SIGKILL)
                _ = await leading.stop()
                let took = ContinuousClock.now
                var next: WatchProcess?
                while next?.pid != follower.pid && ContinuousClock.now - took < .seconds(8) {
                    next = await leader()
                    if next?.pid != follower.pid { try await Task.sleep(for: .milliseconds(100)) }
                }
                #expect(next?.pid == follower.pid, "the other watcher did not take over")
                #expect(ContinuousClock.now - took < .seconds(5), "took over after \(ContinuousClock.now - took)")
                try cluster.kill9Postmaster(primary)
                #expect(await cluster.eventually(20) { cluster.onePrimary(besides: primary) != nil }, "\(follower.log)")
                #expect(await follower.waitFor("failed-over"), "\(follower.log)")
                #expect(try await cluster.failovers().count == 2)

                // A switchover by a person while the watcher runs: no failover from it.
                var healthy = false
                for _ in 0..<120 where !healthy {
                    healthy = await cluster.run(["status"]).status == 0
                    if !healthy { try await Task.sleep(for: .milliseconds(500)) }
                }
                #expect(healthy, "\(follower.log)")
                let switchover = await cluster.run(["switchover"])
                #expect(switchover.status == 0, "switchover: \(switchover.stderr)")
                try await Task.sleep(for: .seconds(4))
                #expect(try await cluster.failovers().count == 2, "\(follower.log)")
                #expect(cluster.primaries().count == 1)
            }
        }
    }

    @Test("etcd stopped: the watcher stops acting and PostgreSQL keeps serving; etcd back: it acts again")
    func etcdStopped() async throws {
        try await withEtcd(port: 23796) { etcd in
            let store = "store: {etcd: {endpoints: [\(etcd.endpoint)], prefix: /pgc-it}}\nwatch: {interval: 0.5, failoverAfter: 2, leaseTTL: 3}\n"
            let cluster = try TestCluster(
                name: "wetcdoff", basePort: 21585, synchronous: "{mode: any, count: 1}", extraNodeYAML: store)
            var watcher: WatchProcess?
            do {
                try await cluster.initCluster()
                watcher = try WatchProcess(cluster)
                #expect(await watcher!.waitFor("start"))
                try await Task.sleep(for: .seconds(1))
                etcd.stop(hard: true)
                try cluster.sql("node0", "CREATE TABLE t (id int)")
                try cluster.sql("node0", "INSERT INTO t VALUES (1)")
                try cluster.kill9Postmaster("node0")
                try await Task.sleep(for: .seconds(6))
                #expect(cluster.primaries().isEmpty, "a failover without the store:\n\(watcher!.log)")
                #expect(watcher!.lines("failed-over").isEmpty)

                try await etcd.start()
                #expect(await cluster.eventually(30) { cluster.onePrimary(besides: "node0") != nil }, "\(watcher!.log)")
                let primary = try #require(cluster.onePrimary(besides: "node0"))
                #expect(try cluster.sql(primary, "SELECT count(*) FROM t").scalar == "1")
            } catch {
                await watcher?.stop()
                print(watcher?.log ?? "")
                await cluster.teardown()
                throw error
            }
            await watcher?.stop()
            await cluster.teardown()
        }
    }
}

/// Every process below `parent` (children, their children, ...), read from /proc: a test
/// host's namespaces share this machine's process IDs.
func descendants(of parent: pid_t) -> [pid_t] {
    var children: [pid_t: [pid_t]] = [:]
    for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
        guard let pid = pid_t(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
            let close = stat.range(of: ") ", options: .backwards)
        else { continue }
        let fields = stat[close.upperBound...].split(separator: " ")
        if fields.count > 1, let ppid = pid_t(fields[1]) { children[ppid, default: []].append(pid) }
    }
    var found: [pid_t] = []
    var queue = children[parent] ?? []
    while let next = queue.popLast() {
        found.append(next)
        queue += children[next] ?? []
    }
    return found
}
