import Foundation

/// The one place pgcluster starts a program: posix_spawn with an argument array, and
/// waitpid. Not Foundation's `Process`: pg_ctl leaves a daemon behind, and on Linux
/// `Process` was seen never to reap a child that exited while we read its output.
public enum Spawn {
    /// Where a child's stdout or stderr goes.
    public enum Sink: Sendable, Equatable {
        /// Collected into ``Outcome/output`` (stdout and stderr share one pipe).
        case pipe
        /// Written to a file, created or truncated, mode 0600.
        case file(String)
        /// Ours (a terminal, say).
        case inherit
    }

    public struct Outcome: Sendable {
        /// The exit code, or 128 + the signal that ended it (-1 when `timeout` passed).
        public var status: Int32
        /// What went to a `.pipe` sink.
        public var output: String
    }

    /// Held from creating a pipe until its write end is closed in the parent, so no other
    /// child spawned meanwhile inherits it (a daemon holding it would block our read forever).
    private static let lock = NSLock()

    /// Whether every child starts in a process group of its own, deadline or not. `watch`
    /// turns it on (it has no terminal whose Ctrl-C should reach its children): a step the
    /// watcher cancels then ends with everything it started (pg_basebackup's WAL streamer,
    /// a shell's children), not only the program itself. The one-shot commands turn it on
    /// with ``Interrupts/install()``, which passes a Ctrl-C on to those groups.
    public static var ownGroupForEveryChild: Bool {
        get { settingLock.withLock { everyChildOwnGroup } }
        set { settingLock.withLock { everyChildOwnGroup = newValue } }
    }
    /// Not ``lock``: that one is held while a child is spawned, when this is read.
    private static let settingLock = NSLock()
    nonisolated(unsafe) private static var everyChildOwnGroup = false

