import Foundation

/// The cluster's memory in etcd, under `<prefix>/<cluster>/`: `state` (JSON), `history`
/// (a JSON array), `lock` (the cluster lock: its holder, on a lease kept alive while held)
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
        client = EtcdClient(endpoints: settings.endpoints, timeout: settings.timeout)
    }

    public var label: String { "etcd \(settings.endpoints.map(\.absoluteString).joined(separator: ","))" }
    var root: String { "\(settings.prefix)/\(spec.name)/" }
    var stateKey: String { root + "state" }
    var historyKey: String { root + "history" }
    var lockKey: String { root + "lock" }
    var leaderKey: String { root + "leader" }

    public func loadState() async throws(ClusterError) -> ClusterState? {
        guard let kv = try await client.get(stateKey) else { return nil }
        return try decode(ClusterState.self, kv, what: "state")
    }

    public func updateState(_ change: @Sendable (ClusterState?) throws(ClusterError) -> ClusterState) async throws(ClusterError)
        -> ClusterState
    {
        for _ in 0..<20 {
            let current = try await client.get(stateKey)
            let state = try change(try current.map { kv throws(ClusterError) in try decode(ClusterState.self, kv, what: "state") })
            let (done, _) = try await client.put(stateKey, try encode(state), ifModRevision: current?.modRevision)
            if done { return state }
        }
        throw ClusterError("the state in \(label) kept changing under this command; try again")
    }

    public func loadHistory() async throws(ClusterError) -> [HistoryEvent] {
        guard let kv = try await client.get(historyKey) else { return [] }
        return try decode([HistoryEvent].self, kv, what: "history")
    }

    public func appendHistory(_ event: HistoryEvent) async throws(ClusterError) {
        for _ in 0..<20 {
            let current = try await client.get(historyKey)
            var events = try current.map { kv throws(ClusterError) in try decode([HistoryEvent].self, kv, what: "history") } ?? []
            events.append(event)
            if try await client.put(historyKey, try encode(events), ifModRevision: current?.modRevision).done { return }
        }
        throw ClusterError("the history in \(label) kept changing under this command; try again")
    }

    public func acquireLock(command: String, wait: Double) async throws(ClusterError) -> any HeldLock {
        let holder = ClusterLock.Holder.current(command: command)
        let value = try encode(holder)
        let deadline = ContinuousClock.now + .seconds(wait)
        var announced = false
        while true {
            let lease = try await client.grant(ttl: Self.lockTTL)
            let (done, current) = try await client.put(lockKey, value, lease: lease, ifModRevision: nil)
            if done {
                return EtcdHeldLock(client: client, key: lockKey, lease: lease, holder: holder, ttl: Self.lockTTL)
            }
            await client.revoke(lease)
            let other = current.flatMap { try? JSONDecoder().decode(ClusterLock.Holder.self, from: $0.value) }
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

/// The cluster lock in etcd: a key on a lease, renewed every third of its TTL while held.
final class EtcdHeldLock: HeldLock, @unchecked Sendable {
    let client: EtcdClient
    let key: String
    let lease: Int64
    let holder: ClusterLock.Holder
    private var keeper: Task<Void, Never>?

    init(client: EtcdClient, key: String, lease: Int64, holder: ClusterLock.Holder, ttl: Int) {
        self.client = client
        self.key = key
        self.lease = lease
        self.holder = holder
        keeper = Task { [client] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(Double(ttl) / 3))
                if Task.isCancelled { break }
                _ = try? await client.keepAlive(lease)
            }
        }
    }

    func release() async {
        keeper?.cancel()
        keeper = nil
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

    public var isLeader: Bool {
        lock.withLock {
            guard lease != nil, let renewed else { return false }
            return ContinuousClock.now - renewed < .seconds(Double(ttl) / 2)
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
        guard let (done, _) = try? await client.put(key, Data(id.utf8), lease: granted, ifModRevision: nil), done else {
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
