import Foundation

/// pgBackRest for a cluster with `backup:`: its configuration, its stanza, and the program
/// run as the server's OS user. Backend local: everything on this machine. Backend ssh:
/// the repository is on `backup.repoHost`, where the repository's commands run (backup,
/// info, stanza-create, check); the nodes' hosts archive into it and restore from it by
/// ssh, with a key of the cluster's own. The repository is pgBackRest's own; pgcluster never
/// writes into it by hand.
public struct BackupRepository: Sendable {
    public let cluster: HostCluster
    public let settings: BackupSettings
    /// Where the repository's commands run: this machine, or the repository host.
    let host: any Host
    /// pgBackRest's configuration there.
    let config: String

    public init(cluster: HostCluster) throws(ClusterError) {
        guard let settings = cluster.spec.backup else {
            throw ClusterError(
                "\(cluster.spec.file) has no backup: section",
                exitCode: .usage, details: ["add one, such as  backup: {repo: /var/lib/pgbackrest, retention: {full: 2}}, then run `pgcluster apply`"])
        }
        self.cluster = cluster
        self.settings = settings
        host = cluster.repositoryHost ?? cluster.host(cluster.spec.primary)
        config = cluster.repositoryHost == nil ? cluster.layout.pgbackrestConf : cluster.layout.pgbackrestRepoConf
    }

    var spec: ClusterSpec { cluster.spec }
    var layout: LocalLayout { cluster.layout }
    /// Backend ssh: the repository is on a host of its own.
    var remote: Bool { cluster.repositoryHost != nil }
    /// How messages name the repository: its folder, and its host when it has one.
    public var place: String { remote ? "\(settings.repo) on \(host.label)" : settings.repo }

    /// Where Debian's package installs it; archive_command finds it on the server's PATH.
    public static let program = "/usr/bin/pgbackrest"

    /// Runs `pgbackrest --config=… --stanza=… ARGUMENTS` as the server's OS user where the
    /// repository's commands run.
    @discardableResult
    func run(_ arguments: [String], progress: Bool = false) async throws(ClusterError) -> CommandResult {
        try await run(on: host, config: config, arguments, progress: progress)
    }

    func run(on host: any Host, config: String, _ arguments: [String], progress: Bool) async throws(ClusterError) -> CommandResult {
        if !remote && !FileManager.default.isExecutableFile(atPath: Self.program) {
            throw ClusterError("pgBackRest is not installed (\(Self.program))", details: ["install it: apt-get install pgbackrest"])
        }
        let result = try await host.run(
            [Self.program, "--config=\(config)", "--stanza=\(spec.name)"] + arguments, environment: [:], input: nil, progress: progress)
        if remote && result.status == 127 {
            throw ClusterError("pgBackRest is not installed on \(host.label) (\(Self.program))", details: ["install it there: apt-get install pgbackrest"])
        }
        return result
    }

    /// Runs and fails with pgBackRest's own error lines when it exits non-zero.
    @discardableResult
    func check(_ arguments: [String], what: String, progress: Bool = false) async throws(ClusterError) -> CommandResult {
        try await check(on: host, config: config, arguments, what: what, progress: progress)
    }

    /// `check` on a node's host, with the nodes' configuration: a restore into the node's
    /// data folder runs where that folder is (the same as `check` on backend local).
    @discardableResult
    func check(node: NodeSpec, _ arguments: [String], what: String, progress: Bool = false) async throws(ClusterError) -> CommandResult {
        try await check(on: cluster.host(node), config: layout.pgbackrestConf, arguments, what: what, progress: progress)
    }

    func check(on host: any Host, config: String, _ arguments: [String], what: String, progress: Bool) async throws(ClusterError)
        -> CommandResult
    {
        let result = try await run(on: host, config: config, arguments, progress: progress)
        guard result.succeeded else { throw failure(result, on: host, what: what, progress: progress) }
        return result
    }

    /// pgBackRest's error lines (or its last lines when none says ERROR) under `what`.
    private func failure(_ result: CommandResult, on host: any Host, what: String, progress: Bool) -> ClusterError {
        let lines = result.output.split(whereSeparator: \.isNewline).map(String.init)
        let errors = Self.errorLines(lines)
        return ClusterError(
            "\(what) failed (pgbackrest exit \(result.status))",
            details: (errors.isEmpty ? Array(lines.suffix(8)) : errors).map { "| " + $0 }
                + (progress ? ["pgBackRest's log: \(layout.pgbackrestDir)/log" + (remote ? " on \(host.label)" : "")] : []))
    }

