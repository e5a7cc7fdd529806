import Foundation

/// Where pgcluster remembers a cluster between commands and shares it between machines:
/// the state (primary, synchronous mode, pause), the history, the cluster lock, and the
/// watchers' leadership. Two implementations pass the same conformance table: files in
/// `local.dir` (``FileStore``, the default) and etcd (``EtcdStore``, `store.etcd`).
///
/// The live servers stay the truth; a store only remembers.
public protocol ClusterStore: Sendable {
    /// How messages name it: `local.dir /var/lib/x` or `etcd http://10.0.0.5:2379`.
    var label: String { get }

    /// The state, or nil before anything was recorded; an error when it cannot be read.
    func loadState() async throws(ClusterError) -> ClusterState?

    /// Changes the state atomically: `change` gets what is stored now (nil: nothing yet)
    /// and returns what to store. Another writer in between makes it run again.
    @discardableResult
    func updateState(_ change: @Sendable (ClusterState?) throws(ClusterError) -> ClusterState) async throws(ClusterError)
        -> ClusterState

    func loadHistory() async throws(ClusterError) -> [HistoryEvent]
    func appendHistory(_ event: HistoryEvent) async throws(ClusterError)

    /// Takes the cluster lock for `command`, waiting up to `wait` seconds; fails (exit 1)
    /// naming the holder when it cannot. A holder that dies loses it: the kernel drops a
    /// file lock at once, etcd a lease after its TTL.
    func acquireLock(command: String, wait: Double) async throws(ClusterError) -> any HeldLock

    /// Who holds the cluster lock, or nil.
    func lockHolder() async throws(ClusterError) -> ClusterLock.Holder?

    /// Whether a watcher looks before it takes the lock (``lockGeneration()``, then
    /// ``acquireLock(command:ifUnchangedSince:)`` only to act): etcd, where every taking is
    /// two writes that etcd keeps until it is compacted, and a watcher that took the lock
    /// each probe added four revisions a second. Files: a flock costs nothing, the watcher
    /// takes it every probe.
    var looksBeforeLocking: Bool { get }

    /// Who holds the lock now, and a token that every taking of it changes.
    func lockGeneration() async throws(ClusterError) -> LockGeneration

    /// ``lockGeneration()`` and ``loadState()`` together: what a watcher that looks before
    /// it locks reads each tick (etcd: one range read, of one revision).
    func lockGenerationAndState() async throws(ClusterError) -> (LockGeneration, ClusterState?)

    /// Takes the lock for `command` only when nobody holds it and nobody took it since
    /// `generation` was read; nil otherwise (then look again). `leadership`: the watcher's,
    /// when it leads (etcd puts the lock on its lease: no lease of its own to grant).
    func acquireLock(
        command: String, ifUnchangedSince generation: LockGeneration, leadership: (any Leadership)?
    ) async throws(ClusterError) -> (any HeldLock)?

    /// The watchers' leadership, to campaign for as `id` (only the leader acts).
    func leadership(id: String, ttl: Double) -> any Leadership

    /// Removes everything the store keeps for the cluster (`destroy`).
    func removeAll() async throws(ClusterError)
}

/// The cluster lock as a watcher saw it before looking at the servers: its holder (nil:
/// free) and a revision that every taking of it changes.
public struct LockGeneration: Sendable, Equatable {
    public var holder: ClusterLock.Holder?
    public var revision: Int64

    public init(holder: ClusterLock.Holder?, revision: Int64) {
        self.holder = holder
        self.revision = revision
    }
}

/// A cluster lock held; released by ``release()`` (or by the holder's death).
///
/// The epoch (docs/ARCHITECTURE.md, "Epoch"): a holder that can lose its lock while it
/// still runs (an etcd lease that expired while the process was paused) must not go on
/// acting. ``verify()`` says whether it still holds it, and is called before each
/// irreversible step (``HeldLocks/verify(before:)``); the state writes of a holder are
/// conditional on its epoch in the store itself.
public protocol HeldLock: Sendable {
    var holder: ClusterLock.Holder { get }
    /// What identifies this holding among all the lock's holders: the etcd revision that
    /// created its key; 0 for a kernel flock, which its holder cannot lose while it lives.
    var epoch: Int64 { get }
    /// Throws when the lock is no longer this holder's (lease expired, renewal failed,
    /// another holder took it).
    func verify() async throws(ClusterError)
    /// What this process can tell without asking the store (a renewal that failed, or is
    /// overdue): before a step whose first act is a state write, which the store fences by
    /// the epoch itself, so that asking it first would only add a request.
    func verifyLocally() throws(ClusterError)
    func release() async
}

