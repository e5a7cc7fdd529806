import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// The same table for both stores: files in local.dir, and a real etcd started here.
/// etcd on ports 23790-23809 (two each).
@Suite("stores: files and etcd pass one conformance table", .serialized, .clusterLimit)
struct StoreTests {
    /// - Parameter timeout: `store.etcd.timeout`; the spec's default (1 s) when nil.
    static func spec(_ folder: String, etcd: String? = nil, timeout: Int? = nil) throws -> ClusterSpec {
        let path = "\(folder)/pgcluster.yaml"
        var yaml = """
            version: 1
            name: storetest
            local: {dir: ./state}
            nodes:
              - {name: db_0, port: 5432, role: primary}
              - {name: db_1, port: 5433}

            """
        if let etcd {
            yaml += "store: {etcd: {endpoints: [\(etcd)], prefix: /pgc-test\(timeout.map { ", timeout: \($0)" } ?? "")}}\n"
        }
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return try SpecLoader.load(path: path)
    }

    static func folder() throws -> String {
        let folder = "\(Scratch.folder)/pgcluster-it-store-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        return folder
    }

    /// A folder for the spec and a real etcd on `port`; both removed afterwards.
    static func withEtcdFolder(port: Int, _ body: (TestEtcd, String) async throws -> Void) async throws {
        let folder = try folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try await withEtcd(port: port) { etcd in try await body(etcd, folder) }
    }

    /// The conformance table: what every store must do alike.
    static func conformance(_ store: any ClusterStore) async throws {
        // State: nothing, then created, then changed atomically.
        #expect(try await store.loadState() == nil)
        let first = try await store.updateState { old in
            #expect(old == nil)
            return ClusterState(primary: "db_0", synchronous: .init(.any(1)))
        }
        #expect(try await store.loadState() == first)
        try await store.updateState { old in
            var state = old!
            state.primary = "db_1"
            return state
        }
        #expect(try await store.loadState()?.primary == "db_1")
        #expect(try await store.loadState()?.synchronous.mode == "any")

        // History: appended in order.
        #expect(try await store.loadHistory().isEmpty)
        for to in ["db_1", "db_0"] {
            try await store.appendHistory(
                HistoryEvent(
                    kind: "failover", from: nil, to: to, timeline: 2, lsn: nil, durationSeconds: 0.1, rePointed: [],
                    needsRejoin: [], steps: []))
        }
        #expect(try await store.loadHistory().map(\.to) == ["db_1", "db_0"])

        // The lock: a second taker waits, then names the holder; free again once released.
        let held = try await store.acquireLock(command: "holder-a", wait: 1)
        #expect(try await store.lockHolder()?.command == "holder-a")
        do throws(ClusterError) {
            _ = try await store.acquireLock(command: "holder-b", wait: 0.3)
            Issue.record("a second taker got the lock of \(store.label)")
        } catch {
            #expect(error.message.contains("`pgcluster holder-a`"), "\(error.message)")
        }
        await held.release()
        #expect(try await store.lockHolder() == nil)
        let again = try await store.acquireLock(command: "holder-b", wait: 1)
        await again.release()

        // A watcher that looks before it locks: the lock as it was seen lets it in only
        // while nobody took the lock since, and never while someone holds it.
        let seen = try await store.lockGeneration()
        // Both at once (etcd: one range read) say what each says alone.
        let (together, state) = try await store.lockGenerationAndState()
        #expect(together == seen)
        #expect(state == (try await store.loadState()))
        #expect(state?.primary == "db_1")
        #expect(seen.holder == nil)
        if store.looksBeforeLocking {
            await (try await store.acquireLock(command: "holder-c", wait: 1)).release()
            #expect(try await store.acquireLock(command: "watch", ifUnchangedSince: seen) == nil, "taken since the look")
            let fresh = try await store.lockGeneration()
            let taken = try #require(try await store.acquireLock(command: "watch", ifUnchangedSince: fresh))
            let now = try await store.lockGeneration()
            #expect(now.holder?.command == "watch" && now.revision != fresh.revision)
            #expect(try await store.lockGenerationAndState().0 == now)
            #expect(try await store.acquireLock(command: "watch", ifUnchangedSince: now) == nil, "held")
            await taken.release()
            #expect(try await store.lockHolder() == nil)
        }

        // Leadership: one leads, the other does not, until the first resigns.
        let one = store.leadership(id: "watcher-1", ttl: 4)
        let two = store.leadership(id: "watcher-2", ttl: 4)
        #expect(await one.campaign())
        #expect(one.isLeader)
        #expect(!(await two.campaign()))
        #expect(!two.isLeader)
        #expect(await two.leader() == "watcher-1")
        #expect(await one.campaign(), "a leader keeps leading when it renews")
        await one.resign()
        #expect(!one.isLeader)
        #expect(await two.campaign())
        await two.resign()

        // Removed for destroy.
        try await store.removeAll()
        #expect(try await store.loadState() == nil)
        #expect(try await store.loadHistory().isEmpty)
    }