    /// Each ERROR line of pgBackRest's output with the indented lines that continue it (an
    /// error often goes on past a colon on the next lines), without its HINT lines.
    static func errorLines(_ lines: [String]) -> [String] {
        var errors: [String] = []
        var continuing = false
        for line in lines {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if line.contains("ERROR") {
                errors.append(line)
                continuing = true
            } else if continuing, line.first?.isWhitespace == true, !trimmed.hasPrefix("HINT:") {
                errors[errors.count - 1] += " " + trimmed
            } else {
                continuing = false
            }
        }
        return errors
    }

    /// pgBackRest's exit status when a lock it needs is held (LockAcquireError).
    static let lockHeld: Int32 = 50

    /// Everything pgBackRest needs on every host, before the repository's commands: backend
    /// local, pgbackrest.conf and pgBackRest's log and lock folders (owned by the server's
    /// user); backend ssh, ``prepareHosts(createRepository:)``. With `createRepository`, the
    /// repository folder too when it is missing.
    public func writeConfig(createRepository: Bool) async throws(ClusterError) {
        if remote { return try await prepareHosts(createRepository: createRepository) }
        guard let text = try cluster.renderer.pgbackrestConf() else { return }
        var folders = [(layout.pgbackrestDir, 0o750), ("\(layout.pgbackrestDir)/log", 0o750), ("\(layout.pgbackrestDir)/lock", 0o750)]
        if createRepository && !FileManager.default.fileExists(atPath: settings.repo) { folders.append((settings.repo, 0o750)) }
        try await host.makeDirectories(folders)
        try await host.writeFile(layout.pgbackrestConf, text, mode: 0o640)
    }

    /// What a node's archive_command and restore_command need on its host (called whenever
    /// a node's configuration is placed): backend local, pgbackrest.conf; backend ssh, the
    /// nodes' pgbackrest.conf and the way to the repository host.
    /// A repository host that does not answer is said, not a failure: the node starts (or is
    /// rejoined) all the same, and PostgreSQL retries its archive_command until it answers.
    public func prepareNodeHost(_ nodeHost: any Host) async throws(ClusterError) {
        guard remote else { return try await writeConfig(createRepository: false) }
        // The repository host's key goes into the copy of known_hosts: make sure it is there.
        if let error = await reach() {
            Console.warn("\(error.message): \(nodeHost.label) archives into it once it answers")
        }
        try await prepare(nodeHost, nodeHost: true, repositoryHost: false, createRepository: false)
    }

    /// Whether the repository answers now: always on this machine; a repository host when
    /// it runs a command over ssh. A host that does not answer costs ssh's connect timeout,
    /// so its answer is kept for ``ReachMemo/seconds`` in this process (one command asks
    /// once, the watcher again after that).
    public func answers() async -> Bool { await reach() == nil }

    /// nil when the repository answers, else why not.
    func reach() async -> ClusterError? {
        guard remote else { return nil }
        if let kept = ReachMemo.recent(host.label) { return kept.error }
        var failure: ClusterError?
        do {
            try await host.check(["/bin/true"], what: "reaching the backup repository host")
        } catch {
            failure = error
        }
        ReachMemo.keep(host.label, failure)
        return failure
    }

    /// The last answers of repository hosts to this process, by host.
    enum ReachMemo {
        static let seconds: Double = 10
        private static let lock = NSLock()
        nonisolated(unsafe) private static var answers: [String: (error: ClusterError?, at: Date)] = [:]

        static func recent(_ host: String) -> (error: ClusterError?, at: Date)? {
            lock.withLock { answers[host].flatMap { Date().timeIntervalSince($0.at) < seconds ? $0 : nil } }
        }

        static func keep(_ host: String, _ error: ClusterError?) {
            lock.withLock { answers[host] = (error, Date()) }
        }
    }

    /// Backend ssh: on the repository host and every node's host, at once: pgBackRest's
    /// folders, the configuration each needs, the ssh wrapper, the cluster's key, the hosts'
    /// keys (this machine's known_hosts for the cluster, whose entries pgcluster's own
    /// connections checked), and the key admitted for the server's user there.
    /// The repository host must answer; a node's host that does not is said and left out
    /// (a backup needs the primary and one standby, not every node).
    func prepareHosts(createRepository: Bool) async throws(ClusterError) {
        let nodeLabels = Set(cluster.distinctHosts.map(\.host.label))
        // Every host answers (so known_hosts holds its key) before known_hosts is copied.
        let answers = await parallel(cluster.allHosts) { each throws(ClusterError) in
            try await each.check(["/bin/true"], what: "\(each.label): reaching it")
        }
        if let down = answers.first(where: { $0.0.label == host.label })?.1 {
            throw ClusterError("the backup repository host does not answer: \(down.message)", details: down.details)
        }
        for case let (_, error?) in answers { Console.warn("\(error.message): its pgBackRest files are left as they were") }
        let repositoryLabel = host.label
        let failed = await parallel(answers.filter { $0.1 == nil }.map(\.0)) { each throws(ClusterError) in
            try await prepare(
                each, nodeHost: nodeLabels.contains(each.label), repositoryHost: each.label == repositoryLabel,
                createRepository: createRepository)
        }
        if let first = failed.compactMap(\.1).first { throw first }
    }

