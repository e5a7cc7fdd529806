import Foundation

/// The exact `docker compose` command lines pgcluster runs for a compose cluster. Pure:
/// every line is an argument array, unit-tested, and run through ``CommandRunning``.
public struct ComposeCommands: Sendable, Equatable {
    /// `["docker", "compose"]` (the v2 plugin) or `["docker-compose"]` (v1).
    public var tool: [String]
    public var projectDirectory: String
    public var project: String

    public init(tool: [String] = ["docker", "compose"], projectDirectory: String, project: String) {
        self.tool = tool
        self.projectDirectory = projectDirectory
        self.project = project
    }

    var base: [String] {
        tool + ["--project-directory", projectDirectory, "-f", "\(projectDirectory)/\(ComposeRenderer.FileName.compose)", "-p", project]
    }

    /// Starts the whole project.
    public func up() -> [String] { base + ["up", "-d"] }

    /// Starts (or re-creates) one service, leaving the others alone.
    public func start(_ service: String) -> [String] { base + ["up", "-d", "--no-deps", service] }

    /// `fast` and `smart` stop the container (the image's stop signal is SIGINT: a fast
    /// shutdown); `immediate` sends SIGQUIT to the server.
    public func stop(_ service: String, mode: StopMode) -> [String] {
        switch mode {
        case .smart, .fast: base + ["stop", "-t", "120", service]
        case .immediate: base + ["kill", "-s", "SIGQUIT", service]
        }
    }

    /// Stops and removes the project's containers, network and volumes: its data.
    public func down() -> [String] { base + ["down", "-v", "--remove-orphans"] }

    public func kill(_ service: String) -> [String] { base + ["kill", "-s", "SIGKILL", service] }

    /// The service's container id when it runs; empty output when it does not.
    public func running(_ service: String) -> [String] { base + ["ps", "-q", "--status", "running", service] }

    public func logs(_ service: String, lines: Int) -> [String] {
        base + ["logs", "--no-color", "--tail", String(lines), service]
    }

    /// A one-off container of the service, on the project's network with its volume, to
    /// work on the data of a stopped server.
    func oneOff(_ service: String, user: String? = nil, environment: [String] = [], entrypoint: String?) -> [String] {
        var line = base + ["run", "--rm", "--no-deps", "-T"]
        if let user { line += ["-u", user] }
        for variable in environment { line += ["-e", variable] }
        if let entrypoint { line += ["--entrypoint", entrypoint] }
        return line + [service]
    }

    public func controlData(_ service: String) -> [String] {
        oneOff(service, user: "postgres", entrypoint: "pg_controldata") + ["-D", ComposeRenderer.ContainerPath.dataDir]
    }

    public func hasData(_ service: String) -> [String] {
        oneOff(service, user: "postgres", entrypoint: "test") + ["-s", "\(ComposeRenderer.ContainerPath.dataDir)/PG_VERSION"]
    }

    /// The server in single-user mode in a one-off container: finishes crash recovery and
    /// exits at the end of its (empty) input.
    public func singleUserRecovery(_ service: String) -> [String] {
        oneOff(service, user: "postgres", entrypoint: "postgres")
            + ["--single", "-F", "-D", ComposeRenderer.ContainerPath.dataDir, "template1"]
    }

    /// pg_rewind in a one-off container; `PGPASSWORD` (named, not valued) is passed on
    /// from pgcluster's environment, so the password is on no command line.
    public func rewind(_ service: String, sourceConninfo: String) -> [String] {
        oneOff(service, user: "postgres", environment: ["PGPASSWORD"], entrypoint: "pg_rewind")
            + ["--target-pgdata=\(ComposeRenderer.ContainerPath.dataDir)", "--source-server=\(sourceConninfo)"]
    }

    /// Runs the node's entrypoint in `mode` (`follow`: make the existing data a standby of
    /// the upstream; `clone`: copy the upstream into the empty volume), then exits.
    public func entrypoint(_ service: String, mode: String, upstreamHost: String, upstreamPort: Int, slot: String?) -> [String] {
        oneOff(
            service,
            environment: [
                "PGCLUSTER_ENTRYPOINT_MODE=\(mode)", "PRIMARY_HOST=\(upstreamHost)", "PRIMARY_PORT=\(upstreamPort)",
                "SLOT_NAME=\(slot ?? "")",
            ], entrypoint: nil)
    }

    /// Removes the service's container, then its data volume.
    public func remove(_ service: String) -> [String] { base + ["rm", "-s", "-f", service] }

    public func removeVolume(_ volume: String) -> [String] { ["docker", "volume", "rm", "-f", "\(project)_\(volume)"] }
}

/// A cluster whose nodes are services of a docker-compose project rendered under
/// `local.dir/compose`. SQL goes over libpq to the published ports, as for the local
/// backend; server-side steps run through `docker compose` (``ComposeCommands``).
public struct ComposeCluster: ServerControl {
    public let spec: ClusterSpec
    public let renderer: Renderer
    public let runner: any CommandRunning
    public let commands: ComposeCommands

    public init(spec: ClusterSpec, templates: TemplateSet = .embedded, runner: any CommandRunning = LocalRunner(), tool: [String]? = nil) {
        self.spec = spec
        self.renderer = Renderer(spec: spec, templates: templates)
        self.runner = runner
        self.commands = ComposeCommands(
            tool: tool ?? ComposeCluster.findTool(), projectDirectory: Self.projectDirectory(spec), project: spec.compose.project)
    }

