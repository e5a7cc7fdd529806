import Foundation

/// The cluster's memory in etcd, under `<prefix>/<cluster>/`: `state` (JSON), `history/…`
/// (one key per event), `lock` (the cluster lock: its holder, on a lease kept alive while held)
/// and `leader` (the watchers' leader, on its lease). Writes that depend on what is there
/// are transactions on the key's mod revision. Credentials are never stored here.
public struct EtcdStore: ClusterStore {
    public let spec: ClusterSpec
    public let settings: EtcdSettings
    let client: EtcdClient

    /// Seconds the cluster lock's lease lives without renewal: a holder that dies loses it
    /// after this.
    public static let lockTTL = 10

    public init(spec: ClusterSpec, settings: EtcdSettings) {
        self.spec = spec
        self.settings = settings
        client = EtcdClient(settings: settings)
    }

    public var label: String { "etcd \(settings.endpoints.map(\.absoluteString).joined(separator: ","))" }
    var root: String { "\(settings.prefix)/\(spec.name)/" }
    var stateKey: String { root + "state" }
    var historyKey: String { root + "history" }
    var lockKey: String { root + "lock" }
    /// Put with every taking of the lock: its mod revision tells a watcher whether anyone
    /// took the lock since it last looked.
    var generationKey: String { root + "lock-generation" }
    var leaderKey: String { root + "leader" }

    public func loadState() async throws(ClusterError) -> ClusterState? {
        let kv = try await client.get(stateKey)
        Self.lastSeen.remember(kv, as: lastSeenKey)
        guard let kv else { return nil }
        return try decode(ClusterState.self, kv, what: "state")
    }

    /// A read-modify-write of the state, as a transaction on the mod revision it read. The
    /// first try starts from what this process last read or wrote of the state
    /// (``lastSeen``), not from a new read: a watcher's failover writes its intent right after
    /// the tick's read, and under writers each etcd request costs 5–25 ms here. When the
    /// state changed since, the transaction fails and returns what is there now, which the
    /// next try starts from (no read either); a `change` that refuses what was remembered is
    /// asked again with what is read now, so only a current state is refused.
    public func updateState(_ change: @Sendable (ClusterState?) throws(ClusterError) -> ClusterState) async throws(ClusterError)
        -> ClusterState
    {
        let fence = self.fence
        var known = Self.lastSeen.recall(lastSeenKey)
        for _ in 0..<20 {
            let current: EtcdClient.KeyValue?
            let fresh: Bool
            if let remembered = known {
                (current, fresh) = (remembered.kv, remembered.fresh)
            } else {
                (current, fresh) = (try await client.get(stateKey), true)
            }
            known = nil
            let state: ClusterState
            do {
                state = try change(try current.map { kv throws(ClusterError) in try decode(ClusterState.self, kv, what: "state") })
            } catch {
                if fresh { throw error }
                continue
            }
            let value = try encode(state)
            let put = try await client.put(stateKey, value, ifModRevision: current?.modRevision, fence: fence)
            if put.done {
                let written = put.revision.map { revision in
                    EtcdClient.KeyValue(
                        key: stateKey, value: value, createRevision: current?.createRevision ?? revision, modRevision: revision, lease: 0)
                }
                Self.lastSeen.remember(written, as: lastSeenKey, known: written != nil)
                return state
            }
            if let lost = put.fenced { throw lostLock(now: lost) }
            known = (put.current, true)
        }
        throw ClusterError("the state in \(label) kept changing under this command; try again")
    }

    /// The state's key and mod revision as this process last read or wrote them, per etcd
    /// and key: a first guess for ``updateState(_:)``, never trusted (a transaction checks it).
    static let lastSeen = LastSeenState()
    var lastSeenKey: String { settings.endpoints.map(\.absoluteString).joined(separator: ",") + " " + stateKey }

    /// The epoch this process writes under: the cluster lock it holds in this store (its
    /// key and the revision that created it), nil when it holds none.
    var fence: (key: String, createRevision: Int64)? {
        guard let held = HeldLocks.held as? EtcdHeldLock, held.key == lockKey else { return nil }
        return (lockKey, held.epoch)
    }

    func lostLock(now: EtcdClient.KeyValue?) -> ClusterError {
        let other = now.flatMap { try? JSONDecoder().decode(ClusterLock.Holder.self, from: $0.value) }
        return ClusterError(
            "this command lost the cluster lock in \(label) (" + (now == nil ? "its key is gone: its lease ran out, or it was removed" : "its lease ran out") + ")"
                + (other.map { "; \($0.description) holds it now" } ?? "")
                + ": nothing more is written, so that a newer holder's record stands",
            details: ["check what the cluster is now: pgcluster status; pgcluster history"])
    }