    /// One round trip to `target` (``prepareScript``).
    func prepare(_ target: any Host, nodeHost: Bool, repositoryHost: Bool, createRepository: Bool) async throws(ClusterError) {
        let key = try await BackupKey.ensure(in: layout.backupKeyFolder, cluster: spec.name)
        guard let knownHosts = FileManager.default.contents(atPath: layout.knownHostsFile) else {
            throw ClusterError("\(layout.knownHostsFile) is missing: pgcluster has not reached the hosts yet")
        }
        // Text, all of it (an OpenSSH key and known_hosts are ASCII): it goes as an argument.
        var files: [(String, Int, String)] = [
            (layout.pgbackrestKey, 0o600, String(decoding: key.privateKey, as: UTF8.self)),
            (layout.pgbackrestKnownHosts, 0o644, String(decoding: knownHosts, as: UTF8.self)),
            (layout.pgbackrestSSH, 0o700, cluster.renderer.pgbackrestSSHWrapper()),
        ]
        if nodeHost, let text = try cluster.renderer.pgbackrestConf() { files.append((layout.pgbackrestConf, 0o640, text)) }
        if repositoryHost, let text = try cluster.renderer.pgbackrestRepoConf() { files.append((layout.pgbackrestRepoConf, 0o640, text)) }
        var arguments = ["/bin/sh", "-c", Self.prepareScript, "sh", layout.pgbackrestDir, key.authorizedLine(cluster: spec.name)]
        arguments.append(repositoryHost && createRepository ? settings.repo : "")
        // A node's host keeps a connection to the repository host open (see the wrapper).
        arguments.append(nodeHost ? repositoryLogin : "")
        for (path, mode, text) in files { arguments += [path, String(mode, radix: 8), text] }
        try await target.check(arguments, what: "\(target.label): preparing pgBackRest (backup:)")
    }