    @Test("files in local.dir")
    func files() async throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try await Self.conformance(FileStore(spec: try Self.spec(folder)))
    }

    @Test("etcd")
    func etcd() async throws {
        try await Self.withEtcdFolder(port: 23790) { etcd, folder in
            // The table checks what the store keeps, not how fast: a call may take longer
            // than the default second while the whole suite starts at once on two cores
            // (one did, in CI).
            let spec = try Self.spec(folder, etcd: etcd.endpoint, timeout: 5)
            #expect(Stores.of(spec) is EtcdStore)
            try await Self.conformance(Stores.of(spec))
        }
    }

    @Test("etcd: 1,000 history events, one key each: the store keeps working and history lists them in order")
    func etcdHistory() async throws {
        try await Self.withEtcdFolder(port: 23802) { etcd, folder in
            let spec = try Self.spec(folder, etcd: etcd.endpoint, timeout: 5)
            let store = Stores.of(spec)
            for i in 0..<1000 {
                try await store.appendHistory(
                    HistoryEvent(
                        kind: "failover", from: nil, to: "db_\(i % 2)", timeline: i + 1, lsn: nil, durationSeconds: 0.1,
                        rePointed: [], needsRejoin: [], steps: []))
            }
            let history = try await store.loadHistory()
            #expect(history.count == 1000)
            #expect(history.map(\.timeline) == (1...1000).map { Optional($0) })
            // Every event is its own key, far below etcd's request limit; the state still works.
            let keys = try await EtcdClient(endpoints: [URL(string: etcd.endpoint)!]).list(prefix: "/pgc-test/storetest/history/")
            #expect(keys.count == 1000)
            #expect(keys.allSatisfy { $0.value.count < 4096 })
            try await store.updateState { _ in ClusterState(primary: "db_1", synchronous: .init(.async)) }
            #expect(try await store.loadState()?.primary == "db_1")
            let cli = await TestCluster.runBinary(["history", "-f", "\(folder)/pgcluster.yaml"])
            #expect(cli.status == 0, "\(cli.stderr)")
            #expect(cli.stdout.split(separator: "\n").count >= 1000, "\(cli.stdout.suffix(300))")
        }
    }

    @Test("etcd: a state write starts from what this process last saw, and loses no change another writer made since")
    func etcdRemembered() async throws {
        try await Self.withEtcdFolder(port: 23804) { etcd, folder in
            let store = Stores.of(try Self.spec(folder, etcd: etcd.endpoint, timeout: 5))
            let other = EtcdClient(endpoints: [URL(string: etcd.endpoint)!], timeout: 5)
            let key = "/pgc-test/storetest/state"
            @Sendable func state(_ primary: String, timeline: Int) -> ClusterState {
                var state = ClusterState(primary: primary, synchronous: .init(.any(1)))
                state.timeline = timeline
                return state
            }
            func written(by primary: String, timeline: Int) throws -> Data {
                try JSONEncoder().encode(state(primary, timeline: timeline))
            }
            try await store.updateState { _ in state("db_0", timeline: 1) }

            // Another writer (not through this process's store) changes it: a change made
            // from what this process remembered is refused by etcd and made again from what
            // is there now.
            let seen = try #require(try await other.get(key))
            #expect(try await other.put(key, try written(by: "db_1", timeline: 2), ifModRevision: seen.modRevision).done)
            let calls = Counter()
            try await store.updateState { old in
                calls.add()
                var state = old!
                state.timeline = (state.timeline ?? 0) + 10
                return state
            }
            let now = try #require(try await store.loadState())
            #expect(now.primary == "db_1", "another writer's change was lost")
            #expect(now.timeline == 12)
            #expect(calls.value == 2, "the remembered state was tried first, then the current one")

            // Remembered and still current: one try.
            calls.reset()
            try await store.updateState { old in
                calls.add()
                return old!
            }
            #expect(calls.value == 1)

            // A change that refuses what was remembered is asked again with what is there now:
            // only a current state is refused.
            let again = try #require(try await other.get(key))
            #expect(try await other.put(key, try written(by: "db_2", timeline: 3), ifModRevision: again.modRevision).done)
            let after = try await store.updateState { old throws(ClusterError) in
                guard old?.primary == "db_2" else { throw ClusterError("refused: \(old?.primary ?? "none") is not db_2") }
                return old!
            }
            #expect(after.primary == "db_2")
            await #expect(throws: ClusterError.self) {
                try await store.updateState { old throws(ClusterError) in throw ClusterError("refused: \(old?.primary ?? "none")") }
            }

            // Removed meanwhile (destroy): created again, not refused.
            try await other.delete(key)
            try await store.updateState { old in
                #expect(old == nil || old?.primary == "db_2")
                return ClusterState(primary: "db_0", synchronous: .init(.async))
            }
            #expect(try await store.loadState()?.primary == "db_0")
        }
    }

    @Test("etcd: a holder whose lock went writes nothing: a quorum change's intent is refused by the store itself (its write is fenced by the epoch; no read of the lock before it), and the change stops before the server")
    func etcdFencedIntent() async throws {
        try await Self.withEtcdFolder(port: 23808) { etcd, folder in
            let spec = try Self.spec(folder, etcd: etcd.endpoint, timeout: 5)
            let store = Stores.of(spec)
            let raw = EtcdClient(endpoints: [URL(string: etcd.endpoint)!], timeout: 5)
            try await store.updateState { _ in ClusterState(primary: "db_0", synchronous: .init(.any(1))) }
            let credentials = Credentials(
                superuser: .init(user: "postgres", password: "unused"), replication: .init(user: "replicator", password: "unused"))
            // db_0 (port 5432 of the spec) is never asked: the change stops before it.
            let change = QuorumChange(credentials: credentials, primary: spec.nodes[0], mode: .any(1), standbys: ["db_1"], intent: spec)
            try await store.holdingLock(command: "quorum") {
                // The lock's key goes under the holder (an expired lease, or an operator).
                try await raw.delete("/pgc-test/storetest/lock")
                do throws(ClusterError) {
                    try await change.set()
                    Issue.record("the change went on without the lock")
                } catch {
                    #expect(error.message.contains("stopped before setting synchronous_standby_names on db_0"), "\(error.message)")
                    #expect(error.message.contains("lost the cluster lock") && error.message.contains("its key is gone"), "\(error.message)")
                }
            }
            #expect(try await store.loadState()?.pending == nil, "the intent was written without the lock")
        }
    }

    @Test("etcd: a leading watcher's lock is on its leadership lease; released, the leader stays; a lock taken since is not deleted")
    func etcdLockOnLeadership() async throws {
        try await Self.withEtcdFolder(port: 23806) { etcd, folder in
            let store = Stores.of(try Self.spec(folder, etcd: etcd.endpoint, timeout: 5))
            let raw = EtcdClient(endpoints: [URL(string: etcd.endpoint)!], timeout: 5)
            let (lockKey, leaderKey) = ("/pgc-test/storetest/lock", "/pgc-test/storetest/leader")
            // A TTL of 20 s: the checks below need the leadership renewed within TTL/2, and a
            // test process on a busy machine can stall for seconds; nothing here waits for it to end.
            let leader = store.leadership(id: "watcher-1", ttl: 20)
            #expect(await leader.campaign())
            let leaderLease = try #require(try await raw.get(leaderKey)).lease

            // On the leader's lease: no lease of its own.
            let held = try #require(try await store.acquireLock(command: "watch", ifUnchangedSince: try await store.lockGeneration(), leadership: leader))
            #expect(try await raw.get(lockKey)?.lease == leaderLease, "the lock is not on the leader's lease")
            try await held.verify()
            await held.release()
            #expect(try await raw.get(lockKey) == nil, "released, the lock key stays")
            #expect(try await raw.get(leaderKey)?.lease == leaderLease, "releasing the lock ended the leadership")
            #expect(leader.isLeader)
            #expect(try await raw.keepAlive(leaderLease) > 0, "releasing the lock revoked the leader's lease")

            // A late release does not delete a lock another command took since.
            let late = try #require(try await store.acquireLock(command: "watch", ifUnchangedSince: try await store.lockGeneration(), leadership: leader))
            try await raw.delete(lockKey)
            let other = try await store.acquireLock(command: "other", wait: 1)
            await late.release()
            #expect(try await store.lockHolder()?.command == "other", "a late release deleted another's lock")
            await other.release()

            // A leader whose key is no longer on its lease takes no lock on it.
            try await raw.delete(leaderKey)
            #expect(try await store.acquireLock(command: "watch", ifUnchangedSince: try await store.lockGeneration(), leadership: leader) == nil)
            #expect(try await raw.get(lockKey) == nil)

            // No leadership (given up): a lease of its own, as any command's.
            await leader.resign()
            let own = try #require(try await store.acquireLock(command: "watch", ifUnchangedSince: try await store.lockGeneration(), leadership: leader))
            let ownLease = try #require(try await raw.get(lockKey)).lease
            #expect(ownLease != 0 && ownLease != leaderLease)
            await own.release()
            #expect(try await raw.get(lockKey) == nil)

            // A release that cannot reach etcd gives the leadership up, so that nobody renews
            // the lease and the key ends with it: a lock left on a renewed lease would make
            // this watcher wait on itself for as long as it leads. (etcd paused for the
            // release, about 4.5 s with 1 s requests, within half the 10 s TTL.)
            let quick = Stores.of(try Self.spec(folder, etcd: etcd.endpoint, timeout: 1))
            let second = quick.leadership(id: "watcher-2", ttl: 10)
            // The lock goes on the leader's lease only while the leadership was renewed within
            // TTL/2 (5 s): a test process stalled that long between the campaign and the take
            // (CI under load, once) gets a lock on a lease of its own, which is not what is
            // tested here; it is released and taken again.
            var onLeaderLease: (any HeldLock)?
            for _ in 1...3 where onLeaderLease == nil {
                #expect(await second.campaign())
                let taken = try #require(
                    try await quick.acquireLock(command: "watch", ifUnchangedSince: try await quick.lockGeneration(), leadership: second))
                let (lockLease, leaderLease) = (try await raw.get(lockKey)?.lease, try await raw.get(leaderKey)?.lease)
                if lockLease != nil, lockLease == leaderLease { onLeaderLease = taken } else { await taken.release() }
            }
            let stranded = try #require(onLeaderLease, "the lock never went on the leader's lease")
            #expect(kill(etcd.pid, SIGSTOP) == 0)
            // What is tested needs an etcd that does not answer. Twice in CI under load (of six
            // runs one day) the release's deletes were answered at once after the SIGSTOP, and
            // the cause is not known yet: then this part says so and what it saw, instead of
            // failing on a precondition that did not hold.
            let probe = EtcdClient(endpoints: [URL(string: etcd.endpoint)!], timeout: 1)
            guard (try? await probe.get(lockKey)) == nil else {
                let state = (try? String(contentsOfFile: "/proc/\(etcd.pid)/stat", encoding: .utf8))?.split(separator: " ").dropFirst(2).first
                kill(etcd.pid, SIGCONT)
                print("StoreTests.etcdLockOnLeadership: etcd (pid \(etcd.pid), state \(state.map(String.init) ?? "gone")) answered after SIGSTOP; the failed release was not tested this run")
                await stranded.release()
                return
            }
            await stranded.release()
            #expect(kill(etcd.pid, SIGCONT) == 0)
            #expect(!second.isLeader, "a release that failed kept the leadership (and so the lease, and the lock)")
            let gone = await pollUntil(20, every: .milliseconds(200)) { try await raw.get(lockKey) == nil }
            #expect(gone, "the lock stayed after a release that failed")
        }
    }

    /// Counts calls of a `@Sendable` closure.
    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var count = 0
        var value: Int { lock.withLock { count } }
        func add() { lock.withLock { count += 1 } }
        func reset() { lock.withLock { count = 0 } }
    }

    @Test("etcd: a leader that cannot renew stops leading within TTL/2; a dead lock holder's lease lets go")
    func etcdFailures() async throws {
        try await Self.withEtcdFolder(port: 23792) { etcd, folder in
            let store = Stores.of(try Self.spec(folder, etcd: "\(etcd.endpoint), http://127.0.0.1:23799"))
            let leader = store.leadership(id: "watcher-1", ttl: 4)
            #expect(await leader.campaign())

            // etcd gone: no error, and leadership lapses at TTL/2 (2 s), before the lease (4 s).
            etcd.stop(hard: true)
            let lost = ContinuousClock.now
            while leader.isLeader && ContinuousClock.now - lost < .seconds(5) {
                _ = await leader.campaign()
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(!leader.isLeader)
            #expect(ContinuousClock.now - lost < .seconds(3), "still leading \(ContinuousClock.now - lost) after etcd went away")
            do throws(ClusterError) {
                _ = try await store.loadState()
                Issue.record("no error without etcd")
            } catch {
                #expect(error.message.contains("no etcd endpoint answered"), "\(error.message)")
            }

            // The old watcher dies; etcd comes back: its lease runs out (etcd gives leases a
            // fresh TTL when it restarts), and another watcher can lead.
            await leader.resign()
            try await etcd.start()
            let other = store.leadership(id: "watcher-2", ttl: 4)
            var took = false
            for _ in 0..<100 where !took {
                took = await other.campaign()
                if !took { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(took, "nobody could lead after the old leader's lease")
            await other.resign()
        }
    }
}