    /// The milliseconds of a history key: the clock's, but always past this process's last
    /// one, so that its events keep their order however fast they come (two in the same
    /// millisecond would be ordered by their random part; with etcd's connection kept, a
    /// CI run appended two in one millisecond).
    final class HistoryClock: @unchecked Sendable {
        private let lock = NSLock()
        private var last: UInt64 = 0

        func next(now: Date = Date()) -> UInt64 {
            let millis = UInt64((now.timeIntervalSince1970 * 1000).rounded(.down))
            return lock.withLock {
                last = max(millis, last + 1)
                return last
            }
        }
    }

    static let historyClock = HistoryClock()

    /// One key per event (`history/<milliseconds>-<random>`, in time order), so the history
    /// never outgrows etcd's request limit. A `history` key of an older pgcluster (one JSON
    /// array) is read first.
    public func loadHistory() async throws(ClusterError) -> [HistoryEvent] {
        var events: [HistoryEvent] = []
        if let legacy = try await client.get(historyKey) {
            events = try decode([HistoryEvent].self, legacy, what: "history")
        }
        for kv in try await client.list(prefix: historyKey + "/").sorted(by: { $0.key < $1.key }) {
            events.append(try decode(HistoryEvent.self, kv, what: "history event"))
        }
        return events
    }

    public func appendHistory(_ event: HistoryEvent) async throws(ClusterError) {
        let millis = Self.historyClock.next()
        let key = historyKey + "/" + String(format: "%015llu-%08x", millis, UInt32.random(in: 0...UInt32.max))
        let put = try await client.put(key, try encode(event), ifModRevision: nil, fence: fence)
        if put.done { return }
        if let lost = put.fenced { throw lostLock(now: lost) }
        throw ClusterError("the history key \(key) in \(label) exists already; try again")
    }