    /// glibc's `posix_spawn_file_actions_addchdir_np` (2.29 and later; Swift's Glibc module
    /// does not export it): the child changes folder before its exec, instead of an
    /// `env -C` program run in between (one exec fewer for every command as the server's
    /// user). Nil where the C library lacks it: then `env -C` it is.
    private static let addChdir: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addchdir_np") else { return nil }
        return unsafeBitCast(
            symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32).self)
    }()

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34 and later): the child
    /// closes every descriptor from 3 up before its exec, whatever flags they were opened
    /// with. A listening socket of the watcher's health endpoints opened without
    /// close-on-exec was inherited by every server the watcher started (pg_ctl's postgres
    /// runs on as a daemon), so the ports stayed bound after the watcher stopped and the next
    /// watcher could not start. Nil where the C library lacks it.
    private static let addCloseFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()

    /// Runs `argv` (argv[0] an absolute path) to its end. Blocks the calling thread.
    /// - Parameters:
    ///   - input: written to the child's stdin, which is then closed; without it stdin is /dev/null.
    ///   - holdStdin: stdin is a pipe (with `input` written to it) that stays open until the
    ///     child has ended: the child reads its end only when we end, also by SIGKILL, when
    ///     the kernel closes our side. An ssh gives that end to the program on the host,
    ///     which stops with it (``SSHHost/tied``).
    ///   - timeout: a deadline that really ends the program, piped or not: the child starts in a
    ///     process group of its own, and when the deadline passes the whole group (the program
    ///     and whatever it started that stayed in the group: an ssh, a shell's children) gets
    ///     SIGKILL. The outcome is then status -1 with the output read so far. Without a
    ///     timeout the child stays in our process group (a terminal's Ctrl-C reaches it),
    ///     unless ``ownGroupForEveryChild``.
    ///   - child: told the child's PID once it runs, so that ``Child/cancel()`` (from a
    ///     cancelled task) can end it: its process group when it has one of its own, else
    ///     the program itself. The outcome is then what SIGKILL left (status 137).
    public static func run(
        _ argv: [String], environment: [String], input: Data? = nil, holdStdin: Bool = false, stdout: Sink, stderr: Sink,
        timeout: Double? = nil, directory: String? = nil, child: Child? = nil
    ) -> Result<CommandResult, ClusterError> {
        let executable = argv[0]
        let usesPipe = stdout == .pipe || stderr == .pipe
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let directory {
            guard let addChdir = Self.addChdir else {
                return run(["/usr/bin/env", "-C", directory, "--"] + argv, environment: environment, input: input, holdStdin: holdStdin,
                           stdout: stdout, stderr: stderr, timeout: timeout, child: child)
            }
            _ = addChdir(&actions, directory)
        }

        lock.lock()
        var inputFDs: [Int32] = [-1, -1]
        let stdinPipe = input != nil || holdStdin
        if stdinPipe {
            guard pipe(&inputFDs) == 0 else {
                lock.unlock()
                return .failure(ClusterError("cannot run \(executable): pipe: \(String(cString: strerror(errno)))"))
            }
            _ = fcntl(inputFDs[0], F_SETFD, FD_CLOEXEC)
            _ = fcntl(inputFDs[1], F_SETFD, FD_CLOEXEC)
            posix_spawn_file_actions_adddup2(&actions, inputFDs[0], 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        var fds: [Int32] = [-1, -1]
        if usesPipe {
            guard pipe(&fds) == 0 else {
                lock.unlock()
                if stdinPipe { inputFDs.forEach { close($0) } }
                return .failure(ClusterError("cannot run \(executable): pipe: \(String(cString: strerror(errno)))"))
            }
            _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
            _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        }
        for (fd, sink) in [(Int32(1), stdout), (Int32(2), stderr)] {
            switch sink {
            case .pipe: posix_spawn_file_actions_adddup2(&actions, fds[1], fd)
            case .file(let path): posix_spawn_file_actions_addopen(&actions, fd, path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            case .inherit: break
            }
        }

        // After the dup2s onto 0, 1 and 2: nothing else of ours reaches the child.
        if let addCloseFrom = Self.addCloseFrom { _ = addCloseFrom(&actions, 3) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        // SIGHUP too: the watcher ignores it (it reloads the spec through a dispatch source),
        // and an ignored signal stays ignored across exec, so a hook's daemon could not be reloaded.
        for signal in [SIGPIPE, SIGINT, SIGTERM, SIGQUIT, SIGHUP] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF
        let ownGroup = timeout != nil || ownGroupForEveryChild
        if ownGroup {
            // Its own process group (pgid = its pid), so the deadline can kill everything in it.
            posix_spawnattr_setpgroup(&attributes, 0)
            flags |= POSIX_SPAWN_SETPGROUP
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))

        var pid: pid_t = 0
        let cArgv = argv.map { strdup($0) } + [nil]
        let cEnvp = environment.map { strdup($0) } + [nil]
        defer {
            cArgv.forEach { free($0) }
            cEnvp.forEach { free($0) }
        }
        let spawned = posix_spawn(&pid, executable, &actions, &attributes, cArgv, cEnvp)
        if usesPipe { close(fds[1]) }
        if stdinPipe { close(inputFDs[0]) }
        lock.unlock()
        guard spawned == 0 else {
            if usesPipe { close(fds[0]) }
            if stdinPipe { close(inputFDs[1]) }
            return .failure(ClusterError("cannot run \(executable)\(directory.map { " in \($0)" } ?? ""): \(String(cString: strerror(spawned)))"))
        }
        Interrupts.started(pid, ownGroup: ownGroup)
        child?.started(pid, ownGroup: ownGroup)
        // Held open: the thread that writes it closes it once the child has ended (told
        // below, after the reap), never while it may still write to it.
        let childEnded = holdStdin ? DispatchSemaphore(value: 0) : nil
        defer { childEnded?.signal() }
        if stdinPipe {
            // On a thread of its own: a child that reads its input only after writing output
            // (or never reads it) must not block our reading of that output.
            let fd = inputFDs[1]
            let data = input ?? Data()
            Thread.detachNewThread { feed(data, to: fd, closeAfter: childEnded) }
        }

        let deadline = timeout.map { Date().addingTimeInterval($0) }
        var output = [UInt8]()
        var expired = false
        if usesPipe {
            expired = !readAll(fds[0], of: pid, into: &output, until: deadline)
            close(fds[0])
        }
        if let deadline, !expired {
            while !hasEnded(pid, wait: false) {
                if Date() >= deadline {
                    expired = true
                    break
                }
                usleep(10_000)
            }
        }
        if expired {
            // The group's id is the child's pid; a grandchild that left the group (a daemon
            // that called setsid, such as a postmaster from pg_ctl) is not ours to end.
            kill(-pid, SIGKILL)
            kill(pid, SIGKILL)
            _ = reap(pid, child: child)
            return .success(CommandResult(status: -1, output: String(decoding: output, as: UTF8.self)))
        }
        let status = reap(pid, child: child)
        // WIFEXITED / WEXITSTATUS, spelled out: Glibc's macros are not imported into Swift.
        let exitCode: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return .success(CommandResult(status: exitCode, output: String(decoding: output, as: UTF8.self)))
    }

    /// Whether `pid` (our child) has ended, without reaping it: its PID stays ours, and no
    /// other process can be given it, until ``reap(_:child:)``. With `wait`, until it ends.
    private static func hasEnded(_ pid: pid_t, wait: Bool) -> Bool {
        while true {
            var info = siginfo_t()
            let flags = WEXITED | WNOWAIT | (wait ? 0 : WNOHANG)
            if waitid(P_PID, id_t(pid), &info, flags) == 0 {
                // With WNOHANG and nothing ended, the kernel leaves si_signo 0.
                return info.si_signo == SIGCHLD
            }
            if errno != EINTR { return true }
        }
    }

    /// Waits for `pid` to end, tells `child` (from then on its PID is never signalled: once
    /// reaped, the kernel may give it to another process), and reaps it: the wait status.
    private static func reap(_ pid: pid_t, child: Child?) -> Int32 {
        _ = hasEnded(pid, wait: true)
        Interrupts.ended(pid)
        child?.ended()
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return status
    }

    /// A running child that a cancelled task ends: ``run(_:environment:input:stdout:stderr:timeout:child:)``
    /// says when it starts and ends, ``cancel()`` may come from any thread at any time (also
    /// before it starts: it is then killed as it starts).
    public final class Child: @unchecked Sendable {
        private let lock = NSLock()
        private var pid: pid_t = 0
        private var ownGroup = false
        private var over = false
        private var cancelled = false
        private var killed = false

        public init() {}

        /// Whether ``cancel()`` killed it (not when it had ended already).
        public var wasKilled: Bool { lock.withLock { killed } }

        func started(_ pid: pid_t, ownGroup: Bool) {
            lock.withLock {
                self.pid = pid
                self.ownGroup = ownGroup
                if cancelled { end() }
            }
        }

        func ended() { lock.withLock { over = true } }

        /// SIGKILL to the child (its process group when it has one of its own).
        public func cancel() {
            lock.withLock {
                cancelled = true
                end()
            }
        }

        /// Called with the lock held.
        private func end() {
            guard pid > 0, !over else { return }
            if ownGroup { kill(-pid, SIGKILL) }
            kill(pid, SIGKILL)
            killed = true
        }
    }

    /// What a child's piped output may take in memory: past it, the rest is read and dropped
    /// (the child is never blocked), and a line says so. A hook that printed without end
    /// (`yes`) filled 1.5 GB in a second and held the watcher for a minute.
    static let outputLimit = 8 << 20

    /// Reads `fd` to its end into `output` (at most ``outputLimit`` bytes kept); false when
    /// `deadline` passed first. The end is EOF, or `pid` ending: then what is in the pipe is
    /// read and the rest left. A program that starts a daemon which keeps its stdout (a hook
    /// with `pgbouncer &`) has ended when it exits, not when the daemon does: it was held to
    /// its deadline and reported as hung.
    private static func readAll(_ fd: Int32, of pid: pid_t, into output: inout [UInt8], until deadline: Date?) -> Bool {
        var dropped = 0
        defer {
            if dropped > 0 { output.append(contentsOf: Array("\n[\(dropped) more bytes of output not kept]\n".utf8)) }
        }
        var buffer = [UInt8](repeating: 0, count: 65536)
        // Once the child ended: what is left to read at most (a pipe holds 64 kB; a daemon
        // that goes on writing is not waited for).
        var drainLeft: Int?
        while true {
            let left = deadline?.timeIntervalSinceNow ?? .infinity
            if left <= 0 { return false }
            if drainLeft == nil && hasEnded(pid, wait: false) {
                // What it wrote before it exited is in the pipe: read without waiting.
                drainLeft = 1 << 20
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            }
            if drainLeft == nil {
                // A look at the child every 100 ms while nothing comes.
                var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&poller, 1, Int32(min(left * 1000, 100).rounded(.up)))
                if ready <= 0 { continue }
            }
            let count = read(fd, &buffer, buffer.count)
            if count > 0 {
                let room = max(0, outputLimit - output.count)
                output.append(contentsOf: buffer[0..<min(count, room)])
                dropped += count - min(count, room)
                if let budget = drainLeft {
                    if budget <= count { return true }
                    drainLeft = budget - count
                }
            } else if count < 0 && errno == EINTR {
                continue
            } else {
                // EOF, or (the child ended) nothing more waiting in the pipe.
                return true
            }
        }
    }

    /// Writes `data` to `fd`, then closes it: at once, or once `closeAfter` is signalled. A
    /// child that exits without reading all of it ends the write with EPIPE: SIGPIPE is
    /// blocked on this thread, so it cannot kill us.
    private static func feed(_ data: Data, to fd: Int32, closeAfter: DispatchSemaphore? = nil) {
        var blocked = sigset_t()
        sigemptyset(&blocked)
        sigaddset(&blocked, SIGPIPE)
        pthread_sigmask(SIG_BLOCK, &blocked, nil)
        data.withUnsafeBytes { (buffer: UnsafeRawBufferPointer) in
            var offset = 0
            while offset < buffer.count {
                let written = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if written > 0 {
                    offset += written
                } else if written < 0 && errno == EINTR {
                    continue
                } else {
                    break
                }
            }
        }
        closeAfter?.wait()
        close(fd)
    }
}

/// A command's children end with it. SIGINT, SIGTERM or SIGHUP to a one-shot command (a
/// Ctrl-C, `kill`, a closed terminal, a supervisor's stop) used to end pgcluster alone: a
/// `pg_basebackup` or `pgbackrest` it ran went on writing into a data folder nobody watched,
/// and a hook's `sleep` outlived it. With ``install()`` every child starts in a process
/// group of its own (a terminal's Ctrl-C then reaches pgcluster only), and the signal is
/// passed on to each running child's group before the command exits with 128 + the signal.
/// A postmaster that `pg_ctl` started is in a session of its own and runs on, as it should.
/// `watch` does not use it: it stops between steps on SIGTERM and SIGINT.
public enum Interrupts {
    /// Guards what follows; signalled when a child ends (``end(by:)`` waits on it).
    private static let lock = NSCondition()
    nonisolated(unsafe) private static var running: [pid_t: Bool] = [:]
    /// The signal being passed on, once one came: a child spawned after it gets it at once.
    nonisolated(unsafe) private static var ending: Int32 = 0
    nonisolated(unsafe) private static var sources: [any DispatchSourceSignal] = []

    public static func install() {
        Spawn.ownGroupForEveryChild = true
        // SIGQUIT too: the Swift runtime takes it for a crash (a backtrace, and a second one
        // ended pgcluster alone).
        for signal in [SIGINT, SIGTERM, SIGHUP, SIGQUIT] {
            Glibc.signal(signal, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signal, queue: .global())
            source.setEventHandler { end(by: signal) }
            source.resume()
            lock.withLock { sources.append(source) }
        }
    }

    static func started(_ pid: pid_t, ownGroup: Bool) {
        lock.withLock {
            running[pid] = ownGroup
            if ending != 0 { pass(ending, to: pid, ownGroup: ownGroup) }
        }
    }

    /// A command whose step failed because its program got the signal passed on: the
    /// interrupt, not that failure, is what ends it (the handler exits within ``grace``).
    public static func holdIfEnding() {
        guard lock.withLock({ ending != 0 }) else { return }
        while true { sleep(1) }
    }

    /// Before the child is reaped: from then on its PID may be another process's.
    static func ended(_ pid: pid_t) {
        lock.withLock {
            running[pid] = nil
            lock.broadcast()
        }
    }

    private static func pass(_ signal: Int32, to pid: pid_t, ownGroup: Bool) {
        if ownGroup { kill(-pid, signal) }
        kill(pid, signal)
    }

    /// How long the programs that got the signal have to end (initdb, interrupted, removes
    /// the folder it made) before their groups get SIGKILL: a command run again at once
    /// must not meet them still at work.
    static let grace: Duration = .seconds(5)

    private static func end(by signal: Int32) {
        let children = lock.withLock {
            ending = signal
            for (pid, ownGroup) in running { pass(signal, to: pid, ownGroup: ownGroup) }
            return running.count
        }
        let name = [SIGINT: "SIGINT", SIGTERM: "SIGTERM", SIGHUP: "SIGHUP", SIGQUIT: "SIGQUIT"][signal] ?? "signal \(signal)"
        let line = "pgcluster: interrupted by \(name)" + (children == 0 ? "" : "; passed on to the \(children == 1 ? "program" : "\(children) programs") it was running") + "\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
        // Each child is reaped by the thread that ran it (``ended(_:)``): wait for that.
        let deadline = Date().addingTimeInterval(Double(grace.components.seconds))
        lock.withLock {
            while !running.isEmpty && lock.wait(until: deadline) {}
            for (pid, ownGroup) in running {
                let left = "pgcluster: \(pid) did not end within \(grace.components.seconds) s: killed with its process group\n"
                _ = left.withCString { write(2, $0, strlen($0)) }
                pass(SIGKILL, to: pid, ownGroup: ownGroup)
            }
        }
        _exit(128 + signal)
    }
}

