import Foundation
import Testing

@testable import PGClusterKit

#if canImport(Glibc)
    import Glibc
#endif

@Suite("sd_notify: one datagram to NOTIFY_SOCKET")
struct SystemdNotifyTests {
    /// A datagram socket bound at `path` (`@name`: abstract), as systemd's is; returns its fd.
    static func bind(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        try #require(fd >= 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)! + bytes.count + (bytes.first == 0 ? 0 : 1))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) }
        }
        try #require(bound == 0, "bind \(path): errno \(errno)")
        // Never wait for ever: a datagram that was not sent fails the test in 2 s.
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    static func receive(_ fd: Int32) -> String? {
        var buffer = [UInt8](repeating: 0, count: 512)
        let count = recv(fd, &buffer, buffer.count, 0)
        return count < 0 ? nil : String(decoding: buffer.prefix(count), as: UTF8.self)
    }

    /// Runs `body` with a notifier whose NOTIFY_SOCKET is a fresh path socket, and its fd.
    static func withPathSocket<T>(_ body: (SystemdNotifier, Int32) async throws -> T) async throws -> T {
        let path = "/tmp/pgcluster-notify-\(UUID().uuidString.prefix(8)).sock"
        let fd = try bind(path)
        defer {
            close(fd)
            unlink(path)
        }
        return try await body(SystemdNotifier(environment: ["NOTIFY_SOCKET": path]), fd)
    }

    @Test("READY=1, WATCHDOG=1 and STOPPING=1 arrive at a socket bound at a path")
    func pathSocket() async throws {
        try await Self.withPathSocket { notifier, fd in
        #expect(notifier.enabled)
        notifier.ready()
        #expect(Self.receive(fd) == "READY=1")
        notifier.watchdog()
        #expect(Self.receive(fd) == "WATCHDOG=1")
        notifier.stopping()
        #expect(Self.receive(fd) == "STOPPING=1")
        }
    }

    @Test("keepingAlive: WATCHDOG=1 goes on arriving while a long action runs, and none after it")
    func keepingAlive() async throws {
        try await Self.withPathSocket { notifier, fd in
        // The action lasts until three pings have arrived (or 60 s): a busy machine makes it
        // slower, never wrong. Each receive waits at most 2 s, on a thread of its own.
        let seen = await notifier.keepingAlive(every: 0.05) { () async -> [String] in
            var seen: [String] = []
            let deadline = Date().addingTimeInterval(60)
            while seen.count < 3 && Date() < deadline {
                if let message = await Blocking.run({ Self.receive(fd) }) { seen.append(message) }
            }
            return seen
        }
        #expect(seen == ["WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1"], "\(seen)")
        // After it returned, nothing more is sent: only what was in flight before may remain.
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        while Self.receive(fd) != nil {}
        try? await Task.sleep(for: .milliseconds(300))
        #expect(Self.receive(fd) == nil, "a ping after keepingAlive returned")
        // Without NOTIFY_SOCKET it only runs the action.
        #expect(await SystemdNotifier(environment: [:]).keepingAlive(every: 0.05) { 7 } == 7)
        }
    }

    @Test("an abstract socket (@name), as systemd uses")
    func abstractSocket() throws {
        let name = "@pgcluster-notify-\(UUID().uuidString.prefix(8))"
        let fd = try Self.bind(name)
        defer { close(fd) }
        #expect(SystemdNotifier(socketPath: name).notify("READY=1\nSTATUS=watching"))
        #expect(Self.receive(fd) == "READY=1\nSTATUS=watching")
    }

    @Test("without NOTIFY_SOCKET, or with nothing listening, nothing is sent and nothing fails")
    func absent() {
        #expect(!SystemdNotifier(environment: [:]).enabled)
        #expect(!SystemdNotifier(environment: ["NOTIFY_SOCKET": ""]).notify("READY=1"))
        #expect(!SystemdNotifier(socketPath: "/tmp/pgcluster-no-such-socket").notify("READY=1"))
    }
}
