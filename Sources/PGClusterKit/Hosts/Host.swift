import Foundation

/// Where a node's server-side steps run and its files live: this machine (``LocalHost``),
/// or a host reached by ssh (``SSHHost``). ``HostCluster`` writes every step (initdb,
/// pg_ctl, pg_basebackup, pg_rewind, config files, fencing) once, against this; the local
/// backend is the ssh backend with every host being this machine.
///
/// Programs run as the server's OS user, never root. Secrets travel in `environment` or
/// `input`, never on a command line.
public protocol Host: Sendable {
    /// How messages name it: `this machine`, or `host 10.0.0.11`.
    var label: String { get }

    /// Runs `argv` on the host as the server's OS user, with `environment` added and
    /// `input` on stdin; stdout and stderr come back together.
    func run(_ argv: [String], environment: [String: String], input: Data?, progress: Bool) async throws(ClusterError)
        -> CommandResult

    /// Writes `data` to `path` at once or not at all, with `mode`, owned by the server's user.
    func writeFile(_ path: String, _ data: Data, mode: Int) async throws(ClusterError)

    /// The file's contents; nil when it does not exist.
    func readFile(_ path: String) async throws(ClusterError) -> Data?

    /// Creates each folder and its missing parents, in order; each given one gets its mode,
    /// owned by the server's user.
    func makeDirectories(_ folders: [(path: String, mode: Int)]) async throws(ClusterError)

    /// Removes files or folders with all they hold; missing ones are fine.
    func remove(_ paths: [String]) async throws(ClusterError)

    /// A folder's entries; nil when it does not exist.
    func list(_ path: String) async throws(ClusterError) -> [String]?

    /// The PID of the postmaster running for `dataDir` (a zombie counts as gone), or nil.
    func postmasterPID(dataDir: String) async throws(ClusterError) -> Int32?

    /// Kills (SIGKILL) the postmaster of `dataDir` and all its processes; returns the PIDs killed.
    func killServer(dataDir: String) async throws(ClusterError) -> [Int32]

    /// Before anything is changed: the host answers, PostgreSQL's programs are in `bindir`,
    /// the server's OS user exists, and `folder` can be created there. One line naming the
    /// host and what to do, otherwise.
    func preflight(bindir: String, folder: String) async throws(ClusterError)
}

extension Host {
    public func run(_ argv: [String], environment: [String: String] = [:], input: Data? = nil) async throws(ClusterError)
        -> CommandResult
    {
        try await run(argv, environment: environment, input: input, progress: false)
    }

    /// Runs and fails with the command line and the tail of its output when it exits non-zero.
    @discardableResult
    public func check(
        _ argv: [String], environment: [String: String] = [:], input: Data? = nil, progress: Bool = false, what: String
    ) async throws(ClusterError) -> CommandResult {
        let result = try await run(argv, environment: environment, input: input, progress: progress)
        guard result.succeeded else {
            let tail = result.output.split(whereSeparator: \.isNewline).suffix(12).map { "| " + $0 }
            throw ClusterError(
                "\(what) failed on \(label) (exit \(result.status))", details: ["command: \(ShellQuote.line(argv))"] + tail)
        }
        return result
    }

    public func writeFile(_ path: String, _ text: String, mode: Int = 0o600) async throws(ClusterError) {
        try await writeFile(path, Data(text.utf8), mode: mode)
    }

    public func readText(_ path: String) async throws(ClusterError) -> String? {
        try await readFile(path).map { String(decoding: $0, as: UTF8.self) }
    }

    public func exists(_ path: String) async throws(ClusterError) -> Bool {
        try await run(["/usr/bin/test", "-e", path]).succeeded
    }
}

/// This machine: programs through ``LocalRunner`` (as the server's user when pgcluster is
/// root), files through the file system.
public struct LocalHost: Host {
    public let serverUser: OSUser
    public let runner: any CommandRunning

    public init(serverUser: OSUser, runner: any CommandRunning = LocalRunner()) {
        self.serverUser = serverUser
        self.runner = runner
    }

    public var label: String { "this machine" }

    public func run(_ argv: [String], environment: [String: String], input: Data?, progress: Bool) async throws(ClusterError)
        -> CommandResult
    {
        try await runner.run(
            Command(
                argv[0], Array(argv.dropFirst()), environment: environment, user: serverUser, workingDirectory: "/",
                passthroughStderr: progress, input: input))
    }

    public func writeFile(_ path: String, _ data: Data, mode: Int) async throws(ClusterError) {
        try FileWriter.writeAtomically(data, to: path, mode: mode, owner: OSUser.isRoot ? serverUser : nil)
    }