    public func acquireLock(command: String, wait: Double) async throws(ClusterError) -> any HeldLock {
        let holder = ClusterLock.Holder.current(command: command)
        let value = try encode(holder)
        let deadline = ContinuousClock.now + .seconds(wait)
        var announced = false
        while true {
            if let held = try await take(holder, value, generation: nil, on: nil) { return held }
            let other = try? await lockHolder()
            if ContinuousClock.now >= deadline {
                throw ClusterError(
                    "the cluster is busy: \(other?.description ?? "another pgcluster command") holds its lock in etcd; waited \(ClusterLock.formatSeconds(wait))",
                    details: ["try again once it is done; a holder that dies loses the lock within \(Self.lockTTL) s (its lease)"])
            }
            if !announced {
                Console.progress("waiting for the cluster lock, held by \(other?.description ?? "another command")")
                announced = true
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    /// One try at the lock: a lease, then a transaction that puts the lock key on it (only
    /// when absent) and the generation key (only when at `generation`, when given). nil
    /// when it was taken or changed; the lease is given back then.
    ///
    /// `leader`: a watcher's leadership and its lease. The lock goes on that lease, only
    /// while the leader key is still on it (one more condition of the same transaction), and
    /// no lease is granted: a grant is a write etcd fsyncs, 10–25 ms here under writers, on the
    /// path of every failover. Such a lock is released by deleting its key (the lease stays
    /// the leader's); a leader that dies loses both with the lease.
    func take(
        _ holder: ClusterLock.Holder, _ value: Data, generation: Int64?, on leader: (lease: Int64, leadership: EtcdLeadership)?
    ) async throws(ClusterError) -> (any HeldLock)? {
        let lease: Int64
        if let leader {
            lease = leader.lease
        } else {
            lease = try await client.grant(ttl: Self.lockTTL)
        }
        var compares = [EtcdClient.compareCreated(lockKey, 0)]
        if let generation { compares.append(EtcdClient.compareModified(generationKey, generation)) }
        if leader != nil { compares.append(EtcdClient.compareLease(leaderKey, lease)) }
        // Put only where the key did not exist: the transaction's revision is its create
        // revision, the epoch (no read of it afterwards).
        let created = try await client.transaction(
            compares: compares, puts: [(lockKey, value, lease), (generationKey, Data(holder.description.utf8), nil)])
        if let created {
            return EtcdHeldLock(
                client: client, key: lockKey, lease: lease, epoch: created, holder: holder,
                ttl: leader?.leadership.ttl ?? Self.lockTTL, leadership: leader?.leadership)
        }
        if leader == nil { await client.revoke(lease) }
        return nil
    }

    public var looksBeforeLocking: Bool { true }

    /// One range read over `lock` and `lock-generation`.
    public func lockGeneration() async throws(ClusterError) -> LockGeneration {
        generation(in: try await client.list(prefix: lockKey))
    }

    func generation(in keys: [EtcdClient.KeyValue]) -> LockGeneration {
        let lock = keys.first { $0.key == lockKey }
        return LockGeneration(
            holder: lock.flatMap { try? JSONDecoder().decode(ClusterLock.Holder.self, from: $0.value) },
            revision: keys.first { $0.key == generationKey }?.modRevision ?? 0)
    }

    /// `lock`, `lock-generation` and `state` are neighbours in key order (`leader` and
    /// `history/` sort before them): one range read from `lock` to `state`, one request a
    /// tick instead of two (5–25 ms each under writers), and lock and state of one revision.
    public func lockGenerationAndState() async throws(ClusterError) -> (LockGeneration, ClusterState?) {
        let keys = try await client.range(lockKey, end: stateKey + "\u{0}")
        let kv = keys.first { $0.key == stateKey }
        Self.lastSeen.remember(kv, as: lastSeenKey)
        return (generation(in: keys), try kv.map { kv throws(ClusterError) in try decode(ClusterState.self, kv, what: "state") })
    }

    public func acquireLock(
        command: String, ifUnchangedSince generation: LockGeneration, leadership: (any Leadership)?
    ) async throws(ClusterError) -> (any HeldLock)? {
        guard generation.holder == nil else { return nil }
        let holder = ClusterLock.Holder.current(command: command)
        let leader = (leadership as? EtcdLeadership).flatMap { held in held.leadingLease.map { (lease: $0, leadership: held) } }
        return try await take(holder, try encode(holder), generation: generation.revision, on: leader)
    }

    public func lockHolder() async throws(ClusterError) -> ClusterLock.Holder? {
        guard let kv = try await client.get(lockKey) else { return nil }
        return try? JSONDecoder().decode(ClusterLock.Holder.self, from: kv.value)
    }

    public func leadership(id: String, ttl: Double) -> any Leadership {
        EtcdLeadership(client: client, key: leaderKey, id: id, ttl: max(2, Int(ttl.rounded(.up))))
    }

    public func removeAll() async throws(ClusterError) {
        try await client.delete(root, prefix: true)
    }

    func decode<T: Decodable>(_ type: T.Type, _ kv: EtcdClient.KeyValue, what: String) throws(ClusterError) -> T {
        do {
            return try JSONDecoder().decode(type, from: kv.value)
        } catch {
            throw ClusterError(
                "the \(what) in \(label) at \(kv.key) is damaged: \(error)",
                details: ["check it with: etcdctl get \(kv.key); remove it with etcdctl del \(kv.key) once the servers are checked"])
        }
    }

    func encode<T: Encodable>(_ value: T) throws(ClusterError) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        do {
            return try encoder.encode(value)
        } catch {
            throw ClusterError("cannot encode for etcd: \(error)")
        }
    }
}

/// What ``EtcdStore/updateState(_:)`` tries first: the state key as last read or written by
/// this process (nil: it did not exist), per etcd and key.
final class LastSeenState: @unchecked Sendable {
    private let lock = NSLock()
    private var seen: [String: EtcdClient.KeyValue?] = [:]

    /// `known` false: forget what was remembered (a write whose revision was not told).
    func remember(_ kv: EtcdClient.KeyValue?, as key: String, known: Bool = true) {
        lock.withLock { seen[key] = known ? .some(kv) : nil }
    }

    /// What was remembered (`fresh` false: it may have changed since), or nil when nothing is.
    func recall(_ key: String) -> (kv: EtcdClient.KeyValue?, fresh: Bool)? {
        lock.withLock { seen[key].map { ($0, false) } }
    }
}

/// The cluster lock in etcd: a key on a lease, renewed every third of its TTL while held.
/// Its epoch is the revision that created the key. A renewal that fails, or that finds the
/// lease gone (TTL 0), ends the holder's right to act: ``verify()`` fails from then on.
/// With `leadership`, the lease is the watcher's leadership's (renewed by both); released,
/// only the key goes.
final class EtcdHeldLock: HeldLock, @unchecked Sendable {
    let client: EtcdClient
    let key: String
    let lease: Int64
    let epoch: Int64
    let holder: ClusterLock.Holder
    let ttl: Int
    let leadership: EtcdLeadership?
    private let state = NSLock()
    private var renewed = ContinuousClock.now
    private var lost: String?
    private var keeper: Task<Void, Never>?

    init(
        client: EtcdClient, key: String, lease: Int64, epoch: Int64, holder: ClusterLock.Holder, ttl: Int,
        leadership: EtcdLeadership? = nil
    ) {
        self.client = client
        self.key = key
        self.lease = lease
        self.epoch = epoch
        self.holder = holder
        self.ttl = ttl
        self.leadership = leadership
        keeper = Task { [weak self, client] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(Double(ttl) / 3))
                if Task.isCancelled { break }
                let sent = ContinuousClock.now
                do throws(ClusterError) {
                    let left = try await client.keepAlive(lease)
                    self?.renewal(sent: sent, problem: left > 0 ? nil : "its lease had expired")
                } catch {
                    self?.renewal(sent: sent, problem: "its renewal failed: \(error.message)")
                }
            }
        }
    }

