import Foundation

/// A cluster whose servers run on this machine: the spec, where its files live, who
/// the servers run as, and the few server-side steps (pg_ctl, file placement) every
/// command builds on.
public struct LocalCluster: Sendable {
    public let spec: ClusterSpec
    public let layout: LocalLayout
    public let renderer: Renderer
    public let runner: any CommandRunning
    /// The OS user the servers run as (never root).
    public let serverUser: OSUser
    public let bindir: String

    public init(spec: ClusterSpec, templates: TemplateSet = .embedded, runner: any CommandRunning = LocalRunner())
        throws(ClusterError)
    {
        guard spec.backend == .local else {
            throw ClusterError(
                "this command drives backend: local; \(spec.file) has backend: compose",
                details: ["render it with `pgcluster render --out DIR` and start it with `docker compose up -d` in DIR"])
        }
        self.spec = spec
        self.layout = LocalLayout(spec: spec)
        self.renderer = Renderer(spec: spec, templates: templates)
        self.runner = runner
        self.serverUser = try OSUser.serverUser(for: spec)
        self.bindir = try Self.findBindir(spec)
    }

    static func findBindir(_ spec: ClusterSpec) throws(ClusterError) -> String {
        let version = spec.postgres.version
        let candidates = spec.postgres.bindir.map { [$0] } ?? ["/usr/lib/postgresql/\(version)/bin", "/usr/pgsql-\(version)/bin"]
        for dir in candidates where FileManager.default.isExecutableFile(atPath: "\(dir)/pg_ctl") {
            return dir
        }
        throw ClusterError(
            "PostgreSQL \(version) binaries not found in \(candidates.joined(separator: " or "))",
            details: [
                spec.postgres.bindir == nil
                    ? "install them: apt-get install postgresql-\(version) (or set postgres.bindir in \(spec.file))"
                    : "check postgres.bindir in \(spec.file)"
            ])
    }

    public func binary(_ name: String) -> String { "\(bindir)/\(name)" }

    /// The stored credentials; an error when the cluster was never initialised.
    public func credentials() throws(ClusterError) -> Credentials { try Credentials.stored(spec: spec) }

    // MARK: Processes