extension HeldLock {
    public func verifyLocally() throws(ClusterError) {}
}

/// The cluster lock this process holds now, if any. A command holds one for its whole run;
/// the watcher one per action. Process-wide, so that the steps deep inside an operation
/// check it without every layer passing it down.
public enum HeldLocks {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var current: (any HeldLock)?

    static func set(_ held: (any HeldLock)?) { lock.withLock { current = held } }

    public static var held: (any HeldLock)? { lock.withLock { current } }

    /// Before an irreversible step (promote, fence, synchronous_standby_names, rewind): the
    /// lock must still be this process's. A holder that lost it stops here and says so.
    /// `fencedWrite`: the step begins with a state write, conditional on the epoch in the
    /// store (``ClusterStore/updateState(_:)``), which is then the store's answer: only what
    /// this process knows is checked first (no read of the lock), and a write that fails
    /// stops the step the same way.
    public static func verify(
        before step: String, fencedWrite: (() async throws(ClusterError) -> Void)? = nil
    ) async throws(ClusterError) {
        try Cancelled.check(before: step)
        if let held {
            do {
                if fencedWrite == nil { try await held.verify() } else { try held.verifyLocally() }
            } catch {
                throw ClusterError(
                    "stopped before \(step): \(error.message)",
                    details: ["another pgcluster command or watcher may have acted meanwhile; check with: pgcluster status"])
            }
        }
        do {
            try await fencedWrite?()
        } catch {
            throw ClusterError("stopped before \(step): \(error.message)", details: error.details)
        }
    }
}

/// One watcher's claim to lead. `campaign()` tries to take or keep it, `isLeader` says
/// whether it may act now: with a lease, only while it was renewed within half its TTL,
/// so that it stops acting before the lease can expire and another can take over.
public protocol Leadership: AnyObject, Sendable {
    /// Tries to become the leader, or to renew the lease when it already is; returns
    /// whether it leads. A store that cannot be reached makes it false, never an error.
    func campaign() async -> Bool
    var isLeader: Bool { get }
    /// Who leads now, as the store says (nil: nobody, or unknown).
    func leader() async -> String?
    /// Gives leadership up (on shutdown), so another takes over at once.
    func resign() async
}

extension ClusterStore {
    public func lockGenerationAndState() async throws(ClusterError) -> (LockGeneration, ClusterState?) {
        (try await lockGeneration(), try await loadState())
    }

    public func acquireLock(command: String, ifUnchangedSince generation: LockGeneration) async throws(ClusterError) -> (any HeldLock)? {
        try await acquireLock(command: command, ifUnchangedSince: generation, leadership: nil)
    }

    public func acquireLock(command: String) async throws(ClusterError) -> any HeldLock {
        try await acquireLock(command: command, wait: ClusterLock.defaultWait)
    }

    /// Runs `body` holding the cluster lock.
    public func holdingLock<T>(command: String, wait: Double = ClusterLock.defaultWait, _ body: () async throws -> T)
        async throws -> T
    {
        let lock = try await acquireLock(command: command, wait: wait)
        HeldLocks.set(lock)
        do {
            let result = try await body()
            HeldLocks.set(nil)
            await lock.release()
            return result
        } catch {
            HeldLocks.set(nil)
            await lock.release()
            throw error
        }
    }
}

/// The spec's store: etcd when `store.etcd` is given, else files in local.dir. One per
/// cluster and process (an etcd store keeps its connections and the raft term it has seen).
public enum Stores {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var made: [String: any ClusterStore] = [:]

    public static func of(_ spec: ClusterSpec) -> any ClusterStore {
        guard let etcd = spec.store.etcd else { return FileStore(spec: spec) }
        let key = "\(spec.file)|\(spec.name)|\(etcd)"
        return lock.withLock {
            if let store = made[key] { return store }
            let store = EtcdStore(spec: spec, settings: etcd)
            made[key] = store
            return store
        }
    }
}

