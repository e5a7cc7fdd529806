import Foundation

/// How a server is stopped (pg_ctl's modes).
public enum StopMode: String, Sendable, CaseIterable {
    case smart, fast, immediate
}

/// The steps that need more than SQL: starting and stopping a server, reading its
/// control file, rewinding or re-cloning its data, and making a stopped server follow
/// another. Switchover, rejoin and drill are written against this, so they run the same
/// on processes of this machine (``LocalCluster``) and on compose services
/// (``ComposeCluster``).
public protocol ServerControl: Sendable {
    var spec: ClusterSpec { get }
    var renderer: Renderer { get }

    func isRunning(_ node: NodeSpec) async -> Bool
    /// Whether a server runs for the node: true or false as its host says, nil when its host
    /// cannot be asked (unreachable). Only a host that answers proves a server stopped.
    func serverRuns(_ node: NodeSpec) async -> Bool?
    func hasData(_ node: NodeSpec) async -> Bool
    /// The node's data directory and the text of its PG_VERSION (nil when it has none, or
    /// its host cannot be asked: the step that needs the host then says so).
    func dataVersion(_ node: NodeSpec) async -> MajorVersion.Found
    func start(_ node: NodeSpec) async throws(ClusterError)
    func stop(_ node: NodeSpec, mode: StopMode) async throws(ClusterError)
    /// A switchover's clean stop of the old primary: the caller reads its control data,
    /// sets it to follow and starts it again at once. Compose keeps the container running
    /// meanwhile (the entrypoint's `hold`), which saves three container starts; the default
    /// is a fast stop. Returns pg_controldata's output when it was read along (one round
    /// trip on a host), nil when the caller asks ``controlData(_:)``.
    func stopForSwitchover(_ node: NodeSpec) async throws(ClusterError) -> String?
    /// pg_controldata's output for a stopped node.
    func controlData(_ node: NodeSpec) async throws(ClusterError) -> String
    /// Finishes the crash recovery of a stopped server that did not shut down cleanly, in
    /// single-user mode (no connections; what pg_rewind itself would do first), so that
    /// its control file says where its WAL ends.
    func finishCrashRecovery(_ node: NodeSpec) async throws(ClusterError)
    /// `pg_waldump --stats=record` of the stopped `node`'s transaction records on `timeline`
    /// from `start` to `end`: what a rewind is about to discard, counted by kind. Its exit
    /// status is the caller's to judge (``PGWaldump/counts(status:output:end:)``).
    func transactionRecords(_ node: NodeSpec, timeline: Int, from start: LSN, to end: LSN) async throws(ClusterError) -> CommandResult
    /// pg_rewind of the stopped `node` against the live `source`; returns pg_rewind's output.
    func rewind(_ node: NodeSpec, from source: NodeSpec, credentials: Credentials) async throws(ClusterError) -> String
    /// A step that changed `node`'s data and stopped before the node was set to follow
    /// (``UnfinishedStep``), told by the mark the step leaves until then; nil when none did.
    /// Such a node is copied afresh (`rejoin`, which asks before it rewinds) and not started.
    func unfinishedStep(_ node: NodeSpec) async -> UnfinishedStep?
    /// Erases the stopped `node`'s data and copies `source` afresh, set to follow it.
    func reclone(_ node: NodeSpec, from source: NodeSpec, credentials: Credentials) async throws(ClusterError)
    /// Makes the stopped `node` a standby of `upstream` from its next start.
    func follow(_ node: NodeSpec, upstream: NodeSpec) async throws(ClusterError)
    /// A switchover's old primary, stopped cleanly: ``follow(_:upstream:)``, without
    /// `restore_command` (``archiveWhileStopped(_:on:)``: its start would wait on the
    /// archive), and ``start(_:)``. A host does it in one round trip.
    func startFollowing(_ node: NodeSpec, upstream: NodeSpec) async throws(ClusterError)
    /// Writes the node's rendered configuration where its server reads it (postgresql.conf,
    /// pg_hba.conf; standby.conf when it follows `upstream`), for a reload (`apply`).
    func placeConfig(_ node: NodeSpec, following upstream: NodeSpec?) async throws(ClusterError)
    /// Kills a server that does not answer, so it cannot come back as a primary by itself.
    /// Returns what was done, or nil when nothing runs there.
    func fence(_ node: NodeSpec) async -> String?
    /// SIGKILL to the node's server, as a crash would (the drill's victim). Returns what
    /// was killed, or nil when nothing ran.
    func crash(_ node: NodeSpec) async -> String?
    func logTail(_ node: NodeSpec, lines: Int) async -> [String]
    /// Gives the node a new certificate from `ca` (or the spec's files with `tls.mode:
    /// files`) where its server reads it; a running server uses it from its next reload.
    @discardableResult
    func installTLS(_ node: NodeSpec, ca: ClusterCA?) async throws(ClusterError) -> NodeCertificate
    /// With `backup:`: the timelines whose history files the WAL archive holds ([] without
    /// an archive); throws when the repository cannot be read.
    func archivedTimelines() async throws(ClusterError) -> [Int]
    /// With `backup:`: the archive's history files of `timelines` into the node's pg_wal.
    func fetchHistory(_ timelines: [Int], into node: NodeSpec) async throws(ClusterError)
    /// With `backup:`, for a stopped node: `on` false, it starts without `restore_command`
    /// (an empty one in postgresql.auto.conf, as ALTER SYSTEM writes it), so that its start
    /// does not wait on archive-gets; `on` true takes that out again. A running node gets
    /// it back with ``ServerOps/archiveOn(_:)``.
    func archiveWhileStopped(_ node: NodeSpec, on: Bool) async throws(ClusterError)
    /// With `backup:`: whether the WAL archive can be read now (false only for a repository
    /// host that does not answer).
    func archiveAnswers() async -> Bool
}

