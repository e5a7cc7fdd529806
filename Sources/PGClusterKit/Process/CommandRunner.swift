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
    /// Written to the program's stdin (a file's contents sent over ssh, say); nil: /dev/null. Never printed.
    public var input: Data?
    /// Seconds after which the program and its process group are killed (SIGKILL) and the
    /// result is status -1; nil: no deadline (pg_basebackup of a large cluster may take hours).
    public var timeout: Double?
    /// stdin stays open until the program ends (``Spawn``'s `holdStdin`): an ssh whose
    /// program on the host ends with the session (``SSHHost/tied``).
    public var holdStdin = false

    public init(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:], user: OSUser? = nil,
        workingDirectory: String? = nil, passthroughStderr: Bool = false, input: Data? = nil, timeout: Double? = nil
    ) {
        self.timeout = timeout
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.user = user
        self.workingDirectory = workingDirectory
        self.passthroughStderr = passthroughStderr
        self.input = input
    }

    /// The command line as a person would type it (the environment and input are left out:
    /// they may hold secrets).
    public var description: String { ShellQuote.line([executable] + arguments) }
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

/// Runs programs on this machine through ``Spawn``, as the server's OS user when asked,
/// with stdout and stderr collected together.
public struct LocalRunner: CommandRunning {
    public init() {}

    /// A server's program (one with a ``Command/user``) ends when pgcluster does, also when
    /// pgcluster is SIGKILLed: setpriv gives it a parent-death signal, set after its change
    /// of user (the kernel clears one set before). Without it, a pg_basebackup or pg_rewind
    /// whose `rejoin` was killed went on writing into the node's folder while the next
    /// `rejoin` copied it afresh. Its parent is the thread that started it, which
    /// ``Spawn/run(_:environment:input:stdout:stderr:timeout:directory:child:)`` blocks until
    /// the child is reaped, so no thread ends under a running child. A postmaster that pg_ctl
    /// starts is pg_ctl's child, and a fork does not inherit the signal: servers outlive
    /// pgcluster, as they must.
    static let endsWithUs = "--pdeathsig=KILL"

    /// Whether this machine's setpriv sets that signal (util-linux 2.33 or later; there is no
    /// setpriv on macOS): tried once, on /bin/true. Not as root, setpriv runs for the signal
    /// alone. (pg_basebackup's WAL streamer is a fork of it, so it does not get the signal:
    /// the next copy ends it, ``HostCluster/endEarlierCopies(of:on:credentials:)``.)
    static let canEndWithUs: Bool = {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else { return false }
        let tried = Spawn.run(["/usr/bin/setpriv", endsWithUs, "--", "/bin/true"], environment: [], stdout: .pipe, stderr: .pipe, timeout: 5)
        return (try? tried.get())?.status == 0
    }()

    public func run(_ command: Command) async throws(ClusterError) -> CommandResult {
        var arguments = [command.executable] + command.arguments
        var directory = command.workingDirectory
        if let user = command.user, OSUser.isRoot, user.uid != 0 {
            // PostgreSQL refuses to run as root: drop to the server's user for this one program,
            // in a folder it may enter (our own may be root's home).
            arguments =
                ["/usr/bin/setpriv", "--reuid=\(user.uid)", "--regid=\(user.gid)", "--init-groups"]
                + (Self.canEndWithUs ? [Self.endsWithUs] : []) + ["--"] + arguments
            directory = directory ?? "/"
        } else if command.user != nil, Self.canEndWithUs {
            arguments = ["/usr/bin/setpriv", Self.endsWithUs, "--"] + arguments
        }
        var environment = ProcessInfo.processInfo.environment
        // libpq settings of the operator's shell must not steer pgcluster's own programs: a
        // PGPASSWORD there wins over the passfile pgcluster gives pg_basebackup, say. What a
        // command needs it sets itself.
        for name in ["PGPASSWORD", "PGPASSFILE", "PGSERVICE", "PGSERVICEFILE", "PGSSLMODE", "PGSSLROOTCERT", "PGUSER", "PGDATABASE"] {
            environment[name] = nil
        }
        environment.merge(command.environment) { _, new in new }
        if let user = command.user, OSUser.isRoot {
            environment["HOME"] = user.home
            environment["USER"] = user.name
            environment["LOGNAME"] = user.name
        }
        if environment["LC_ALL"] == nil { environment["LC_ALL"] = "C.UTF-8" }
        let argv = arguments
        let folder = directory
        let envp = environment.map { "\($0.key)=\($0.value)" }
        let stderr: Spawn.Sink = command.passthroughStderr ? .inherit : .pipe
        let input = command.input
        let holdStdin = command.holdStdin
        let timeout = command.timeout
        // A cancelled task (the watcher stopping a rejoin because a failover is due) ends the
        // program now, whether it has a deadline or not.
        try Cancelled.check(before: "running \(command.executable)")
        let child = Spawn.Child()
        let outcome = await withTaskCancellationHandler {
            await Blocking.run {
                Spawn.run(
                    argv, environment: envp, input: input, holdStdin: holdStdin, stdout: .pipe, stderr: stderr, timeout: timeout,
                    directory: folder, child: child)
            }
        } onCancel: {
            child.cancel()
        }
        let result = try outcome.get()
        if child.wasKilled {
            throw ClusterError(
                "\(command) was stopped (its task was cancelled): killed it",
                details: result.output.split(whereSeparator: \.isNewline).suffix(6).map { "| " + $0 })
        }
        if result.status == -1, let timeout {
            throw ClusterError(
                "\(command) did not end within \(ClusterLock.formatSeconds(timeout)): killed it and its process group",
                details: result.output.split(whereSeparator: \.isNewline).suffix(6).map { "| " + $0 })
        }
        return result
    }
}

/// Where a cancelled task stops: before a step, never in the middle of writing a file.
/// The watcher cancels a long step (a rejoin) when a failover is due; the subprocess it
/// runs is killed by ``LocalRunner``, and the steps after it are not begun.
public enum Cancelled {
    /// Throws when the current task is cancelled, naming the step that is not begun.
    public static func check(before step: String) throws(ClusterError) {
        if Task.isCancelled { throw ClusterError("cancelled before \(step)") }
    }
}