    /// The postmaster's PID when one runs for this node's data directory.
    public func postmasterPID(_ node: NodeSpec) -> pid_t? {
        let pidFile = "\(layout.dataDir(node.name))/postmaster.pid"
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
            let first = text.split(separator: "\n").first, let pid = pid_t(first.trimmingCharacters(in: .whitespaces)),
            pid > 0
        else { return nil }
        return Self.isAlive(pid) ? pid : nil
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

    public func postmasterRuns(_ node: NodeSpec) -> Bool { postmasterPID(node) != nil }

    public func hasDataDirectory(_ node: NodeSpec) -> Bool {
        FileManager.default.fileExists(atPath: "\(layout.dataDir(node.name))/PG_VERSION")
    }

    func serverCommand(_ program: String, _ arguments: [String], environment: [String: String] = [:]) -> Command {
        Command(
            binary(program), arguments, environment: environment, user: serverUser, workingDirectory: layout.root)
    }

    /// A postmaster.pid left by a server that died. PostgreSQL treats a PID that still
    /// exists as a live server, and a killed server stays a zombie until its parent (often
    /// PID 1) reaps it: wait a little for that, then remove the stale file ourselves.
    public func clearStalePidFile(_ node: NodeSpec) async {
        let pidFile = "\(layout.dataDir(node.name))/postmaster.pid"
        guard postmasterPID(node) == nil,
            let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
            let pid = text.split(separator: "\n").first.flatMap({ pid_t($0.trimmingCharacters(in: .whitespaces)) })
        else { return }
        for _ in 0..<150 where kill(pid, 0) == 0 {
            try? await Task.sleep(for: .milliseconds(20))
        }
        if kill(pid, 0) == 0 { unlink(pidFile) }
    }

    public func start(_ node: NodeSpec) async throws(ClusterError) {
        await clearStalePidFile(node)
        let command = serverCommand(
            "pg_ctl", ["-D", layout.dataDir(node.name), "-l", layout.logFile(node.name), "-w", "-t", "120", "start"])
        let result = try await runner.run(command)
        guard result.succeeded else {
            throw ClusterError(
                "\(node.name): the server did not start (exit \(result.status))",
                details: ["command: \(command)"] + serverLog(node).map { "log | " + $0 })
        }
    }

    public func stop(_ node: NodeSpec, mode: StopMode = .fast) async throws(ClusterError) {
        guard postmasterRuns(node) else { return }
        let command = serverCommand("pg_ctl", ["-D", layout.dataDir(node.name), "-m", mode.rawValue, "-w", "-t", "120", "stop"])
        let result = try await runner.run(command)
        if !result.succeeded && postmasterRuns(node) {
            throw ClusterError(
                "\(node.name): the server did not stop (exit \(result.status))",
                details: ["command: \(command)"] + result.output.split(separator: "\n").suffix(5).map { "| " + $0 })
        }
    }

    /// The last lines of a node's server log, to show beside a failure.
    public func serverLog(_ node: NodeSpec, lines: Int = 15) -> [String] {
        guard let text = try? String(contentsOfFile: layout.logFile(node.name), encoding: .utf8) else { return [] }
        return text.split(separator: "\n").suffix(lines).map(String.init)
    }

    // MARK: Files

    /// Creates a folder owned by the server's user with the given mode.
    public func makeServerDirectory(_ path: String, mode: Int = 0o700) throws(ClusterError) {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw ClusterError("cannot create \(path): \(error.localizedDescription)")
        }
        _ = chmod(path, mode_t(mode))
        if OSUser.isRoot { _ = chown(path, serverUser.uid, serverUser.gid) }
    }

    /// `local.dir` and the node's folders, owned by the server's user; the data folder 0700.
    public func prepareDirectories(_ node: NodeSpec) throws(ClusterError) {
        try makeRoot()
        try makeServerDirectory(layout.nodeDir(node.name), mode: 0o750)
        try makeServerDirectory(layout.socketDir(node.name), mode: 0o750)
        try makeServerDirectory(layout.dataDir(node.name), mode: 0o700)
    }

    public func makeRoot() throws(ClusterError) {
        do {
            try FileManager.default.createDirectory(atPath: layout.root, withIntermediateDirectories: true)
        } catch {
            throw ClusterError("cannot create local.dir \(layout.root): \(error.localizedDescription)")
        }
        // The server's user must be able to enter it; the secrets inside are 0600 each.
        _ = chmod(layout.root, 0o755)
    }

    func writeServerFile(_ path: String, _ contents: String, mode: Int = 0o600) throws(ClusterError) {
        try FileWriter.writeAtomically(
            Data(contents.utf8), to: path, mode: mode, owner: OSUser.isRoot ? serverUser : nil)
    }