    /// Backend ssh, `restore --into` a cluster on this machine: `folder` on `local` (the new
    /// cluster's host) gets what pgBackRest needs there to read the repository host: the
    /// cluster's key (admitted there already), a copy of pgcluster's known_hosts for the
    /// cluster, the ssh wrapper and a configuration, whose path is returned. The key is the
    /// live cluster's: ``removeReader(in:on:)`` takes it all away once the restore is over.
    func prepareReader(in folder: String, on local: any Host) async throws(ClusterError) -> String {
        let key = try BackupKey.load(from: layout.backupKeyFolder)
        guard let knownHosts = FileManager.default.contents(atPath: layout.knownHostsFile) else {
            throw ClusterError("\(layout.knownHostsFile) is missing: pgcluster has not reached \(spec.name)'s hosts yet")
        }
        guard let config = try cluster.renderer.pgbackrestReaderConf(in: folder) else {
            throw ClusterError("\(spec.file) has no backup.repoHost: there is no repository host to read")
        }
        try await local.makeDirectories([(folder, 0o700)])
        // The kept connection's socket goes in the server user's ~/.ssh: every archive-get of
        // the recovery would open a connection of its own otherwise (0.3 s each).
        let keep = (try? await local.run(["/bin/sh", "-c", #"[ -d "$HOME" ] && mkdir -p "$HOME/.ssh" && chmod 700 "$HOME/.ssh""#]))?.succeeded ?? false
        try await local.writeFile("\(folder)/id_ed25519", key.privateKey, mode: 0o600)
        try await local.writeFile("\(folder)/known_hosts", knownHosts, mode: 0o600)
        try await local.writeFile("\(folder)/ssh", Data(cluster.renderer.pgbackrestSSHWrapper(in: folder, keep: keep).utf8), mode: 0o700)
        try await local.writeFile("\(folder)/pgbackrest.conf", Data(config.utf8), mode: 0o600)
        return "\(folder)/pgbackrest.conf"
    }

    /// Ends the reader's kept ssh connection and removes its folder (best effort).
    func removeReader(in folder: String, on local: any Host) async {
        _ = try? await local.run(
            ["/bin/sh", "-c", #"[ ! -x "$1/ssh" ] || "$1/ssh" -O exit -p "$2" "$3" >/dev/null 2>&1; true"#, "sh", folder, String(spec.ssh.port), repositoryLogin])
        try? await local.remove([folder])
    }

    /// `user@host` of the repository host, as pgBackRest reaches it.
    var repositoryLogin: String { "\(cluster.serverUserName)@\(settings.repoHost ?? "")" }

    /// `$1` pgBackRest's folder (log and lock in it), `$2` the line admitting the cluster's
    /// key in the user's ~/.ssh/authorized_keys, `$3` the repository folder to create (or
    /// empty), `$4` the repository host to keep a connection to (or empty), then `PATH
    /// MODE TEXT` files, each written whole (temporary file, rename). The connection is
    /// opened last, in the background (a repository host that is down costs nothing here),
    /// and may fail (the repository host not admitting the key yet): the next archive
    /// command opens it then.
    static let prepareScript = #"""
        set -e
        umask 077
        dir=$1 line=$2 repo=$3 keep=$4; shift 4
        mkdir -p "$dir/log" "$dir/lock"
        chmod 750 "$dir" "$dir/log" "$dir/lock"
        if [ -n "$repo" ] && [ ! -d "$repo" ]; then mkdir -p "$repo" && chmod 750 "$repo"; fi

        """# + HostCluster.writeEach + #"""
        home=$(getent passwd "$(id -un)" | cut -d: -f6)
        [ -n "$home" ] && [ -d "$home" ] || { echo "no home folder for $(id -un): cannot admit pgBackRest's key" >&2; exit 1; }
        mkdir -p "$home/.ssh"
        chmod 700 "$home/.ssh"
        keys="$home/.ssh/authorized_keys"
        touch "$keys"
        chmod 600 "$keys"
        grep -qxF "$line" "$keys" || printf '%s\n' "$line" >>"$keys"
        if [ -n "$keep" ]; then ("$dir/ssh" "$keep" true </dev/null >/dev/null 2>&1 &); fi
        """#

    /// Backend ssh (`destroy`): the cluster's key no longer admitted on `target`, its kept
    /// ssh connections ended (a node's host keeps one to the repository host, the repository
    /// host one to each node's host after a backup), and pgBackRest's files there gone
    /// (never the repository).
    public func forget(on target: any Host) async throws(ClusterError) {
        guard remote, let key = try? BackupKey.load(from: layout.backupKeyFolder) else { return }
        let logins = [repositoryLogin] + cluster.distinctHosts.map { "\(cluster.serverUserName)@\($0.nodes[0].sshHost ?? $0.nodes[0].host)" }
        try await target.check(
            ["/bin/sh", "-c", Self.forgetScript, "sh", key.authorizedLine(cluster: spec.name), layout.pgbackrestDir] + logins
                + ["--", layout.pgbackrestDir, layout.pgbackrestConf, layout.pgbackrestRepoConf],
            what: "\(target.label): removing pgBackRest's files and key")
    }

    /// `$1` the authorized_keys line, `$2` pgBackRest's folder (its ssh wrapper), then the
    /// logins whose kept connections end, `--`, and the paths to remove.
    static let forgetScript = #"""
        line=$1 dir=$2; shift 2
        while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
          [ -x "$dir/ssh" ] && "$dir/ssh" -O exit "$1" </dev/null >/dev/null 2>&1
          shift
        done
        shift
        home=$(getent passwd "$(id -un)" | cut -d: -f6)
        k="$home/.ssh/authorized_keys"
        if [ -f "$k" ] && grep -qxF "$line" "$k"; then
          grep -vxF "$line" "$k" >"$k.tmp.$$" || true
          chmod 600 "$k.tmp.$$"
          mv -f "$k.tmp.$$" "$k"
        fi
        rm -rf -- "$@"
        """#

    /// The timelines whose history files the archive holds (``ArchivedTimelines``): the
    /// repository's archive folders listed where it is, in one round trip; [] when nothing
    /// was archived yet. A failover asks this beside its first steps.
    public func archivedTimelines() async throws(ClusterError) -> [Int] {
        let list = #"cd "$1/archive/$2" 2>/dev/null || exit 0; for d in */; do [ -d "$d" ] && ls -1 "$d"; done; exit 0"#
        let result = try await host.check(["/bin/sh", "-c", list, "sh", settings.repo, spec.name], what: "listing the WAL archive's timelines")
        return ArchivedTimelines.parse(result.output)
    }

    /// Why the stanza is not this cluster's: it was made for another database system than
    /// the live `primary`'s (a repository shared with another cluster of the same name,
    /// whose backups a restore would put in place of this one's data). nil when it is this
    /// cluster's, or when that cannot be told (no system-id, the primary does not answer).
    public func foreignStanza(_ catalog: BackupCatalog, primary: NodeSpec, credentials: Credentials) async -> ClusterError? {
        guard let stanzaSystem = catalog.systemId, let system = await systemIdentifier(of: primary, credentials: credentials),
            system != stanzaSystem.value
        else { return nil }
        return ClusterError(
            "the repository's stanza \(catalog.stanza) (\(place)) belongs to another database system "
                + "(system-id \(stanzaSystem); \(spec.name)'s is \(system))",
            details: ["another cluster of the same name uses this repository: give each cluster its own backup.repo"])
    }

    /// The cluster's WAL segment size, from the first node whose control file reads (its
    /// server need not run): the archive's file names count segments of that size. nil
    /// when no node's does.
    public func segmentBytes() async -> UInt64? {
        for node in spec.nodes {
            if let text = try? await cluster.controlData(node),
                let bytes = ControlData.value("Bytes per WAL segment", in: text).flatMap({ UInt64($0) })
            {
                return bytes
            }
        }
        return nil
    }

    /// The history of the archive's newest timeline, the one recovery follows
    /// (`recovery_target_timeline = latest`: up from timeline 1 while the next history file
    /// exists); nil when that is timeline 1.
    public func newestTimelineHistory() async throws(ClusterError) -> TimelineHistory? {
        let archived = Set(try await archivedTimelines())
        var newest = 1
        while archived.contains(newest + 1) { newest += 1 }
        guard newest > 1 else { return nil }
        let name = ArchivedTimelines.historyFile(newest)
        let read = #"cd "$1/archive/$2" || exit 1; for d in */; do [ -f "$d$3" ] && exec cat "$d$3"; done; exit 1"#
        let result = try await host.check(
            ["/bin/sh", "-c", read, "sh", settings.repo, spec.name, name], what: "reading \(name) from the WAL archive")
        return TimelineHistory.parse(result.output, timeline: newest)
    }

    /// The archive's history files of `timelines` into `node`'s pg_wal (by archive-get on its
    /// host), before a promotion that does not ask the archive itself.
    public func fetchHistory(_ timelines: [Int], into node: NodeSpec) async throws(ClusterError) {
        for timeline in timelines {
            let name = ArchivedTimelines.historyFile(timeline)
            try await check(
                node: node, ["--pg1-path=\(layout.dataDir(node.name))", "archive-get", name, "\(layout.dataDir(node.name))/pg_wal/\(name)"],
                what: "fetching \(name) from the archive into \(node.name)")
        }
    }

    /// What the repository holds for this cluster's stanza. Needs the repository (and its
    /// host) only: the nodes may be down.
    public func catalog() async throws(ClusterError) -> BackupCatalog {
        let exists = remote ? try await host.exists(settings.repo) : FileManager.default.fileExists(atPath: settings.repo)
        guard exists else {
            throw ClusterError(
                "no backup repository at \(place) (backup.repo of \(spec.file)): correct backup.repo, or take a first backup with `pgcluster backup`")
        }
        if remote {
            let isNodeHost = cluster.distinctHosts.contains { $0.host.label == host.label }
            try await prepare(host, nodeHost: isNodeHost, repositoryHost: true, createRepository: false)
        } else {
            try await writeConfig(createRepository: false)
        }
        return try await info()
    }

    /// `backups`, `restore --into` and init's repository check read the backups of a cluster
    /// that local.dir does not hold (destroyed, lost with its machine, or not made yet: no
    /// credentials.json; backend local): pgBackRest's configuration is written there for
    /// `body` and taken away after it, with local.dir when nothing else is in it (init's
    /// lock, released, then takes its file and the folder it made), so that the cluster does
    /// not seem to exist again.
    public func leavingNoLocalDir<T>(_ body: () async throws(ClusterError) -> T) async throws(ClusterError) -> T {
        guard !remote, !FileManager.default.fileExists(atPath: layout.credentialsFile) else { return try await body() }
        let result: Result<T, ClusterError>
        do throws(ClusterError) {
            result = .success(try await body())
        } catch {
            result = .failure(error)
        }
        try? await host.remove([layout.pgbackrestConf, layout.pgbackrestDir])
        _ = try? await cluster.removeFolderIfEmpty(layout.root, on: LocalHost(serverUser: OSUser.current))
        return try result.get()
    }

    /// For `init`: a repository that already holds this cluster's stanza is refused before
    /// anything is made. It belongs to another database system (a cluster of the same name
    /// destroyed before, whose backups `destroy` keeps), so a new cluster could never archive
    /// into it: pgBackRest refused its stanza-create only after init had built every node,
    /// and the primary's archive_command failed from its first segment. Those backups may
    /// be the only copy of that cluster's data: pgcluster never removes them.
    public func refuseExistingStanza() async throws(ClusterError) {
        // (Its two folders, not `info` alone: with one of them removed, info says "missing"
        // and stanza-create still fails.)
        let present = try await stanzaFolders()
        guard !present.isEmpty else { return }
        let held = try? await leavingNoLocalDir { () async throws(ClusterError) in try await catalog() }
        var holds = present.joined(separator: ", ")
        if let held, !held.stanzaMissing {
            let backups = held.backups.count == 1 ? "1 backup" : "\(held.backups.count) backups"
            let archive = held.walMin.map { first in " and WAL \(first)..\(held.walMax ?? first)" } ?? ""
            holds = backups + archive + (held.systemId.map { " of database system \($0)" } ?? "")
        }
        var details = [
            "they are the backups of the database this cluster held before (init makes a new one), "
                + "maybe the only copy of its data: to keep them, give backup.repo another folder in \(spec.file)",
            "to drop them: \(removeStanza), then run init again",
        ]
        if !remote && !FileManager.default.fileExists(atPath: layout.credentialsFile) {
            // The cluster is gone (destroyed, or its local.dir lost): it can come back from them.
            details.insert(
                "to make the cluster again from them, with its data: pgcluster restore -f \(spec.file) --to latest --in-place --yes", at: 0)
        }
        throw ClusterError(
            "backup.repo \(place) already holds stanza \(spec.name) (\(holds)), which a new cluster cannot archive into; no node was made",
            details: details)
    }

    /// How to drop the stanza by hand (pgcluster never removes backups): both its folders.
    var removeStanza: String {
        "remove both \(settings.repo)/archive/\(spec.name) and \(settings.repo)/backup/\(spec.name)" + (remote ? " on \(host.label)" : "")
    }

    /// The stanza's folders that exist in the repository (`archive/NAME`, `backup/NAME`).
    func stanzaFolders() async throws(ClusterError) -> [String] {
        var present: [String] = []
        for folder in ["archive", "backup"].map({ "\(settings.repo)/\($0)/\(spec.name)" }) {
            if remote ? try await host.exists(folder) : FileManager.default.fileExists(atPath: folder) { present.append(folder) }
        }
        return present
    }

    /// For `apply` (a running cluster whose spec has `backup:`) and `restore --into`: a
    /// stanza of this name made for another database system than `system` is refused
    /// before anything changes. Archiving into it fails for good (pgBackRest compares
    /// system-ids), and stanza-create after the rest of the work left a cluster whose
    /// archive never works. `system` is asked only when the stanza exists.
    public func refuseForeignStanza(system: () async -> UInt64?, what: String) async throws(ClusterError) {
        guard !(try await stanzaFolders()).isEmpty else { return }
        let held = try await catalog()
        guard let stanzaSystem = held.systemId, let system = await system(), stanzaSystem.value != system else { return }
        throw ClusterError(
            "backup.repo \(place) holds a stanza \(spec.name) of another database system (system-id \(stanzaSystem); "
                + "\(what) is \(system)): it could never archive there; nothing was changed",
            details: [
                "another cluster of the same name used this repository: give backup.repo another folder in \(spec.file), "
                    + "or, when those backups are no longer wanted, \(removeStanza)"
            ])
    }

    /// The live primary's database system (`pg_control_system()`), nil when it cannot be read.
    public func systemIdentifier(of primary: NodeSpec, credentials: Credentials) async -> UInt64? {
        let ops = ServerOps(spec: spec, credentials: credentials, templates: cluster.renderer.templates)
        let result = try? await ops.execute(primary, ["SELECT system_identifier FROM pg_control_system()"])
        return result?.scalar.flatMap { UInt64($0) }
    }

    /// `pgbackrest info`, where the configuration is already in place (after ``writeConfig(createRepository:)``).
    func info() async throws(ClusterError) -> BackupCatalog {
        let result = try await check(["--output=json", "info"], what: "pgbackrest info")
        // pgBackRest may print warnings before the JSON.
        let json = result.output.drop { $0 != "[" }
        return try BackupCatalog.parse(String(json), stanza: spec.name)
    }

    /// Creates the stanza when the repository has none for this cluster (pgBackRest checks
    /// that it belongs to this database system when it does).
    public func ensureStanza() async throws(ClusterError) {
        try await writeConfig(createRepository: true)
        try await createStanza()
    }

    /// Before a backup: the configuration in place, and the stanza made only when `info`
    /// finds none. It exists in all but a cluster's first backup, and the `check` that
    /// follows proves it belongs to this database system; `info` asks the repository
    /// alone, where stanza-create asks every node (over ssh, 2 s).
    func prepareForBackup() async throws(ClusterError) {
        try await writeConfig(createRepository: true)
        if (try? await info())?.stanzaMissing != false { try await createStanza() }
    }

    /// `pgbackrest stanza-create`, the configuration in place.
    private func createStanza() async throws(ClusterError) {
        // stanza-create takes all of the stanza's locks, and does not wait for them; every
        // archive-push and archive-get holds the archive lock while it runs (a fraction of a
        // second, longer over ssh), and a primary archives at any time. So a held lock is
        // waited for, 30 s at most.
        let what = "pgbackrest stanza-create for \(spec.name) in \(place)"
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(30)
        while true {
            let result = try await run(["stanza-create"])
            if result.succeeded { return }
            guard result.status == Self.lockHeld, clock.now < deadline else { throw failure(result, on: host, what: what, progress: false) }
            try? await Task.sleep(for: .milliseconds(200))
        }
    }
}

extension BackupSettings {
    /// Whether a repository folder on this machine (no `repoHost`) holds backups of the
    /// stanza `name`: its `backup/NAME` folder, which pgBackRest makes at stanza-create.
    public func holdsBackupsHere(of name: String) -> Bool {
        repoHost == nil && FileManager.default.fileExists(atPath: "\(repo)/backup/\(name)")
    }
}

/// Backend ssh: the cluster's own ssh key pair for pgBackRest between its hosts, made by
/// ssh-keygen on this machine at the first need and kept in local.dir (a folder holding
/// `id_ed25519` and `id_ed25519.pub`, which appears whole or not at all).
struct BackupKey: Sendable {
    var privateKey: Data
    var publicKey: String

    /// The line for ~/.ssh/authorized_keys: no pty, no forwarding; its comment names the
    /// cluster, so that `destroy` finds it.
    func authorizedLine(cluster: String) -> String {
        let fields = publicKey.split(separator: " ")
        return "restrict \(fields.prefix(2).joined(separator: " ")) pgcluster-backup@\(cluster)"
    }

    static func load(from folder: String) throws(ClusterError) -> BackupKey {
        guard let privateKey = FileManager.default.contents(atPath: "\(folder)/id_ed25519"),
            let publicData = FileManager.default.contents(atPath: "\(folder)/id_ed25519.pub"),
            let publicKey = String(data: publicData, encoding: .utf8)
        else { throw ClusterError("\(folder): the cluster's backup key is missing or incomplete") }
        return BackupKey(privateKey: privateKey, publicKey: publicKey.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// The key in `folder`, made first when there is none. Two pgcluster processes may make
    /// one at once: each makes its own in a folder of its own, and renaming that folder onto
    /// `folder` succeeds for one of them only; the other takes the winner's.
    static func ensure(in folder: String, cluster: String) async throws(ClusterError) -> BackupKey {
        if let key = try? load(from: folder) { return key }
        let scratch = "\(folder).new.\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        do {
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        } catch {
            throw ClusterError("cannot create \(scratch) for the cluster's backup key: \(error.localizedDescription)")
        }
        let made = try await LocalRunner().run(
            Command("/usr/bin/ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "pgcluster-backup@\(cluster)", "-f", "\(scratch)/id_ed25519"]))
        guard made.succeeded else {
            throw ClusterError(
                "ssh-keygen could not make the cluster's backup key (exit \(made.status))",
                details: made.output.split(whereSeparator: \.isNewline).map { "| " + $0 })
        }
        if rename(scratch, folder) != 0 && errno != ENOTEMPTY && errno != EEXIST {
            throw ClusterError("cannot move the cluster's backup key into \(folder): \(String(cString: strerror(errno)))")
        }
        return try load(from: folder)
    }
}

/// `pgcluster backup`: stanza (when missing), `pgbackrest check`, then the backup, from a
/// streaming standby when one streams, otherwise from the primary. Takes no cluster lock:
/// a backup may run for hours, and failover must not wait for it (pgBackRest locks the
/// stanza itself).
public struct ClusterBackup: Sendable {
    public enum Kind: String, Sendable, CaseIterable { case full, diff, incr }

    public let repository: BackupRepository
    public let credentials: Credentials
    public var kind: Kind

    public init(cluster: HostCluster, credentials: Credentials, kind: Kind) throws(ClusterError) {
        repository = try BackupRepository(cluster: cluster)
        self.credentials = credentials
        self.kind = kind
    }

    /// The primary's archiver fails (its last attempt is newer than its last success): the
    /// stanza may just have been made, so it is woken once and given 10 s; one that still
    /// fails is refused at once, with what the server's log says, where `pgbackrest check`
    /// would wait out its 60 s archive timeout and name only a WAL file.
    func archiveMustWork(_ primary: NodeSpec) async throws(ClusterError) {
        let ops = ServerOps(spec: repository.spec, credentials: credentials, templates: repository.cluster.renderer.templates)
        guard let archiver = await ops.wakeUntilArchiving(primary), archiver.failing else { return }
        // pgBackRest's last error, with its continuation lines (the cause is on the next one).
        let log = await repository.cluster.serverLog(primary, lines: 60)
        let said = log.lastIndex { $0.contains("ERROR") }.map { last in
            [log[last]] + log[(last + 1)...].prefix { !$0.hasPrefix("20") && !$0.contains(" LOG: ") }.prefix(3)
        } ?? []
        throw ClusterError(
            "\(primary.name) fails to archive WAL (last failed: \(archiver.lastFailedWal ?? "?"); last archived: "
                + "\(archiver.lastArchivedWal ?? "none")): a backup needs a working WAL archive",
            details: said.map { "log | " + $0 }
                + ["fix what stops archive_command (often the repository's permissions, or its host); `pgcluster status` shows the archive"])
    }

    public struct Report: Sendable, Codable {
        public var backup: BackupEntry
        /// The node the files were copied from.
        public var source: String
        public var seconds: Double

        public var text: String {
            let b = backup
            return "backup \(b.label) (\(b.type)) from \(source): \(ByteCount.text(b.size)) of data, "
                + "\(ByteCount.text(b.repositorySize)) in the repository, WAL \(b.walStart ?? "?")..\(b.walStop ?? "?"), "
                + String(format: "%.1f s", seconds)
        }
    }

    public func run() async throws(ClusterError) -> Report {
        let clock = ContinuousClock()
        let began = clock.now
        let spec = repository.spec
        let observations = await Observer(credentials: credentials).observeAll(spec.nodes)
        guard let primary = observations.first(where: \.isPrimary) else {
            throw ClusterError("no primary answers: a backup needs one", details: ["see `pgcluster status`"])
        }
        let standby = observations.first { $0.isStandby && $0.streaming }
        Console.progress("[\(primary.node.name)] pgbackrest stanza and check (stanza \(spec.name), repository \(repository.place))")
        try await repository.prepareForBackup()
        if primary.archiver?.failing == true { try await archiveMustWork(primary.node) }
        try await repository.check(["check"], what: "pgbackrest check (is archive_command working on \(primary.node.name)?)")
        let source = standby?.node.name ?? primary.node.name
        Console.progress("[\(source)] pgbackrest backup --type=\(kind.rawValue)" + (standby == nil ? " (no standby streams: from the primary)" : " (from a standby)"))
        var arguments = ["--type=\(kind.rawValue)", "--log-level-console=off", "--log-level-stderr=info"]
        if standby != nil { arguments.append("--backup-standby") }
        let progress = BackupProgress(
            source: source, host: repository.host, logFile: "\(repository.layout.pgbackrestDir)/log/\(spec.name)-backup.log")
        _ = try await progress.reporting { () async throws(ClusterError) in
            try await repository.check(arguments + ["backup"], what: "pgbackrest backup", progress: true)
        }
        guard let newest = try await repository.info().backups.last else {
            throw ClusterError("pgbackrest backup ended, but the repository lists no backup")
        }
        return Report(backup: newest, source: source, seconds: (clock.now - began).seconds)
    }
}

/// Sizes as people read them.
public enum ByteCount {
    public static func text(_ bytes: Int64) -> String {
        let units = ["B", "kB", "MB", "GB", "TB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
    }
}

extension BackupCatalog {
    /// `pgcluster backups`: one row a backup, then the archived WAL range.
    public var text: String {
        guard !backups.isEmpty else { return "no backups for stanza \(stanza) (\(statusMessage))" }
        var rows = [["LABEL", "TYPE", "START (UTC)", "STOP (UTC)", "SIZE", "IN REPO", "WAL START", "WAL STOP"]]
        for b in backups {
            rows.append([
                b.label, b.type, RestoreTarget.utcText(b.start), RestoreTarget.utcText(b.stop), ByteCount.text(b.size),
                ByteCount.text(b.repositorySize), b.walStart ?? "-", b.walStop ?? "-",
            ])
        }
        let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max()! }
        let lines = rows.map { row in
            row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ")
                .trimmingCharacters(in: .whitespaces)
        }
        return (lines + ["archived WAL: \(walMin ?? "-") .. \(walMax ?? "-")"]).joined(separator: "\n")
    }
}