    public func readFile(_ path: String) async throws(ClusterError) -> Data? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ClusterError("cannot read \(path): \(String(cString: strerror(errno)))")
        }
        return data
    }

    public func makeDirectories(_ folders: [(path: String, mode: Int)]) async throws(ClusterError) {
        for (path, mode) in folders {
            do {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            } catch {
                throw ClusterError("cannot create \(path): \(error.localizedDescription)")
            }
            _ = chmod(path, mode_t(mode))
            if OSUser.isRoot { _ = chown(path, serverUser.uid, serverUser.gid) }
        }
    }

    public func remove(_ paths: [String]) async throws(ClusterError) {
        for path in paths {
            var info = stat()
            guard lstat(path, &info) == 0 else { continue }
            do {
                try FileManager.default.removeItem(atPath: path)
            } catch {
                throw ClusterError("cannot remove \(path): \(error.localizedDescription)")
            }
        }
    }

    public func list(_ path: String) async throws(ClusterError) -> [String]? {
        try? FileManager.default.contentsOfDirectory(atPath: path)
    }

    public func postmasterPID(dataDir: String) async throws(ClusterError) -> Int32? {
        guard let pid = Self.pidFileEntry(dataDir), Self.isAlive(pid), Self.worksIn(pid, dataDir) else { return nil }
        return pid
    }

    /// Whether process `pid` works in `dataDir`, as a postmaster does (it changes into its
    /// data directory at start). A postmaster.pid left by a killed server names a PID that
    /// the kernel gives out again (PIDs wrap, at 32768 on many hosts): that process works
    /// elsewhere, and is neither "running" nor ever fenced. When its working directory
    /// cannot be read (another user's process), it counts as ours: the careful side.
    static func worksIn(_ pid: pid_t, _ dataDir: String) -> Bool {
        guard let cwd = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd") else { return true }
        return cwd == URL(fileURLWithPath: dataDir).resolvingSymlinksInPath().path
    }

    public func killServer(dataDir: String) async throws(ClusterError) -> [Int32] {
        guard let postmaster = try await postmasterPID(dataDir: dataDir) else { return [] }
        let pids = [postmaster] + Self.childProcesses(of: postmaster)
        for pid in pids { kill(pid, SIGKILL) }
        // A stopped (SIGSTOP) process dies on SIGKILL too; wait briefly until it is gone.
        for _ in 0..<100 where Self.isAlive(postmaster) {
            try? await Task.sleep(for: .milliseconds(10))
        }
        return pids
    }

    /// The PID the data directory's postmaster.pid names, alive or not.
    static func pidFileEntry(_ dataDir: String) -> pid_t? {
        guard let text = try? String(contentsOfFile: "\(dataDir)/postmaster.pid", encoding: .utf8),
            let first = text.split(separator: "\n").first, let pid = pid_t(first.trimmingCharacters(in: .whitespaces)),
            pid > 0
        else { return nil }
        return pid
    }

    /// Alive and not a zombie (a killed server whose parent has not reaped it is gone for us).
    static func isAlive(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return true }
        let state = stat[stat.index(after: close)...].split(separator: " ").first
        return state != "Z" && state != "X"
    }

    public func preflight(bindir: String, folder: String) async throws(ClusterError) {}

    static func childProcesses(of parent: pid_t) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> pid_t? in
            guard let pid = pid_t(entry),
                let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return nil }
            // Fields after "(comm)": state, ppid, ...
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && pid_t(fields[1]) == parent ? pid : nil
        }
    }
}

/// A host reached by OpenSSH (``SSHTransport``: batch mode, one multiplexed connection per
/// host, our own known_hosts). Each step is one small POSIX shell program run there;
/// programs run as the server's OS user (through runuser when the login is root), and
/// the environment crosses on stdin, never on the remote command line.
public struct SSHHost: Host {
    public let transport: SSHTransport
    /// The server's OS user on the host.
    public let serverUser: String

    public init(transport: SSHTransport, serverUser: String) {
        self.transport = transport
        self.serverUser = serverUser
    }

    public var label: String { "host \(transport.host)" }
    var loginIsRoot: Bool { transport.user == "root" }
    var asServer: [String] { loginIsRoot && serverUser != "root" ? ["/usr/sbin/runuser", "-u", serverUser, "--"] : [] }

    /// Reads `$1` lines of NAME=VALUE from stdin into the environment, then runs the rest of
    /// its arguments from `/`; whatever stdin holds after those lines is the program's.
    static let launcher = variables + #"""
        exec "$@"
        """#

    /// What both launchers begin with: from `/`, the `$1` variables read from stdin.
    static let variables = #"""
        cd / || exit 1
        n=$1; shift
        while [ "$n" -gt 0 ]; do IFS= read -r kv || exit 70; export "$kv"; n=$((n - 1)); done

