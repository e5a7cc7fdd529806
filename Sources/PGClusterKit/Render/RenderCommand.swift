import Foundation

/// What `pgcluster render` writes for a spec, by backend.
public enum RenderCommand {
    /// The files, and for compose the credentials its `.env` holds.
    public struct Plan: Sendable {
        public var files: [RenderedFile]
        public var credentials: Credentials?
    }

    public static func files(_ renderer: Renderer, outputDirectory: String? = nil) throws(ClusterError) -> [RenderedFile] {
        try plan(renderer, outputDirectory: outputDirectory).files
    }

    /// - Parameter outputDirectory: where the files go. For compose the passwords are, in
    ///   order: those already in its `.env` (rendering again never changes the secrets of
    ///   a cluster whose volumes were initialised with them), the spec's, those stored in
    ///   local.dir, new ones. Passwords in `.env` that differ from the stored ones are
    ///   refused: two projects would claim the same cluster.
    public static func plan(_ renderer: Renderer, outputDirectory: String? = nil) throws(ClusterError) -> Plan {
        let spec = renderer.spec
        // With watch.http: HAProxy routing by the watcher's health endpoints, on every backend.
        let haproxy = try renderer.haproxyConf().map { [RenderedFile(path: "haproxy.cfg", contents: $0)] } ?? []
        switch spec.backend {
        case .local, .ssh:
            let logrotate = try renderer.logrotateConf().map { [RenderedFile(path: "logrotate.conf", contents: $0)] } ?? []
            return Plan(files: try renderer.nodeFiles() + haproxy + logrotate, credentials: nil)
        case .compose:
            let envPath = outputDirectory.map { "\($0)/\(ComposeRenderer.FileName.env)" }
            let existing = envPath.flatMap { EnvFile.read($0) } ?? [:]
            let storedPath = LocalLayout(spec: spec).credentialsFile
            let resolved = try Credentials.resolve(spec: spec, storedAt: storedPath)
            let credentials = Credentials(
                superuser: .init(user: spec.superuser.user, password: existing["POSTGRES_PASSWORD"] ?? resolved.superuser.password),
                replication: .init(
                    user: spec.replication.user, password: existing["REPLICATION_PASSWORD"] ?? resolved.replication.password),
                rootCertificate: resolved.rootCertificate)
            if let stored = try Credentials.load(storedPath),
                stored.superuser != credentials.superuser || stored.replication != credentials.replication
            {
                throw ClusterError(
                    "\(envPath ?? "the rendered .env") and \(storedPath) hold different passwords: they would be two clusters under one name",
                    exitCode: .refused,
                    details: [
                        "render into the folder of the cluster pgcluster knows (or a new one), or run pgcluster destroy first"
                    ])
            }
            let compose = ComposeRenderer(
                renderer: renderer, superuserPassword: credentials.superuser.password,
                replicationPassword: credentials.replication.password, projectDirectory: outputDirectory)
            return Plan(files: try renderer.nodeFiles() + compose.projectFiles() + haproxy, credentials: credentials)
        }
    }

    /// The TLS files of a compose project rendered into `outputDirectory`
    /// (``ComposeCluster/certificates(spec:projectDirectory:createCA:)``): made here rather
    /// than in ``plan(_:outputDirectory:)`` because they come from the cluster CA in
    /// local.dir, which a render (not a dry run) creates. None for the other backends, whose
    /// nodes get theirs on their hosts at `init`.
    public static func certificates(_ spec: ClusterSpec, outputDirectory: String, dryRun: Bool) throws(ClusterError)
        -> [RenderedFile]
    {
        guard spec.backend == .compose else { return [] }
        return try ComposeCluster.certificates(spec: spec, projectDirectory: outputDirectory, createCA: !dryRun)
    }

    /// With `compose.watcher: true`: the watcher service's program and libraries
    /// (``WatcherBundle``) into the project at `outputDirectory`.
    @discardableResult
    public static func placeWatcher(_ spec: ClusterSpec, outputDirectory: String, dryRun: Bool) throws(ClusterError)
        -> [FileWriter.Outcome]
    {
        guard spec.backend == .compose, spec.compose.watcher else { return [] }
        return try WatcherBundle.gather().write(under: outputDirectory, dryRun: dryRun)
    }

    /// After a compose project was written to `outputDirectory` (absolute): its passwords
    /// go to local.dir/credentials.json (0600) as `init` stores them, and its folder on
    /// record (``ComposeProjectRecord``), so `status`, `failover`, `drill` and every other
    /// command work on it once it was started by hand with `docker compose up -d`.
    public static func remember(_ plan: Plan, spec: ClusterSpec, outputDirectory: String) throws(ClusterError) {
        guard let credentials = plan.credentials else { return }
        try credentials.save(to: LocalLayout(spec: spec).credentialsFile)
        try ComposeProjectRecord(projectDirectory: outputDirectory).save(spec: spec)
    }
}

/// Reads `KEY=value` lines of a docker-compose `.env` file.
public enum EnvFile {
    public static func read(_ path: String) -> [String: String]? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            values[String(line[..<equals]).trimmingCharacters(in: .whitespaces)] = String(line[line.index(after: equals)...])
        }
        return values
    }
}
