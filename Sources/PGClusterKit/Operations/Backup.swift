import Foundation

/// pgBackRest for a cluster with `backup:` (backend local): its configuration, its stanza,
/// and the program run as the server's OS user on the nodes' host. The repository is
/// pgBackRest's own; pgcluster never writes into it by hand.
public struct BackupRepository: Sendable {
    public let cluster: HostCluster
    public let settings: BackupSettings

    public init(cluster: HostCluster) throws(ClusterError) {
        guard let settings = cluster.spec.backup else {
            throw ClusterError(
                "\(cluster.spec.file) has no backup: section",
                exitCode: .usage, details: ["add one, such as  backup: {repo: /var/lib/pgbackrest, retention: {full: 2}}, then run `pgcluster apply`"])
        }
        self.cluster = cluster
        self.settings = settings
    }

    var spec: ClusterSpec { cluster.spec }
    var layout: LocalLayout { cluster.layout }
    /// Every node is on this machine (backend local).
    var host: any Host { cluster.host(spec.primary) }

    /// Where Debian's package installs it; archive_command finds it on the server's PATH.
    public static let program = "/usr/bin/pgbackrest"

    /// Runs `pgbackrest --config=… --stanza=… ARGUMENTS` as the server's OS user.
    @discardableResult
    func run(_ arguments: [String], progress: Bool = false) async throws(ClusterError) -> CommandResult {
        guard FileManager.default.isExecutableFile(atPath: Self.program) else {
            throw ClusterError("pgBackRest is not installed (\(Self.program))", details: ["install it: apt-get install pgbackrest"])
        }
        return try await host.run([Self.program] + cluster.renderer.pgbackrestBase + arguments, environment: [:], input: nil, progress: progress)
    }

    /// Runs and fails with pgBackRest's own error lines when it exits non-zero.
    @discardableResult
    func check(_ arguments: [String], what: String, progress: Bool = false) async throws(ClusterError) -> CommandResult {
        let result = try await run(arguments, progress: progress)
        guard result.succeeded else {
            let lines = result.output.split(whereSeparator: \.isNewline).map(String.init)
            let errors = lines.filter { $0.contains("ERROR") }
            throw ClusterError(
                "\(what) failed (pgbackrest exit \(result.status))",
                details: (errors.isEmpty ? Array(lines.suffix(8)) : errors).map { "| " + $0 }
                    + (progress ? ["pgBackRest's log: \(layout.pgbackrestDir)/log"] : []))
        }
        return result
    }

    /// Writes pgbackrest.conf and pgBackRest's log and lock folders (owned by the server's
    /// user). With `createRepository`, the repository folder too when it is missing.
    public func writeConfig(createRepository: Bool) async throws(ClusterError) {
        guard let text = try cluster.renderer.pgbackrestConf() else { return }
        var folders = [(layout.pgbackrestDir, 0o750), ("\(layout.pgbackrestDir)/log", 0o750), ("\(layout.pgbackrestDir)/lock", 0o750)]
        if createRepository && !FileManager.default.fileExists(atPath: settings.repo) { folders.append((settings.repo, 0o750)) }
        try await host.makeDirectories(folders)
        try await host.writeFile(layout.pgbackrestConf, text, mode: 0o640)
    }

    /// What the repository holds for this cluster's stanza.
    public func catalog() async throws(ClusterError) -> BackupCatalog {
        guard FileManager.default.fileExists(atPath: settings.repo) else {
            throw ClusterError(
                "no backup repository at \(settings.repo) (backup.repo of \(spec.file)): correct backup.repo, or take a first backup with `pgcluster backup`")
        }
        try await writeConfig(createRepository: false)
        let result = try await check(["--output=json", "info"], what: "pgbackrest info")
        // pgBackRest may print warnings before the JSON.
        let json = result.output.drop { $0 != "[" }
        return try BackupCatalog.parse(String(json), stanza: spec.name)
    }

    /// Creates the stanza when the repository has none for this cluster (pgBackRest checks
    /// that it belongs to this database system when it does).
    public func ensureStanza() async throws(ClusterError) {
        try await writeConfig(createRepository: true)
        try await check(["stanza-create"], what: "pgbackrest stanza-create for \(spec.name) in \(settings.repo)")
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
        Console.progress("[\(primary.node.name)] pgbackrest stanza-create and check (stanza \(spec.name), repository \(repository.settings.repo))")
        try await repository.ensureStanza()
        try await repository.check(["check"], what: "pgbackrest check (is archive_command working on \(primary.node.name)?)")
        let source = standby?.node.name ?? primary.node.name
        Console.progress("[\(source)] pgbackrest backup --type=\(kind.rawValue)" + (standby == nil ? " (no standby streams: from the primary)" : " (from a standby)"))
        var arguments = ["--type=\(kind.rawValue)", "--log-level-console=off", "--log-level-stderr=\(Console.stderrIsTTY ? "detail" : "info")"]
        if standby != nil { arguments.append("--backup-standby") }
        try await repository.check(arguments + ["backup"], what: "pgbackrest backup", progress: true)
        guard let newest = try await repository.catalog().backups.last else {
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