    /// Where `init` renders the compose project: `local.dir/compose`.
    public static func projectDirectory(_ spec: ClusterSpec) -> String { "\(spec.local.dir)/compose" }

    /// The v2 plugin when `docker` is on PATH, else docker-compose v1.
    static func findTool() -> [String] {
        if onPath("docker") == nil && onPath("docker-compose") != nil { return ["docker-compose"] }
        return ["docker", "compose"]
    }

    /// Where `name` is found on PATH, if anywhere.
    static func onPath(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    func command(_ line: [String], environment: [String: String] = [:]) -> Command {
        let executable = line[0].hasPrefix("/") ? line[0] : Self.onPath(line[0]) ?? "/usr/bin/\(line[0])"
        return Command(executable, Array(line.dropFirst()), environment: environment)
    }

    /// One clear line when Docker is missing or no engine answers.
    public func checkEngine() async throws(ClusterError) {
        let docker = command(["docker", "info", "--format", "{{.ServerVersion}}"])
        guard FileManager.default.isExecutableFile(atPath: docker.executable) else {
            throw ClusterError("Docker is not installed: the compose backend needs the docker CLI and an engine (apt-get install docker.io docker-compose)")
        }
        let result = try await runner.run(docker)
        guard result.succeeded else {
            let reason = result.output.split(separator: "\n").first.map(String.init) ?? "no answer"
            throw ClusterError("no Docker engine answers (\(reason)): start it, or use backend: local")
        }
    }

    @discardableResult
    func run(_ line: [String], what: String, environment: [String: String] = [:]) async throws(ClusterError) -> CommandResult {
        try await runner.check(command(line, environment: environment), what: what)
    }

    public func isRunning(_ node: NodeSpec) async -> Bool {
        let result = try? await runner.run(command(commands.running(node.serviceHost)))
        return result?.succeeded == true && !(result?.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ?? true)
    }

    public func hasData(_ node: NodeSpec) async -> Bool {
        (try? await runner.run(command(commands.hasData(node.serviceHost))))?.succeeded == true
    }

    public func start(_ node: NodeSpec) async throws(ClusterError) {
        try await run(commands.start(node.serviceHost), what: "\(node.name): docker compose up")
    }

    public func stop(_ node: NodeSpec, mode: StopMode) async throws(ClusterError) {
        try await run(commands.stop(node.serviceHost, mode: mode), what: "\(node.name): docker compose stop")
    }

    public func controlData(_ node: NodeSpec) async throws(ClusterError) -> String {
        try await run(commands.controlData(node.serviceHost), what: "\(node.name): pg_controldata").output
    }

    public func finishCrashRecovery(_ node: NodeSpec) async throws(ClusterError) {
        try await run(commands.singleUserRecovery(node.serviceHost), what: "\(node.name): crash recovery in single-user mode")
    }

    public func rewind(_ node: NodeSpec, from source: NodeSpec, credentials: Credentials) async throws(ClusterError) -> String {
        let conninfo = ConfigText.conninfo([
            ("host", source.serviceHost), ("port", String(source.servicePort)), ("user", credentials.superuser.user),
            ("dbname", "postgres"), ("connect_timeout", "5"),
        ])
        let output = try await run(
            commands.rewind(node.serviceHost, sourceConninfo: conninfo), what: "\(node.name): pg_rewind",
            environment: ["PGPASSWORD": credentials.superuser.password]
        ).output
        try await follow(node, upstream: source)
        return output
    }

    public func reclone(_ node: NodeSpec, from source: NodeSpec, credentials: Credentials) async throws(ClusterError) {
        try await run(commands.remove(node.serviceHost), what: "\(node.name): docker compose rm")
        try await run(commands.removeVolume(ComposeRenderer.volumeName(node)), what: "\(node.name): docker volume rm")
        try await run(
            commands.entrypoint(
                node.serviceHost, mode: "clone", upstreamHost: source.serviceHost, upstreamPort: source.servicePort,
                slot: spec.replication.slots ? renderer.slotName(node) : nil),
            what: "\(node.name): clone from \(source.name)")
    }

    public func follow(_ node: NodeSpec, upstream: NodeSpec) async throws(ClusterError) {
        try await run(
            commands.entrypoint(
                node.serviceHost, mode: "follow", upstreamHost: upstream.serviceHost, upstreamPort: upstream.servicePort,
                slot: spec.replication.slots ? renderer.slotName(node) : nil),
            what: "\(node.name): follow \(upstream.name)")
    }

    public func fence(_ node: NodeSpec) async -> String? {
        guard await isRunning(node) else { return nil }
        _ = try? await runner.run(command(commands.kill(node.serviceHost)))
        return "killed the container of service \(node.serviceHost)"
    }

    /// `docker compose down -v` (containers and volumes), then pgcluster's own files.
    public func destroy() async throws(ClusterError) {
        try await checkEngine()
        try await run(commands.down(), what: "docker compose down")
        let layout = LocalLayout(spec: spec)
        for file in layout.clusterFiles { unlink(file) }
        try? FileManager.default.removeItem(atPath: ComposeCluster.projectDirectory(spec))
        rmdir(layout.root)
    }

    public func logTail(_ node: NodeSpec, lines: Int) async -> [String] {
        let result = try? await runner.run(command(commands.logs(node.serviceHost, lines: lines)))
        return result?.output.split(separator: "\n").map(String.init) ?? []
    }
}
