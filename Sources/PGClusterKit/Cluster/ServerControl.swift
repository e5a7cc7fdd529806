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
    func hasData(_ node: NodeSpec) async -> Bool
    func start(_ node: NodeSpec) async throws(ClusterError)
    func stop(_ node: NodeSpec, mode: StopMode) async throws(ClusterError)
    /// pg_controldata's output for a stopped node.
    func controlData(_ node: NodeSpec) async throws(ClusterError) -> String
    /// pg_rewind of the stopped `node` against the live `source`; returns pg_rewind's output.
    func rewind(_ node: NodeSpec, from source: NodeSpec, credentials: Credentials) async throws(ClusterError) -> String
    /// Erases the stopped `node`'s data and copies `source` afresh, set to follow it.
    func reclone(_ node: NodeSpec, from source: NodeSpec, credentials: Credentials) async throws(ClusterError)
    /// Makes the stopped `node` a standby of `upstream` from its next start.
    func follow(_ node: NodeSpec, upstream: NodeSpec) async throws(ClusterError)
    /// Kills a server that does not answer, so it cannot come back as a primary by itself.
    /// Returns what was done, or nil when nothing runs there.
    func fence(_ node: NodeSpec) async -> String?
    /// SIGKILL to the node's server, as a crash would (the drill's victim). Returns what
    /// was killed, or nil when nothing ran.
    func crash(_ node: NodeSpec) async -> String?
    func logTail(_ node: NodeSpec, lines: Int) async -> [String]
}

extension LocalCluster: ServerControl {
    public func isRunning(_ node: NodeSpec) async -> Bool { postmasterPID(node) != nil }

    public func hasData(_ node: NodeSpec) async -> Bool { hasDataDirectory(node) }

    public func controlData(_ node: NodeSpec) async throws(ClusterError) -> String {
        try await runner.check(
            serverCommand("pg_controldata", ["-D", layout.dataDir(node.name)]), what: "\(node.name): pg_controldata"
        ).output
    }

    public func rewind(_ node: NodeSpec, from source: NodeSpec, credentials: Credentials) async throws(ClusterError) -> String {
        await clearStalePidFile(node)
        let conninfo = ConfigText.conninfo([
            ("host", source.host), ("port", String(source.port)), ("user", credentials.superuser.user),
            ("dbname", "postgres"), ("connect_timeout", "5"),
        ])
        // The superuser password goes through the child's environment only.
        let command = serverCommand(
            "pg_rewind", ["--target-pgdata=\(layout.dataDir(node.name))", "--source-server=\(conninfo)"],
            environment: ["PGPASSWORD": credentials.superuser.password])
        let output = try await runner.check(command, what: "\(node.name): pg_rewind").output
        try placeConfig(node, following: source)
        return output
    }

    public func reclone(_ node: NodeSpec, from source: NodeSpec, credentials: Credentials) async throws(ClusterError) {
        try removeNodeFiles(node)
        try prepareDirectories(node)
        try await runner.check(
            ClusterInit.cloneCommand(cluster: self, node, from: source, credentials: credentials, progress: false),
            what: "\(node.name): pg_basebackup")
        try placeConfig(node, following: source)
    }

    public func follow(_ node: NodeSpec, upstream: NodeSpec) async throws(ClusterError) {
        try placeConfig(node, following: upstream)
    }

    public func fence(_ node: NodeSpec) async -> String? {
        let killed = killServer(node)
        return killed.isEmpty ? nil : "killed postmaster \(killed[0]) and \(killed.count - 1) children"
    }

    public func crash(_ node: NodeSpec) async -> String? {
        guard let pid = postmasterPID(node) else { return nil }
        kill(pid, SIGKILL)
        return "kill -9 \(node.name) (postmaster \(pid))"
    }

    public func logTail(_ node: NodeSpec, lines: Int) async -> [String] { serverLog(node, lines: lines) }
}
