import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// sd_notify without libsystemd: one AF_UNIX datagram to `$NOTIFY_SOCKET`. systemd sets it
/// for a unit with `Type=notify`; the watcher sends `READY=1` after its first tick (the unit
/// is up once the cluster has been looked at once) and `WATCHDOG=1` on every tick, so with
/// `WatchdogSec=` a watcher whose loop stops turning is killed and restarted. Without the
/// variable (run by hand) it does nothing.
public struct SystemdNotifier: Sendable {
    /// A path, or `@name` for Linux's abstract namespace; nil: not run by systemd.
    public let socketPath: String?

    public init(socketPath: String?) {
        self.socketPath = socketPath.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// From `NOTIFY_SOCKET` in the environment.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.init(socketPath: environment["NOTIFY_SOCKET"])
    }

    public var enabled: Bool { socketPath != nil }

    public func ready() { notify("READY=1") }
    public func watchdog() { notify("WATCHDOG=1") }
    public func stopping() { notify("STOPPING=1") }

    /// Runs `body`, telling the watchdog every `seconds` meanwhile that the watcher lives: for
    /// an action that may outlast `WatchdogSec` (a rejoin or a start that clones a large
    /// database). Safe because every step of an action has a deadline of its own (each
    /// subprocess, each libpq call), so an action cannot hang; the loop's own ticks still
    /// stop the pings when the loop stops turning.
    public func keepingAlive<T>(every seconds: Double = 2, _ body: () async -> T) async -> T {
        guard enabled else { return await body() }
        let pinger = Task {
            while !Task.isCancelled {
                watchdog()
                try? await Task.sleep(for: .seconds(seconds))
            }
        }
        let result = await body()
        pinger.cancel()
        // No ping after this returns.
        await pinger.value
        return result
    }

    /// Sends `state` (newline-separated `KEY=value` lines) in one datagram. Returns whether
    /// it was sent; a failure is not an error for the watcher (systemd may be restarting).
    @discardableResult
    public func notify(_ state: String) -> Bool {
        guard let socketPath else { return false }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var path = Array(socketPath.utf8)
        // `@name`: the abstract namespace, whose address starts with a NUL byte.
        if path.first == UInt8(ascii: "@") { path[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard path.count < capacity else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            buffer.copyBytes(from: path)
        }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)! + path.count + (path.first == 0 ? 0 : 1))
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let bytes = Array(state.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), address, length) }
            }
        }
        return sent == bytes.count
    }
}