extension ServerControl {
    public func archivedTimelines() async throws(ClusterError) -> [Int] { [] }
    public func fetchHistory(_ timelines: [Int], into node: NodeSpec) async throws(ClusterError) {}
    public func archiveWhileStopped(_ node: NodeSpec, on: Bool) async throws(ClusterError) {}
    public func archiveAnswers() async -> Bool { true }

    /// Starts the stopped standby `node`. When the WAL archive does not answer, without
    /// `restore_command`: PostgreSQL asks the archive first for every WAL file it replays,
    /// and each ask would wait out ssh's connect timeout (a rewound node's start took 24 s
    /// so). Returns true then: the caller gives it back once the node streams
    /// (``ServerOps/archiveOn(_:)``), and PostgreSQL asks the archive only when streaming
    /// stops. A node that needs the archive to catch up cannot, either way, while it is away.
    /// When the archive answers, an empty `restore_command` an earlier start left (one that
    /// stopped part-way) goes.
    public func startStandby(_ node: NodeSpec) async throws(ClusterError) -> Bool {
        guard spec.backup != nil else {
            try await start(node)
            return false
        }
        let withoutArchive = !(await archiveAnswers())
        if withoutArchive { Console.progress("[\(node.name)] starting without restore_command: the WAL archive does not answer") }
        try await archiveWhileStopped(node, on: !withoutArchive)
        try await start(node)
        return withoutArchive
    }

    public func startFollowing(_ node: NodeSpec, upstream: NodeSpec) async throws(ClusterError) {
        try await follow(node, upstream: upstream)
        try await archiveWhileStopped(node, on: false)
        try await start(node)
    }
}

extension HostCluster: ServerControl {
    public func archivedTimelines() async throws(ClusterError) -> [Int] {
        guard spec.backup != nil else { return [] }
        return try await BackupRepository(cluster: self).archivedTimelines()
    }

    public func fetchHistory(_ timelines: [Int], into node: NodeSpec) async throws(ClusterError) {
        guard spec.backup != nil, !timelines.isEmpty else { return }
        try await BackupRepository(cluster: self).fetchHistory(timelines, into: node)
    }

    public func archiveAnswers() async -> Bool {
        guard spec.backup != nil, let repository = try? BackupRepository(cluster: self) else { return true }
        return await repository.answers()
    }

