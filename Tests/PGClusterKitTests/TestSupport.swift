import Foundation
import Testing

@testable import PGClusterKit

/// Paths and helpers shared by the unit tests.
enum TestSupport {
    /// The package root, found from this file's own path (Tests/PGClusterKitTests/TestSupport.swift).
    static let repoRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()
        .deletingLastPathComponent()
        .deletingLastPathComponent()

    static var examplesDir: URL { repoRoot.appendingPathComponent("examples") }
    static var templatesDir: URL { repoRoot.appendingPathComponent("templates") }
    static var goldenDir: URL { repoRoot.appendingPathComponent("Tests/PGClusterKitTests/Golden") }

    /// The example specs shipped in examples/, by file name (`any1.yaml`, ...), sorted.
    static let exampleNames: [String] = {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: repoRoot.appendingPathComponent("examples").path)) ?? []
        return names.filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted()
    }()

    static func examplePath(_ name: String) -> String {
        examplesDir.appendingPathComponent(name).path
    }

    /// The problems `SpecLoader.parse` reports for `yaml`, or an empty list when it is valid.
    static func problems(_ yaml: String, file: String = "/specs/pgcluster.yaml") -> [SpecProblem] {
        do {
            _ = try SpecLoader.parse(yaml, file: file)
            return []
        } catch {
            return error.problems
        }
    }

    /// A fresh folder under /tmp, removed by the caller (`defer { TestSupport.remove(dir) }`).
    static func makeTempDir(_ label: String) throws -> String {
        let path = "/tmp/pgcluster-test-\(label)-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        return path
    }

    static func remove(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    static func write(_ text: String, to path: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    /// How a child process ended.
    struct ProcessOutcome: Sendable {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `executable` with an argument array (never a shell) in `folder`, its output
    /// collected in files there, and waits for it.
    ///
    /// posix_spawn and waitpid rather than Foundation's `Process`: on Linux, `Process`
    /// learns that a child ended only when a socket the child inherited closes, so
    /// `pg_ctl start` never returns while the server it leaves behind keeps that socket.
    /// Here the child gets exactly stdin, stdout and stderr, and every other descriptor
    /// is closed, so a daemon it starts holds nothing of ours.
    static func run(
        _ executable: String, _ arguments: [String], in folder: String, environment: [String: String] = [:]
    ) throws -> ProcessOutcome {
        let tag = UUID().uuidString.prefix(8)
        let outPath = "\(folder)/.stdout-\(tag)", errPath = "\(folder)/.stderr-\(tag)"
        defer {
            try? FileManager.default.removeItem(atPath: outPath)
            try? FileManager.default.removeItem(atPath: errPath)
        }
        #if canImport(Darwin)
            var actions: posix_spawn_file_actions_t? = nil
            var attributes: posix_spawnattr_t? = nil
        #else
            var actions = posix_spawn_file_actions_t()
            var attributes = posix_spawnattr_t()
        #endif
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        #if canImport(Darwin)
            posix_spawn_file_actions_addchdir_np(&actions, folder)
        #else
            guard GlibcSpawn.addchdir(&actions, folder) == 0, GlibcSpawn.addclosefrom(&actions, 3) == 0 else {
                throw POSIXError(.ENOSYS)
            }
        #endif
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGINT, SIGTERM, SIGQUIT] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        #if canImport(Darwin)
            posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_CLOEXEC_DEFAULT))
        #else
            posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        #endif

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let merged = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let envp = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard spawned == 0 else { throw POSIXError(POSIXErrorCode(rawValue: spawned) ?? .EIO) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .ECHILD) }
        }
        // WIFEXITED / WEXITSTATUS, which Swift does not import.
        let signal = status & 0x7f
        return ProcessOutcome(
            status: signal == 0 ? (status >> 8) & 0xff : 128 + signal,
            stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
    }
}

#if !canImport(Darwin)
    /// glibc's `posix_spawn_file_actions_addchdir_np` (2.29) and `..._addclosefrom_np` (2.34),
    /// which the Glibc module does not import (they need _GNU_SOURCE).
    enum GlibcSpawn {
        typealias AddChdir = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32
        typealias AddClosefrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

        static func addchdir(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ path: String) -> Int32 {
            guard let symbol = dlsym(nil, "posix_spawn_file_actions_addchdir_np") else { return ENOSYS }
            return unsafeBitCast(symbol, to: AddChdir.self)(actions, path)
        }

        static func addclosefrom(_ actions: UnsafeMutablePointer<posix_spawn_file_actions_t>, _ lowest: Int32) -> Int32 {
            guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return ENOSYS }
            return unsafeBitCast(symbol, to: AddClosefrom.self)(actions, lowest)
        }
    }
#endif
