import Foundation
import Testing

@testable import PGClusterKit

/// A postmaster.pid left by a killed server names a PID that the kernel gives out again
/// (PIDs wrap, at 32768 on this machine): that process is not the postmaster, is never
/// counted as a running server, and is never fenced. A postmaster works in its data
/// directory; the checks tell them apart by the process's working directory.
@Suite("a stale postmaster.pid whose PID now names another process")
struct StalePidTests {
    /// A scratch "data directory" with a postmaster.pid naming `pid`.
    static func dataDirectory(naming pid: pid_t) throws -> String {
        let folder = "/tmp/pgcluster-stalepid-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try "\(pid)\n\(folder)\n1700000000\n5432\n".write(toFile: "\(folder)/postmaster.pid", atomically: true, encoding: .utf8)
        return folder
    }

    /// A process that works in `folder` (as a postmaster works in its data directory).
    static func worker(in folder: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sleep")
        process.arguments = ["30"]
        process.currentDirectoryURL = URL(fileURLWithPath: folder)
        try process.run()
        return process
    }

    /// The ssh hosts' script, run by /bin/sh here: its exit status and output.
    static func findPostmaster(_ folder: String) throws -> (status: Int32, output: String) {
        let result = try TestSupport.run("/bin/sh", ["-c", SSHHost.findPostmaster, "sh", folder], in: "/tmp")
        return (result.status, result.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    @Test("a live PID that works elsewhere (this test process) is no postmaster, locally or by the ssh hosts' script")
    func otherProcess() async throws {
        let folder = try Self.dataDirectory(naming: getpid())
        defer { try? FileManager.default.removeItem(atPath: folder) }
        #expect(try await LocalHost(serverUser: OSUser.current).postmasterPID(dataDir: folder) == nil)
        let found = try Self.findPostmaster(folder)
        #expect(found.status == 3, "\(found)")
    }

    @Test("a live PID that works in the data directory is the postmaster, both ways")
    func postmaster() async throws {
        let folder = try Self.dataDirectory(naming: 0)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let process = try Self.worker(in: folder)
        defer {
            // SIGKILL: the test process may hold SIGTERM blocked, and its children inherit that.
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try "\(process.processIdentifier)\n".write(toFile: "\(folder)/postmaster.pid", atomically: true, encoding: .utf8)
        #expect(try await LocalHost(serverUser: OSUser.current).postmasterPID(dataDir: folder) == process.processIdentifier)
        let found = try Self.findPostmaster(folder)
        #expect(found.status == 0 && found.output == "\(process.processIdentifier)", "\(found)")
    }

    @Test("a postmaster that ends while the ssh hosts' script asks about it is not running, never \"cannot tell\"")
    func endsWhileAsked() throws {
        let folder = try Self.dataDirectory(naming: 0)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // Gone before the script looks: proven not running.
        let ended = try Self.worker(in: folder)
        kill(ended.processIdentifier, SIGKILL)
        ended.waitUntilExit()
        try "\(ended.processIdentifier)\n".write(toFile: "\(folder)/postmaster.pid", atomically: true, encoding: .utf8)
        #expect(try Self.findPostmaster(folder).status == 3)
        // Gone while it looks (a CI run hit this: a server stopping as `destroy` asked).
        for _ in 0..<30 {
            let process = try Self.worker(in: folder)
            try "\(process.processIdentifier)\n".write(toFile: "\(folder)/postmaster.pid", atomically: true, encoding: .utf8)
            let killer = Thread {
                usleep(UInt32.random(in: 0...4000))
                kill(process.processIdentifier, SIGKILL)
            }
            killer.start()
            let found = try Self.findPostmaster(folder)
            process.waitUntilExit()
            #expect(found.status == 0 || found.status == 3, "\(found)")
        }
    }

    @Test("start's stale-file clearing removes a postmaster.pid whose PID works elsewhere, and keeps one whose PID works in the folder")
    func clearStale() throws {
        let folder = try Self.dataDirectory(naming: getpid())
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let lock = "\(folder)/.s.PGSQL.5432.lock"
        try "\(getpid())\n".write(toFile: lock, atomically: true, encoding: .utf8)
        let cleared = try TestSupport.run("/bin/sh", ["-c", HostCluster.clearStale, "sh", folder, lock], in: "/tmp")
        #expect(cleared.status == 0, "\(cleared)")
        #expect(!FileManager.default.fileExists(atPath: "\(folder)/postmaster.pid"))
        #expect(!FileManager.default.fileExists(atPath: lock))

        let process = try Self.worker(in: folder)
        defer {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try "\(process.processIdentifier)\n".write(toFile: "\(folder)/postmaster.pid", atomically: true, encoding: .utf8)
        _ = try TestSupport.run("/bin/sh", ["-c", HostCluster.clearStale, "sh", folder, lock], in: "/tmp")
        #expect(FileManager.default.fileExists(atPath: "\(folder)/postmaster.pid"), "a live postmaster's file was removed")
    }
}
