import Foundation

/// A program to run: always an argument array, never a shell line.
public struct Command: Sendable, Equatable, CustomStringConvertible {
    public var executable: String
    public var arguments: [String]
    /// Variables added to the inherited environment (such as PGPASSFILE). Never printed.
    public var environment: [String: String]
    /// Run as this user (through setpriv) when pgcluster runs as root.
    public var user: OSUser?
    public var workingDirectory: String?
    /// Pass the child's stderr straight to ours (pg_basebackup's progress on a terminal).
    public var passthroughStderr: Bool

    public init(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:], user: OSUser? = nil,
        workingDirectory: String? = nil, passthroughStderr: Bool = false
    ) {
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.user = user
        self.workingDirectory = workingDirectory
        self.passthroughStderr = passthroughStderr
    }

    /// The command line as a person would type it (the environment is left out: it may hold secrets).
    public var description: String {
        ([executable] + arguments).map { arg in
            arg.contains(where: { $0 == " " || $0 == "'" || $0 == "\"" }) ? "'" + arg.replacingOccurrences(of: "'", with: "'\\''") + "'" : arg
        }.joined(separator: " ")
    }
}

public struct CommandResult: Sendable {
    public var status: Int32
    /// stdout and stderr, interleaved as the program wrote them.
    public var output: String

    public var succeeded: Bool { status == 0 }
}

/// Runs subprocesses. One small interface, so the compose backend can run the same
/// steps through `docker compose exec` and tests can see the exact argument arrays.
public protocol CommandRunning: Sendable {
    func run(_ command: Command) async throws(ClusterError) -> CommandResult
}

extension CommandRunning {
    /// Runs and fails with the command line and the tail of its output when it exits non-zero.
    @discardableResult
    public func check(_ command: Command, what: String) async throws(ClusterError) -> CommandResult {
        let result = try await run(command)
        guard result.succeeded else {
            let tail = result.output.split(separator: "\n", omittingEmptySubsequences: true).suffix(12).map { "| " + $0 }
            throw ClusterError(
                "\(what) failed (exit \(result.status))", details: ["command: \(command)"] + tail)
        }
        return result
    }
}

/// Runs programs on this machine with posix_spawn and waitpid.
///
/// Not Foundation's `Process`: pg_ctl leaves a daemon behind, and on Linux `Process`
/// was seen never to reap a child that exited while we read its output. Here the
/// child's output is read to EOF on a thread, then the child is reaped with waitpid.
public struct LocalRunner: CommandRunning {
    public init() {}

    public func run(_ command: Command) async throws(ClusterError) -> CommandResult {
        var arguments = [command.executable] + command.arguments
        if let user = command.user, OSUser.isRoot, user.uid != 0 {
            // PostgreSQL refuses to run as root: drop to the server's user for this one program,
            // in a folder it may enter (our own may be root's home).
            arguments = [
                "/usr/bin/setpriv", "--reuid=\(user.uid)", "--regid=\(user.gid)", "--init-groups", "--",
                "/usr/bin/env", "-C", command.workingDirectory ?? "/", "--",
            ] + arguments
        } else if let directory = command.workingDirectory {
            arguments = ["/usr/bin/env", "-C", directory, "--"] + arguments
        }
        var environment = ProcessInfo.processInfo.environment
        environment.merge(command.environment) { _, new in new }
        if let user = command.user, OSUser.isRoot {
            environment["HOME"] = user.home
            environment["USER"] = user.name
            environment["LOGNAME"] = user.name
        }
        if environment["LC_ALL"] == nil { environment["LC_ALL"] = "C.UTF-8" }
        let argv = arguments
        let envp = environment.map { "\($0.key)=\($0.value)" }
        let passthrough = command.passthroughStderr

        let outcome: Result<CommandResult, ClusterError> = await Blocking.run {
            Self.spawnAndWait(argv: argv, envp: envp, passthroughStderr: passthrough)
        }
        return try outcome.get()
    }

    /// Held from creating a pipe until its write end is closed in the parent, so no other
    /// child spawned meanwhile inherits it (a daemon holding it would block our read forever).
    private static let spawnLock = NSLock()

    static func spawnAndWait(argv: [String], envp: [String], passthroughStderr: Bool) -> Result<CommandResult, ClusterError> {
        let executable = argv[0]
        spawnLock.lock()
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            spawnLock.unlock()
            return .failure(ClusterError("cannot run \(executable): pipe: \(String(cString: strerror(errno)))"))
        }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        if !passthroughStderr { posix_spawn_file_actions_adddup2(&actions, fds[1], 2) }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        sigaddset(&defaults, SIGINT)
        sigaddset(&defaults, SIGTERM)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var pid: pid_t = 0
        let cArgv = argv.map { strdup($0) } + [nil]
        let cEnvp = envp.map { strdup($0) } + [nil]
        defer {
            cArgv.forEach { free($0) }
            cEnvp.forEach { free($0) }
        }
        let spawned = posix_spawn(&pid, executable, &actions, &attributes, cArgv, cEnvp)
        close(fds[1])
        spawnLock.unlock()
        guard spawned == 0 else {
            close(fds[0])
            return .failure(ClusterError("cannot run \(executable): \(String(cString: strerror(spawned)))"))
        }
        var output = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = read(fds[0], &buffer, buffer.count)
            if count > 0 {
                output.append(contentsOf: buffer[0..<count])
            } else if count < 0 && errno == EINTR {
                continue
            } else {
                break
            }
        }
        close(fds[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // WIFEXITED / WEXITSTATUS, spelled out: Glibc's macros are not imported into Swift.
        let exitCode: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return .success(CommandResult(status: exitCode, output: String(decoding: output, as: UTF8.self)))
    }
}