    public func archiveWhileStopped(_ node: NodeSpec, on: Bool) async throws(ClusterError) {
        guard spec.backup != nil else { return }
        let edit = #"""
            set -e
            auto=$1
            [ -f "$auto" ] || : >"$auto"

            """# + Self.rewriteAutoConf + #"""
            rewrite_auto "$auto" restore_command "$2"
            """#
        try await host(node).check(
            ["/bin/sh", "-c", edit, "sh", "\(layout.dataDir(node.name))/postgresql.auto.conf", on ? "" : "restore_command = ''"],
            what: "\(node.name): restore_command in postgresql.auto.conf")
    }

    public func isRunning(_ node: NodeSpec) async -> Bool { await postmasterRuns(node) }

    public func serverRuns(_ node: NodeSpec) async -> Bool? {
        do throws(ClusterError) {
            return try await postmasterPID(node) != nil
        } catch {
            return nil
        }
    }

    public func hasData(_ node: NodeSpec) async -> Bool {
        (try? await host(node).exists("\(layout.dataDir(node.name))/PG_VERSION")) ?? false
    }

    public func dataVersion(_ node: NodeSpec) async -> MajorVersion.Found {
        let dataDir = layout.dataDir(node.name)
        let text = (try? await host(node).readText("\(dataDir)/PG_VERSION")) ?? nil
        return MajorVersion.Found(node: node.name, dataDir: dataDir, pgVersion: text)
    }

    public func controlData(_ node: NodeSpec) async throws(ClusterError) -> String {
        try await server(node, "pg_controldata", ["-D", layout.dataDir(node.name)], what: "\(node.name): pg_controldata").output
    }

    public func finishCrashRecovery(_ node: NodeSpec) async throws(ClusterError) {
        try await clearStalePidFile(node)
        // stdin is empty: the single-user backend recovers, reads end of input, shuts down.
        // Without archiving: with archive_mode on, that shutdown switches to a new WAL segment
        // (so that the last one is archived), and its checkpoint then lies a segment past the
        // fork: rejoin reported 16 MB "discarded" where nothing was. The old primary's WAL past
        // the fork is for pg_rewind to drop, not for the archive.
        try await server(
            node, "postgres", ["--single", "-F", "-D", layout.dataDir(node.name), "-c", "archive_mode=off", "template1"], input: Data(),
            what: "\(node.name): crash recovery in single-user mode")
    }

    public func transactionRecords(_ node: NodeSpec, timeline: Int, from start: LSN, to end: LSN) async throws(ClusterError) -> CommandResult {
        try await host(node).run(
            [binary("pg_waldump")]
                + PGWaldump.transactionStatistics(walDir: "\(layout.dataDir(node.name))/pg_wal", timeline: timeline, from: start, to: end),
            environment: [:], input: nil, progress: false)
    }

    /// One look at the node's folder for both marks (one ssh round trip on backend ssh).
    public func unfinishedStep(_ node: NodeSpec) async -> UnfinishedStep? {
        let names = ((try? await host(node).list(layout.nodeDir(node.name))) ?? nil) ?? []
        let name = { (path: String) in (path as NSString).lastPathComponent }
        // A copy's mark first: a copy that did not finish replaces whatever a rewind left.
        if names.contains(name(layout.cloneMark(node.name))) { return .clone }
        if names.contains(name(layout.rewindMark(node.name))) { return .rewind }
        return nil
    }

    public func rewind(_ node: NodeSpec, from source: NodeSpec, credentials: Credentials) async throws(ClusterError) -> String {
        try await clearStalePidFile(node)
        try await host(node).writeFile(layout.rewindMark(node.name), "pg_rewind from \(source.name) began; removed once the node follows it\n")
        let conninfo = ConfigText.conninfo([
            ("host", source.host), ("port", String(source.port)), ("user", credentials.superuser.user),
            ("dbname", "postgres"), ("connect_timeout", "5"),
        ] + renderer.verifyServer(from: node))
        // The superuser password goes through the child's environment only.
        let output = try await server(
            node, "pg_rewind", ["--target-pgdata=\(layout.dataDir(node.name))", "--source-server=\(conninfo)"],
            environment: ["PGPASSWORD": credentials.superuser.password], what: "\(node.name): pg_rewind"
        ).output
        TestInterruption.point("pg_rewind")
        try await placeConfig(node, following: source)
        // With standby.signal in place, a second pg_rewind (pg_rewind's own single-user run
        // refuses standby mode) fails and rejoin copies afresh; a start recovers as a standby.
        try await host(node).remove([layout.rewindMark(node.name)])
        return output
    }

    public func reclone(_ node: NodeSpec, from source: NodeSpec, credentials: Credentials) async throws(ClusterError) {
        try await removeNodeFiles(node)
        try await clone(node, from: source, credentials: credentials, progress: false)
    }

    public func follow(_ node: NodeSpec, upstream: NodeSpec) async throws(ClusterError) {
        try await placeConfig(node, following: upstream)
    }

    public func fence(_ node: NodeSpec) async -> String? {
        do {
            let killed = try await killServer(node)
            return killed.isEmpty ? nil : "killed postmaster \(killed[0]) and \(killed.count - 1) children"
        } catch {
            return "cannot fence on \(host(node).label): \(error.message)"
        }
    }

    /// SIGKILL to the postmaster and all its processes: the whole node crashes at once.
    public func crash(_ node: NodeSpec) async -> String? {
        guard let killed = try? await killServer(node), let pid = killed.first else { return nil }
        return "kill -9 \(node.name) (postmaster \(pid) and its \(killed.count - 1) processes)"
    }

    public func logTail(_ node: NodeSpec, lines: Int) async -> [String] { await serverLog(node, lines: lines) }
}

extension HostCluster {
    /// Ends, on `upstream`, what an earlier copy of one of `nodes` left running: a
    /// pg_basebackup whose pgcluster was killed takes its parent-death signal, but the WAL
    /// streamer it forked does not inherit it, and streams on into the node's `pg_wal` (the
    /// new copy's, once the folder is made again) holding the node's slot, on which the new
    /// copy would fail. Over ssh, a stopped copy's program runs on too. Its connections are
    /// known by the copy's application_name, or hold the node's slot; each is ended and
    /// waited for (up to 5 s). Not being able to ask is only said: the copy then fails by
    /// itself if one is there.
    func endEarlierCopies(of nodes: [NodeSpec], on upstream: NodeSpec, credentials: Credentials) async {
        let names = nodes.map { ConfigText.sqlLiteral(CloneProgress.applicationName($0.name)) }.joined(separator: ", ")
        let slots = nodes.map { ConfigText.sqlLiteral(renderer.slotName($0)) }.joined(separator: ", ")
        let query = """
            SELECT count(*) FILTER (WHERE NOT pg_terminate_backend(pid, 5000)) FROM pg_stat_activity
            WHERE pid <> pg_backend_pid() AND (application_name IN (\(names))
              OR pid IN (SELECT active_pid FROM pg_replication_slots WHERE slot_name IN (\(slots)) AND active))
            """
        do throws(ClusterError) {
            let target = Observer(credentials: credentials).target(upstream, connectTimeout: 3)
            let left = try await ServerOps.execute([query], on: target, name: upstream.name, timeout: 15).scalar
            if left != "0" { Console.warn("[\(upstream.name)] an earlier copy's connection did not end within 5 s") }
        } catch {
            Console.warn("[\(upstream.name)] cannot look for an earlier copy's connections: \(error.message)")
        }
    }

    /// A fresh copy of `upstream` in `node`'s (new) data folder by pg_basebackup on the
    /// node's host, set up to follow it. A clone that takes a while reports its progress
    /// (``CloneProgress``, from the upstream's statistics, on every backend).
    ///
    /// `copies`, standbys on the same host as `node`, get a file copy of that fresh clone
    /// before any configuration is placed in it (``copyFreshClone(_:to:)``), then their own
    /// configuration: one base backup for several standbys of a host (`init` and `restore`
    /// on a host with more than two). Returns those that were copied (not when the clone has
    /// tablespaces: below).
    @discardableResult
    func clone(
        _ node: NodeSpec, from upstream: NodeSpec, credentials: Credentials, progress: Bool, copies: [NodeSpec] = []
    ) async throws(ClusterError) -> [NodeSpec] {
        await endEarlierCopies(of: [node] + copies, on: upstream, credentials: credentials)
        try await prepareDirectories(node)
        try await host(node).writeFile(layout.cloneMark(node.name), "a copy of \(upstream.name) began; removed once the node follows it\n")
        let source = ConfigText.conninfo(
            [
                ("host", upstream.host), ("port", String(upstream.port)), ("user", credentials.replication.user),
                ("application_name", CloneProgress.applicationName(node.name)),
            ]
                + renderer.verifyServer(from: node))
        var arguments = [
            "-D", layout.dataDir(node.name), "-d", source, "-X", "stream", "-c", "fast", "--no-password",
        ]
        if spec.replication.slots { arguments += ["-S", renderer.slotName(node)] }
        if try await !restoreFromRepository(node, instead: upstream) {
            let reporter = CloneProgress(
                node: node.name, upstream: upstream.name, target: Observer(credentials: credentials).target(upstream, connectTimeout: 3))
            _ = try await reporter.reporting { () async throws(ClusterError) in
                try await server(
                    node, "pg_basebackup", arguments, environment: ["PGPASSFILE": layout.passfile],
                    progress: progress && spec.backend == .local, what: "\(node.name): pg_basebackup")
            }
        }
        var copies = copies
        // A tablespace lives outside the data folder, at the same path for every node of a
        // host: a copy would share the clone's. Each then gets a base backup of its own (which
        // refuses the tablespace's folder in use, as it always did), and so does a clone
        // whose tablespaces cannot be listed.
        if !copies.isEmpty, (try await host(node).list("\(layout.dataDir(node.name))/pg_tblspc")).map({ !$0.isEmpty }) ?? true {
            Console.progress("[\(node.name)] has tablespaces (or none could be listed): the other standbys of its host are cloned, not copied")
            for copy in copies { try await clone(copy, from: upstream, credentials: credentials, progress: false) }
            copies = []
        }
        TestInterruption.point("pg_basebackup")
        try await copyFreshClone(node, to: copies)
        for each in [node] + copies {
            try await placeConfig(each, following: upstream)
            try await host(each).remove([layout.cloneMark(each.name)])
        }
        return copies
    }

    /// Copies `node`'s freshly cloned data folder, still without its configuration, into
    /// each of `copies` (standbys on the same host), all at once, as the server's user.
    ///
    /// A standby started from a copy is the same as one started from its own base backup:
    /// the same backup_label (the checkpoint its recovery starts from) and the WAL up to the
    /// backup's end; what comes after streams through its own slot, which was made reserving
    /// WAL before the backup began (`init`, `restore`). The copy is not fsynced: a server
    /// whose control file does not say it was shut down (a base backup's never does) fsyncs
    /// its whole data folder when it first starts, before it replays anything.
    func copyFreshClone(_ node: NodeSpec, to copies: [NodeSpec]) async throws(ClusterError) {
        let source = layout.dataDir(node.name) + "/."
        let failures = await parallel(copies) { copy throws(ClusterError) in
            try await prepareDirectories(copy)
            try await host(copy).writeFile(layout.cloneMark(copy.name), "a copy of \(node.name)'s fresh clone began; removed once the node follows\n")
            Console.progress("[\(copy.name)] copying \(node.name)'s fresh clone (same host)")
            try await host(copy).check(
                ["/bin/cp", "-a", "--reflink=auto", source, layout.dataDir(copy.name)],
                what: "\(copy.name): copy of \(node.name)'s fresh clone")
        }
        .compactMap(\.1)
        if let failure = ClusterError.combined(failures) { throw failure }
    }

    /// With `backup.standbysFrom: repository` and a backup in the repository: `node`'s data
    /// from pgBackRest's newest backup, restored as a standby (`--type=standby`), instead of a
    /// pg_basebackup that `upstream` would serve; what came after the backup comes from the
    /// WAL archive, then by streaming. False when it does not apply (then clone as usual).
    func restoreFromRepository(_ node: NodeSpec, instead upstream: NodeSpec) async throws(ClusterError) -> Bool {
        guard spec.backup?.standbysFrom == .repository else { return false }
        let repository = try BackupRepository(cluster: self)
        guard let catalog = try? await repository.catalog(), !catalog.backups.isEmpty else {
            Console.progress("[\(node.name)] the repository holds no backup yet: cloning \(upstream.name) with pg_basebackup")
            return false
        }
        // The newest intact backup on the cluster's timeline (one an in-place restore left
        // behind cannot start a standby of today's primary).
        let newest: BackupEntry
        switch RestoreChoice.plan(.latest, catalog: catalog, history: try await repository.newestTimelineHistory()) {
        case .success(let plan):
            newest = plan.backup
        case .failure(let why):
            Console.progress("[\(node.name)] no backup in the repository can start it (\(why.message)): cloning \(upstream.name) with pg_basebackup")
            return false
        }
        Console.progress("[\(node.name)] restoring backup \(newest.label) from the repository (backup.standbysFrom), not cloning \(upstream.name)")
        try await repository.check(
            node: node,
            [
                "--pg1-path=\(layout.dataDir(node.name))", "--set=\(newest.label)", "--type=standby",
                "--log-level-console=off", "--log-level-stderr=info", "restore",
            ],
            what: "pgbackrest restore of backup \(newest.label) into \(node.name)", progress: true)
        // pgBackRest wrote its own restore_command into postgresql.auto.conf, which would win
        // over standby.conf's (the one with this node's --pg1-path): only standby.conf's stays.
        try await host(node).check(
            ["/bin/sh", "-c", #"sed -i '/^[[:space:]]*restore_command[[:space:]]*=/d' "$1""#, "sh", "\(layout.dataDir(node.name))/postgresql.auto.conf"],
            what: "\(node.name): postgresql.auto.conf after the restore")
        return true
    }
}

extension ServerControl {
    /// Refuses (exit 2) when one of `nodes` has data of another major version than the
    /// spec's (``MajorVersion``); every host is asked at once.
    public func checkMajorVersion(_ nodes: [NodeSpec]) async throws(ClusterError) {
        let found = await withTaskGroup(of: MajorVersion.Found.self) { group in
            for node in nodes { group.addTask { await self.dataVersion(node) } }
            var all: [MajorVersion.Found] = []
            for await entry in group { all.append(entry) }
            let order = nodes.map(\.name)
            return all.sorted { order.firstIndex(of: $0.node)! < order.firstIndex(of: $1.node)! }
        }
        try MajorVersion.check(spec: spec, found: found)
    }

    public func stopForSwitchover(_ node: NodeSpec) async throws(ClusterError) -> String? {
        try await stop(node, mode: .fast)
        return nil
    }
}

/// A step on a node's data that stopped before the node was set to follow its upstream.
public enum UnfinishedStep: Sendable, Equatable {
    /// pg_rewind began: the data is neither the node's own nor its source's, and a second
    /// pg_rewind would first run it in single-user mode, which ends its recovery where it
    /// stands (on the new primary's timeline, from a copy of that WAL it holds) or on WAL a
    /// partial copy overwrote; pg_rewind then finds "no rewind required" or misses blocks,
    /// and the standby silently differs from its primary.
    case rewind
    /// A copy began (pg_basebackup, or the file copy of a fresh clone): killed midway, the
    /// data folder is partial (every start fails, again and again under the watcher); killed
    /// after the copy, it has no standby configuration yet.
    case clone

    /// How `rejoin` copies such a node afresh.
    public var rejoinMethod: RejoinMethod { self == .clone ? .cloneAfterUnfinishedClone : .cloneAfterUnfinishedRewind }

    /// Why `start` refuses the node.
    public func startRefusal(_ node: String) -> String {
        switch self {
        case .rewind: return "\(node): a rejoin of it stopped during pg_rewind: its data is neither its own nor its primary's; not started"
        case .clone: return "\(node): an earlier copy of it (pg_basebackup) did not finish: its data is partial or not set up; not started"
        }
    }
}