        """#

    /// The ``launcher`` for a program without input, which ends with its ssh session: ssh's
    /// stdin stays open while pgcluster waits for it (``Command/holdStdin``), and the rest of
    /// it, after the variables, is read here beside the program. Its end (pgcluster gone,
    /// SIGKILL included, its ssh killed, a watcher's rejoin cancelled) sends SIGTERM to the
    /// program's process group here. Without it a pg_rewind or pg_basebackup whose command
    /// was stopped went on writing into the node's folder, beside the next rejoin's copy (on
    /// this machine a parent-death signal does the same, ``LocalRunner/endsWithUs``). A
    /// postmaster that pg_ctl starts leaves the group (setsid) and runs on, as it must.
    /// (stdin goes through fd 3: an asynchronous list's own stdin is /dev/null.)
    static let tied = variables + #"""
        exec 3<&0 </dev/null
        "$@" 3<&- &
        program=$!
        { while IFS= read -r _ <&3; do :; done; kill -TERM 0; } &
        session=$!
        exec 3<&-
        wait "$program"
        status=$?
        kill "$session" 2>/dev/null
        exit "$status"
        """#

    public func run(_ argv: [String], environment: [String: String], input: Data?, progress: Bool) async throws(ClusterError)
        -> CommandResult
    {
        let variables = environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)\n" }.joined()
        var stdin = Data(variables.utf8)
        if let input { stdin.append(input) }
        return try await transport.run(
            ["/bin/sh", "-c", input == nil ? Self.tied : Self.launcher, "sh", String(environment.count)] + asServer + argv,
            input: stdin.isEmpty ? nil : stdin, tied: input == nil)
    }

    /// A small shell program, run as the login (for folders it may have to create above the
    /// server's, and for files it must hand over to the server's user). A short step: it has
    /// the transport's ``SSHTransport/stepTimeout`` as its deadline unless `short` is false.
    func script(
        _ body: String, _ arguments: [String], input: Data? = nil, short: Bool = true
    ) async throws(ClusterError) -> CommandResult {
        try await transport.run(
            ["/bin/sh", "-c", body, "sh"] + arguments, input: input, timeout: short ? transport.stepTimeout : nil)
    }

    var owner: String? { loginIsRoot ? "\(serverUser):" : nil }

    public func writeFile(_ path: String, _ data: Data, mode: Int) async throws(ClusterError) {
        try await transport.writeFile(path, contents: data, mode: mode, owner: owner)
    }

    public func readFile(_ path: String) async throws(ClusterError) -> Data? {
        let result = try await script(#"[ -e "$1" ] || exit 3; exec cat -- "$1""#, [path])
        if result.status == 3 { return nil }
        guard result.succeeded else {
            throw ClusterError("cannot read \(path) on \(label): \(result.output.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return Data(result.output.utf8)
    }

    /// `OWNER PATH MODE PATH MODE ...`, in one round trip.
    static let makeFolders = #"""
        owner=$1; shift
        while [ $# -ge 2 ]; do
          mkdir -p -- "$1" && chmod "$2" "$1" && { [ -z "$owner" ] || chown "$owner" "$1"; } || exit 1
          shift 2
        done
        """#

    public func makeDirectories(_ folders: [(path: String, mode: Int)]) async throws(ClusterError) {
        let result = try await script(
            Self.makeFolders, [owner ?? ""] + folders.flatMap { [$0.path, String($0.mode, radix: 8)] })
        guard result.succeeded else {
            throw ClusterError(
                "cannot create \(folders.map(\.path).joined(separator: ", ")) on \(label) as \(transport.user): \(result.output.trimmingCharacters(in: .whitespacesAndNewlines))",
                details: ["make ssh.dir writable for \(transport.user) there, or log in as root (ssh.user: root)"])
        }
    }

    public func remove(_ paths: [String]) async throws(ClusterError) {
        guard !paths.isEmpty else { return }
        // No deadline: removing a large data directory may take a while.
        let result = try await script(#"rm -rf -- "$@""#, paths, short: false)
        guard result.succeeded else {
            throw ClusterError("cannot remove files on \(label): \(result.output.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }

    public func list(_ path: String) async throws(ClusterError) -> [String]? {
        let result = try await script(#"[ -d "$1" ] || exit 3; exec ls -A1 -- "$1""#, [path])
        if result.status == 3 { return nil }
        return result.output.split(whereSeparator: \.isNewline).map(String.init)
    }

    /// Prints the postmaster's PID and exits 0 when it runs and is no zombie; exits 3 when it
    /// is proven that none runs (no postmaster.pid, or its process is gone); any other exit
    /// (4: the file cannot be read) means it cannot be told. Unknown is never "stopped".
    static let findPostmaster = #"""
        f="$1/postmaster.pid"
        [ -e "$f" ] || exit 3
        pid=$(head -n 1 "$f") || exit 4
        case "$pid" in ''|*[!0-9]*) exit 4 ;; esac
        # One read of its stat: a process that ends between two looks (a server stopping
        # as we ask) is gone, not "cannot tell". /proc/PID/stat is readable by everyone.
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || exit 3
        state=$(printf '%s\n' "$stat" | sed 's/.*) //' | cut -d ' ' -f 1)
        case "$state" in Z|X) exit 3 ;; '') exit 4 ;; esac
        # A stale postmaster.pid whose PID now names another process (PIDs wrap): a
        # postmaster works in its data directory, so one that works elsewhere is not ours.
        \#(worksElsewhere)
        if works_elsewhere "$pid" "$1"; then exit 3; fi
        echo "$pid"
        """#

    /// A POSIX shell function, `works_elsewhere PID DATADIR`: true when the process works
    /// (its readable working directory) outside the data directory, as a process given a
    /// stale postmaster.pid's PID again does; false when it works there or cannot be read.
    static let worksElsewhere = #"""
        works_elsewhere() {
          _cwd=$(readlink "/proc/$1/cwd" 2>/dev/null) || _cwd=""
          _data=$(cd "$2" 2>/dev/null && pwd -P) || _data=""
          [ -n "$_cwd" ] && [ -n "$_data" ] && [ "$_cwd" != "$_data" ]
        }
        """#

    public func postmasterPID(dataDir: String) async throws(ClusterError) -> Int32? {
        let result = try await script(Self.findPostmaster, [dataDir])
        if result.status == 3 { return nil }
        guard result.succeeded, let pid = Int32(result.output.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw ClusterError(
                "\(label): cannot tell whether a server runs for \(dataDir) (exit \(result.status)): "
                    + result.output.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return pid
    }

    /// Kills the postmaster and every process whose parent it is, then waits until it is gone.
    static let killTree = findPostmaster.replacingOccurrences(of: "echo \"$pid\"", with: #"""
        kids=""
        for stat in /proc/[0-9]*/stat; do
          set -- $(sed 's/.*) //' "$stat" 2>/dev/null)
          [ "$2" = "$pid" ] && kids="$kids ${stat#/proc/}" 
        done
        kids=$(echo "$kids" | sed 's|/stat||g')
        kill -KILL "$pid" $kids 2>/dev/null
        i=0
        while [ $i -lt 100 ] && [ -r "/proc/$pid/stat" ] && ! sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | grep -q '^[ZX]'; do
          sleep 0.01; i=$((i + 1))
        done
        echo "$pid" $kids
        """#)

    static let checks = #"""
        [ -x "$1/pg_ctl" ] || { echo "PostgreSQL's programs are not in $1 (no pg_ctl there)"; exit 10; }
        id -u "$2" >/dev/null 2>&1 || { echo "the server's OS user '$2' does not exist"; exit 11; }
        d=$3
        while [ ! -e "$d" ]; do d=$(dirname "$d"); done
        [ -d "$d" ] && [ -w "$d" ] || { echo "$(id -un) cannot create $3 (cannot write $d)"; exit 12; }
        exit 0
        """#

    public func preflight(bindir: String, folder: String) async throws(ClusterError) {
        let result = try await script(Self.checks, [bindir, serverUser, folder])
        guard !result.succeeded else { return }
        let problem = result.output.trimmingCharacters(in: .whitespacesAndNewlines)
        let fix: String
        switch result.status {
        case 10: fix = "install PostgreSQL there (apt-get install postgresql-NN), or set postgres.bindir in the spec"
        case 11: fix = "create it there, or set local.osUser (ssh.user root) or ssh.user to the user PostgreSQL runs as"
        case 12: fix = "create ssh.dir there and give it to \(transport.user), or set ssh.dir to a folder it may write"
        // A program not found: coreutils (id, dirname, and `timeout`, which every short step runs under).
        case 127: fix = "install coreutils there"
        default: fix = "check the host"
        }
        throw ClusterError("\(label): \(problem); \(fix)")
    }

    public func killServer(dataDir: String) async throws(ClusterError) -> [Int32] {
        let result = try await script(Self.killTree, [dataDir])
        if result.status == 3 { return [] }
        guard result.succeeded else {
            throw ClusterError(
                "\(label): cannot tell whether a server runs for \(dataDir), so it was not killed (exit \(result.status)): "
                    + result.output.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        return result.output.split(whereSeparator: { $0 == " " || $0.isNewline }).compactMap { Int32($0) }
    }
}