    /// A file holding a secret for one program run, on disk only for the instant between
    /// its creation and its unlink: the program reads it as `/proc/self/fd/N` through the
    /// descriptor it inherits, and the kernel frees it when the last descriptor closes —
    /// however pgcluster ends, kill -9 included. A stale file at `path` (left by an older
    /// version) is removed first. Returns the descriptor; the caller closes it.
    func unlinkedSecretFile(_ path: String, _ contents: String) throws(ClusterError) -> Int32 {
        unlink(path)
        let fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0o600)
        guard fd >= 0 else { throw ClusterError("cannot create \(path): \(String(cString: strerror(errno)))") }
        unlink(path)
        if OSUser.isRoot { _ = fchown(fd, serverUser.uid, serverUser.gid) }
        let bytes = Array(contents.utf8)
        guard write(fd, bytes, bytes.count) == bytes.count else {
            close(fd)
            throw ClusterError("cannot write the password file for \(path): \(String(cString: strerror(errno)))")
        }
        return fd
    }

    /// The replication password file walreceivers and pg_basebackup read (0600, server's user).
    public func writePassfile(_ credentials: Credentials) throws(ClusterError) {
        try writeServerFile(layout.passfile, credentials.replicationPassfile)
    }

    /// Puts the rendered postgresql.conf and pg_hba.conf in a node's data folder and, when
    /// `upstream` is given, standby.signal and standby.conf following it. Settings a copy
    /// brought along from another node (pg_basebackup and pg_rewind copy
    /// postgresql.auto.conf) that would point it elsewhere are removed.
    public func placeConfig(_ node: NodeSpec, following upstream: NodeSpec?) throws(ClusterError) {
        let data = layout.dataDir(node.name)
        try writeServerFile("\(data)/postgresql.conf", renderer.postgresqlConf(node))
        try writeServerFile("\(data)/pg_hba.conf", renderer.hbaConf(node))
        if let upstream {
            try writeServerFile("\(data)/standby.conf", renderer.standbyConf(node, upstream: upstream))
            try writeServerFile("\(data)/standby.signal", "")
        } else {
            unlink("\(data)/standby.conf")
            unlink("\(data)/standby.signal")
        }
        try scrubAutoConf(node)
    }

    /// Drops the settings that say whom to follow or wait for from postgresql.auto.conf:
    /// they belong to the node the copy came from.
    func scrubAutoConf(_ node: NodeSpec) throws(ClusterError) {
        let path = "\(layout.dataDir(node.name))/postgresql.auto.conf"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return }
        let dropped: Set<String> = ["primary_conninfo", "primary_slot_name", "synchronous_standby_names"]
        let kept = text.split(separator: "\n", omittingEmptySubsequences: false).filter { line in
            let key = line.split(separator: "=").first?.trimmingCharacters(in: .whitespaces) ?? ""
            return !dropped.contains(key)
        }
        let result = kept.joined(separator: "\n")
        if result != text { try writeServerFile(path, result) }
    }

    /// Removes what pgcluster created for a node (data folder, log, socket folder, initdb's
    /// password file), then the node's folder when nothing else is left in it. Files
    /// pgcluster did not create are kept: their paths are returned.
    @discardableResult
    public func removeNodeFiles(_ node: NodeSpec) throws(ClusterError) -> [String] {
        for path in layout.nodeFiles(node.name) {
            try Self.remove(path)
        }
        return Self.removeFolderIfEmpty(layout.nodeDir(node.name))
    }

    /// Removes a file or a folder with everything in it; nothing when it does not exist.
    static func remove(_ path: String) throws(ClusterError) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        do {
            try FileManager.default.removeItem(atPath: path)
        } catch {
            throw ClusterError("cannot remove \(path): \(error.localizedDescription)")
        }
    }

    /// Removes `folder` when it is empty; otherwise returns the paths of what is in it.
    static func removeFolderIfEmpty(_ folder: String) -> [String] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return [] }
        if entries.isEmpty {
            rmdir(folder)
            return []
        }
        return entries.sorted().map { "\(folder)/\($0)" }
    }
}

extension LocalCluster {
    /// Makes sure a node that does not answer can never come back as a primary by itself:
    /// kills its postmaster and every child of it (found by the data directory's pid file,
    /// never by name). Returns the PIDs killed.
    @discardableResult
    public func killServer(_ node: NodeSpec) -> [pid_t] {
        guard let postmaster = postmasterPID(node) else { return [] }
        let children = Self.childProcesses(of: postmaster)
        for pid in [postmaster] + children {
            kill(pid, SIGKILL)
        }
        // A stopped (SIGSTOP) process dies on SIGKILL too; wait briefly until it is gone.
        for _ in 0..<100 where Self.isAlive(postmaster) {
            usleep(10_000)
        }
        return [postmaster] + children
    }

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
