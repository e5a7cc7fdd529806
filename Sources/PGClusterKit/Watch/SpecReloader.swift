import Dispatch
import Foundation

/// What a running watcher watches: the spec, and the backend and credentials made from it.
/// On SIGHUP, or when the spec file's modification time changed (looked at between ticks),
/// the file is read again and validated first; a spec that does not load, or that changes
/// what cannot change under a running watcher (``SpecReload/refusal(old:new:)``), is logged
/// in one line and the old one kept. A node that `apply` added is then probed from the next
/// tick on, and can be a failover candidate.
public final class SpecReloader: @unchecked Sendable {
    /// The backend and credentials made from one spec.
    public struct World: Sendable {
        public var control: any ServerControl
        public var credentials: Credentials

        public init(control: any ServerControl, credentials: Credentials) {
            self.control = control
            self.credentials = credentials
        }

        public var spec: ClusterSpec { control.spec }
    }

    /// What a look at the file found.
    public enum Outcome: Sendable, Equatable {
        /// The new spec is in use; the line says what changed.
        case reloaded(String)
        /// The file was not taken; the line says why, and the old spec stays.
        case refused(String)
    }

    private let lock = NSLock()
    private var world: World
    private var modified: Date?
    private var hangup = false
    private var source: DispatchSourceSignal?
    private let load: @Sendable () throws(ClusterError) -> World
    private let reloads: Bool

    /// - Parameters:
    ///   - reloads: false: the spec in use is never replaced (SIGHUP is then ignored).
    ///   - load: reads and validates the spec file, and builds its backend and credentials.
    public init(_ world: World, reloads: Bool = true, load: @escaping @Sendable () throws(ClusterError) -> World) {
        self.world = world
        self.load = load
        self.reloads = reloads
        modified = Self.modificationTime(world.spec.file)
    }

    public var current: World { lock.withLock { world } }

    /// Notes SIGHUP from now on (it no longer ends the process); the reload itself happens
    /// between ticks, in ``reloadIfAsked()``.
    public func listenForHangup() {
        guard reloads else { return }
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        source.setEventHandler { [weak self] in self?.lock.withLock { self?.hangup = true } }
        source.resume()
        lock.withLock { self.source = source }
    }

    /// Reloads when SIGHUP came or the file changed since the last look; nil when neither.
    public func reloadIfAsked() -> Outcome? {
        guard reloads else { return nil }
        let (asked, old) = lock.withLock { () -> (Bool, World) in
            defer { hangup = false }
            return (hangup, world)
        }
        let time = Self.modificationTime(old.spec.file)
        let changed = time != lock.withLock { modified }
        guard asked || changed else { return nil }
        lock.withLock { modified = time }
        let why = asked ? "SIGHUP" : "\(old.spec.file) changed"
        let new: World
        do throws(ClusterError) {
            new = try load()
        } catch {
            return .refused("\(why): the spec was not reloaded, the old one stays: \(error.message)")
        }
        if let refusal = SpecReload.refusal(old: old.spec, new: new.spec) {
            return .refused("\(why): the spec was not reloaded, the old one stays: \(refusal)")
        }
        lock.withLock { world = new }
        return .reloaded("\(why): spec reloaded (\(new.spec.nodes.count) nodes): \(SpecReload.summary(old: old.spec, new: new.spec))")
    }

    static func modificationTime(_ path: String) -> Date? {
        (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
    }
}

extension Watcher {
    /// Between ticks: takes an edited spec (SIGHUP, or the file changed), logging one line.
    /// Returns whether a new spec is in use.
    @discardableResult
    func reportReload(lastKey: inout String?) -> Bool {
        switch reloader.reloadIfAsked() {
        case .reloaded(let line)?:
            logger.event("reloaded", line)
            lastKey = nil
            return true
        case .refused(let line)?:
            logger.event("reload-refused", line, level: .warning)
            return false
        case nil:
            return false
        }
    }
}

extension Watcher {
    /// The nodes a tick probes: those of the spec that are members of the cluster. A node
    /// just written into the spec is not watched (nor started) until `apply` has added it
    /// and recorded it; one still recorded but out of the spec is `apply`'s to remove.
    /// States from before `apply` recorded members: every node of the spec.
    func watched(_ state: ClusterState?) -> [NodeSpec] {
        guard let members = state?.nodes.map({ Set($0.map(\.name)) }) else { return spec.nodes }
        let nodes = spec.nodes.filter { members.contains($0.name) }
        return nodes.isEmpty ? spec.nodes : nodes
    }
}