    private func renewal(sent: ContinuousClock.Instant, problem: String?) {
        state.withLock {
            if let problem {
                lost = lost ?? problem
            } else if lost == nil {
                renewed = sent
            }
        }
    }

    /// Still ours: renewed within half the TTL (a holder paused past that may have lost it,
    /// whatever it finds next), no failed renewal, and the key still the one it created.
    func verify() async throws(ClusterError) {
        try verifyLocally()
        let now = try await client.get(key)
        guard let now, now.createRevision == epoch, now.lease == lease else {
            state.withLock { lost = lost ?? "another holder has it" }
            let other = now.flatMap { try? JSONDecoder().decode(ClusterLock.Holder.self, from: $0.value) }
            throw ClusterError("the cluster lock is no longer held" + (other.map { ": \($0.description) has it" } ?? " (its key is gone)"))
        }
    }

    /// No failed renewal, and renewed within half the TTL.
    func verifyLocally() throws(ClusterError) {
        let (problem, age) = state.withLock { (lost, ContinuousClock.now - renewed) }
        if let problem { throw ClusterError("the cluster lock is no longer held: \(problem)") }
        if age > .seconds(Double(ttl) / 2) {
            throw ClusterError("the cluster lock was last renewed \(age) ago, past half its \(ttl) s lease: it may have expired")
        }
    }

    func release() async {
        keeper?.cancel()
        keeper = nil
        if let leadership {
            // The leader's lease stays: the key alone goes, if it is still this one. A key
            // left there would hold the lock for as long as this watcher leads (the lease is
            // renewed), and this watcher would wait on itself: a delete that fails is tried
            // again, then the leadership is given up, so that nobody renews the lease and it
            // ends within its TTL, with the key (next tick campaigns afresh).
            for attempt in 1...3 {
                if (try? await client.delete(key, ifCreated: epoch)) != nil { return }
                try? await Task.sleep(for: .milliseconds(100 * attempt))
            }
            await leadership.resign()
            return
        }
        // Revoking the lease deletes the key with it.
        await client.revoke(lease)
    }
}

/// The watchers' leadership in etcd: a leader key created by a transaction only when absent
/// (create_revision = 0), on a lease of `ttl` seconds renewed every TTL/3 in the background.
/// A leader that has not renewed within TTL/2 stops counting itself as leader, well before
/// its lease can expire and another watcher can take the key.
public final class EtcdLeadership: Leadership, @unchecked Sendable {
    let client: EtcdClient
    let key: String
    let id: String
    let ttl: Int
    private let lock = NSLock()
    private var lease: Int64?
    private var renewed: ContinuousClock.Instant?
    private var renewer: Task<Void, Never>?

    init(client: EtcdClient, key: String, id: String, ttl: Int) {
        self.client = client
        self.key = key
        self.id = id
        self.ttl = ttl
    }

    deinit { renewer?.cancel() }

    public var isLeader: Bool { leadingLease != nil }

    /// The lease of the leader key while this watcher leads (renewed within TTL/2).
    var leadingLease: Int64? {
        lock.withLock {
            guard let lease, let renewed, ContinuousClock.now - renewed < .seconds(Double(ttl) / 2) else { return nil }
            return lease
        }
    }

    public func campaign() async -> Bool {
        if lock.withLock({ lease != nil }) {
            if isLeader { return true }
            // Not renewed in time: the lease may be gone, or going. Start afresh.
            await resign()
        }
        let started = ContinuousClock.now
        guard let granted = try? await client.grant(ttl: ttl) else { return false }
        guard let (done, _, _, _) = try? await client.put(key, Data(id.utf8), lease: granted, ifModRevision: nil), done else {
            await client.revoke(granted)
            return false
        }
        lock.withLock {
            lease = granted
            renewed = started
            renewer = Task { [weak self] in await self?.renew(granted) }
        }
        return true
    }

    /// Every TTL/3: keepalive, and the key must still be ours. Stops on the first failure
    /// to say so (isLeader lapses by itself at TTL/2).
    private func renew(_ held: Int64) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(Double(ttl) / 3))
            if Task.isCancelled { return }
            let sent = ContinuousClock.now
            guard let left = try? await client.keepAlive(held), left > 0,
                let kv = try? await client.get(key), kv.lease == held
            else { continue }
            lock.withLock { if lease == held { renewed = sent } }
        }
    }

    public func leader() async -> String? {
        guard let kv = try? await client.get(key) else { return nil }
        return String(decoding: kv.value, as: UTF8.self)
    }

    public func resign() async {
        let held: Int64? = lock.withLock {
            renewer?.cancel()
            renewer = nil
            defer {
                lease = nil
                renewed = nil
            }
            return lease
        }
        if let held { await client.revoke(held) }
    }
}