// MARK: Files

/// The state, history and lock as files in local.dir (0600 each); the lock and the
/// watchers' leadership are kernel `flock`s, dropped when their holder dies.
public struct FileStore: ClusterStore {
    public let spec: ClusterSpec
    var layout: LocalLayout { LocalLayout(spec: spec) }

    public init(spec: ClusterSpec) { self.spec = spec }

    public var label: String { "local.dir \(spec.local.dir)" }

    public func loadState() async throws(ClusterError) -> ClusterState? {
        try ClusterState.load(layout.stateFile)
    }

    public func updateState(_ change: @Sendable (ClusterState?) throws(ClusterError) -> ClusterState) async throws(ClusterError)
        -> ClusterState
    {
        // Writers hold the cluster lock (or are the one watcher): read, change, write atomically.
        let state = try change(try ClusterState.load(layout.stateFile))
        try state.save(to: layout.stateFile)
        return state
    }

    public func loadHistory() async throws(ClusterError) -> [HistoryEvent] { try History.load(spec: spec) }

    public func appendHistory(_ event: HistoryEvent) async throws(ClusterError) { try History.append(event, spec: spec) }

    public func acquireLock(command: String, wait: Double) async throws(ClusterError) -> any HeldLock {
        try await ClusterLock.acquire(spec: spec, command: command, wait: wait)
    }

    public func lockHolder() async throws(ClusterError) -> ClusterLock.Holder? { ClusterLock.currentHolder(spec: spec) }

    public var looksBeforeLocking: Bool { false }

    public func lockGeneration() async throws(ClusterError) -> LockGeneration {
        LockGeneration(holder: ClusterLock.currentHolder(spec: spec), revision: 0)
    }

    public func acquireLock(
        command: String, ifUnchangedSince generation: LockGeneration, leadership: (any Leadership)?
    ) async throws(ClusterError) -> (any HeldLock)? {
        try? await acquireLock(command: command, wait: 0)
    }

    public func leadership(id: String, ttl: Double) -> any Leadership {
        FileLeadership(path: layout.watchLockFile, id: id)
    }

    public func removeAll() async throws(ClusterError) {
        for file in [layout.stateFile, layout.historyFile] { unlink(file) }
    }
}

extension ClusterLock: HeldLock {
    /// A kernel flock: its holder cannot lose it while it lives, and on one machine nobody
    /// else can take it meanwhile, so there is no epoch to compare.
    public var epoch: Int64 { 0 }
    public func verify() async throws(ClusterError) {}
    public func release() async { releaseNow() }
}

/// One watcher per local.dir: an flock held for as long as it leads.
public final class FileLeadership: Leadership, @unchecked Sendable {
    let path: String
    let id: String
    private let lock = NSLock()
    private var fd: Int32 = -1

    init(path: String, id: String) {
        self.path = path
        self.id = id
    }

    deinit { if fd >= 0 { close(fd) } }

    public func campaign() async -> Bool {
        lock.withLock {
            if fd >= 0 { return true }
            let folder = (path as NSString).deletingLastPathComponent
            try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            let opened = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            guard opened >= 0 else { return false }
            guard flock(opened, LOCK_EX | LOCK_NB) == 0 else {
                close(opened)
                return false
            }
            _ = ftruncate(opened, 0)
            let bytes = Array(id.utf8)
            _ = pwrite(opened, bytes, bytes.count, 0)
            fd = opened
            return true
        }
    }

    public var isLeader: Bool { lock.withLock { fd >= 0 } }

    public func leader() async -> String? {
        if isLeader { return id }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8), !text.isEmpty else { return nil }
        let probe = open(path, O_RDONLY | O_CLOEXEC)
        defer { if probe >= 0 { close(probe) } }
        // Nobody holds it: what the file says is an old leader's name.
        if probe >= 0, flock(probe, LOCK_SH | LOCK_NB) == 0 { return nil }
        return text
    }

    public func resign() async {
        lock.withLock {
            guard fd >= 0 else { return }
            _ = ftruncate(fd, 0)
            close(fd)
            fd = -1
        }
    }
}
