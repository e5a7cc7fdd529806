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

    /// Stops and removes the project's containers, network and volumes: its data. With the
    /// `watch` profile, so the watcher's container (`compose.watcher`) goes too.
    public func down() -> [String] { base + ["--profile", "watch", "down", "-v", "--remove-orphans"] }

    public func kill(_ service: String) -> [String] { base + ["kill", "-s", "SIGKILL", service] }

    /// Stops the project's watcher service (`compose.watcher`): SIGTERM, which it obeys
    /// between steps.
    public func stopWatcher() -> [String] {
        base + ["--profile", "watch", "stop", "-t", "30", ComposeRenderer.watcherService]
    }

    /// The project's running services, one name a line. docker-compose v1 has no
    /// `ps --status` (it prints its usage and exits 0, which must never read as "running"),
    /// but both versions know `ps --services --filter status=running`; v1 ignores the
    /// service argument and lists them all, so the answer is read by ``lists(_:in:)``.
    public func running(_ service: String) -> [String] {
        base + ["ps", "--services", "--filter", "status=running", service]
    }

    /// The project's services in `status` (running, paused, restarting, exited), read like
    /// ``running(_:)``.
    public func inStatus(_ status: String, _ service: String) -> [String] {
        base + ["ps", "--services", "--filter", "status=\(status)", service]
    }

    /// True when `output` of ``running(_:)`` names `service` on a line of its own: usage
    /// text, errors or another service's name never count.
    public static func lists(_ service: String, in output: String) -> Bool {
        output.split(whereSeparator: \.isNewline).contains { $0.trimmingCharacters(in: .whitespaces) == service }
    }

    /// The compose program to use: the v2 plugin when `docker compose version` worked,
    /// else docker-compose v1 when it is on PATH, else the v2 plugin (whose absence the
    /// first command then reports). Pure.
    public static func chooseTool(pluginWorks: Bool, version1: String?) -> [String] {
        if pluginWorks { return ["docker", "compose"] }
        if version1 != nil { return ["docker-compose"] }
        return ["docker", "compose"]
    }

    public func logs(_ service: String, lines: Int) -> [String] {
        base + ["logs", "--no-color", "--tail", String(lines), service]
    }

    /// The name of a node's step container (a one-off: pg_rewind, a clone, pg_controldata,
    /// a single-user recovery). Steps on a node never overlap under the cluster lock, so a
    /// container found under this name is an earlier step's whose command was stopped: a
    /// killed `docker` client leaves its container running (a pg_rewind or a copy still
    /// writing into the node's volume) or, with `compose run --rm`, never removed.
    /// ``ComposeCluster`` then removes it and runs the step again (``StepContainers``).
    public func stepContainer(_ service: String) -> String { "\(project)-\(service)-step" }

    /// A one-off container of the service, on the project's network with its volume, to
    /// work on the data of a stopped server with other nodes in reach (pg_rewind, clone).
    func oneOff(_ service: String, user: String? = nil, environment: [String] = [], entrypoint: String?) -> [String] {
        var line = base + ["run", "--rm", "--no-deps", "-T", "--name", stepContainer(service)]
        if let user { line += ["-u", user] }
        for variable in environment { line += ["-e", variable] }
        if let entrypoint { line += ["--entrypoint", entrypoint] }
        return line + [service]
    }

    /// What a throwaway container of one node is made of, outside compose.
    public struct Node: Sendable, Equatable {
        /// The node's rendered folder in the project (its name).
        public var folder: String
        /// Its data volume as the project names it (``ComposeRenderer/volumeName(_:)``).
        public var volume: String
        public var image: String
        /// The service's own variables, `KEY=VALUE` (none holds a secret: those are in `.env`).
        public var environment: [String]
        /// Its compose service (`serviceHost`; the folder's name when not given): what its
        /// step container is named after, as the one-offs of `compose run` are.
        public var service: String

        public init(folder: String, volume: String, image: String, environment: [String], service: String? = nil) {
            self.folder = folder
            self.volume = volume
            self.image = image
            self.environment = environment
            self.service = service ?? folder
        }
    }

    /// A one-off container of the node's image with its data volume, rendered folder and
    /// entrypoint, and no network (`docker run --rm --network none`): for steps on a stopped
    /// server's data that reach no other node. It starts in a third of the time of
    /// `compose run`, which joins the project's network first.
    func offline(_ node: Node, user: String?, environment: [String] = [], entrypoint: String, _ arguments: [String]) -> [String] {
        typealias Path = ComposeRenderer.ContainerPath
        var line = [
            "docker", "run", "--rm", "--network", "none", "--name", stepContainer(node.service),
            "-v", "\(project)_\(node.volume):\(Path.dataDir)",
            "-v", "\(projectDirectory)/\(node.folder):\(Path.configDir):ro",
            "-v", "\(projectDirectory)/\(ComposeRenderer.FileName.entrypoint):\(Path.entrypoint):ro",
        ]
        for variable in node.environment + environment { line += ["-e", variable] }
        if let user { line += ["-u", user] }
        return line + ["--entrypoint", entrypoint, node.image] + arguments
    }

    public func controlData(_ node: Node) -> [String] {
        offline(node, user: "postgres", entrypoint: "pg_controldata", ["-D", ComposeRenderer.ContainerPath.dataDir])
    }

    /// In a `compose run` container: `docker run` would make a missing volume without the
    /// project's labels, which `compose up` then complains of.
    public func hasData(_ service: String) -> [String] {
        oneOff(service, user: "postgres", entrypoint: "test") + ["-s", "\(ComposeRenderer.ContainerPath.dataDir)/PG_VERSION"]
    }

    /// The server in single-user mode in a one-off container: finishes crash recovery and
    /// exits at the end of its (empty) input.
    public func singleUserRecovery(_ node: Node) -> [String] {
        offline(
            node, user: "postgres", entrypoint: "postgres",
            [
                "--single", "-F", "-D", ComposeRenderer.ContainerPath.dataDir,
                // The node's own settings (wal_log_hints = on among them): the checkpoint that
                // ends recovery writes them into pg_control, where pg_rewind looks for them.
                "-c", "config_file=\(ComposeRenderer.ContainerPath.configDir)/postgresql.conf",
                "-c", "hba_file=\(ComposeRenderer.ContainerPath.configDir)/pg_hba.conf",
                // No WAL switch at its shutdown (archive_mode on): see HostCluster.finishCrashRecovery.
                "-c", "archive_mode=off", "template1",
            ])
    }

    /// Runs the node's entrypoint in follow mode: makes its existing data a standby of the
    /// upstream (files only, so no network), then exits.
    public func follow(_ node: Node, upstreamHost: String, upstreamPort: Int, slot: String?) -> [String] {
        offline(
            node, user: nil,
            environment: [
                "PGCLUSTER_ENTRYPOINT_MODE=follow", "PRIMARY_HOST=\(upstreamHost)", "PRIMARY_PORT=\(upstreamPort)",
                "SLOT_NAME=\(slot ?? "")",
            ], entrypoint: "bash", [ComposeRenderer.ContainerPath.entrypoint])
    }

    /// pg_rewind in a one-off container; `PGPASSWORD` (named, not valued) is passed on
    /// from pgcluster's environment, so the password is on no command line.
    public func rewind(_ service: String, sourceConninfo: String) -> [String] {
        oneOff(service, user: "postgres", environment: ["PGPASSWORD"], entrypoint: "pg_rewind")
            + ["--target-pgdata=\(ComposeRenderer.ContainerPath.dataDir)", "--source-server=\(sourceConninfo)"]
    }

    /// Runs the node's entrypoint in clone mode on the project's network: copies the
    /// upstream into the empty volume, sets it to follow, then exits.
    public func clone(_ service: String, upstreamHost: String, upstreamPort: Int, slot: String?) -> [String] {
        oneOff(
            service,
            environment: [
                "PGCLUSTER_ENTRYPOINT_MODE=clone", "PRIMARY_HOST=\(upstreamHost)", "PRIMARY_PORT=\(upstreamPort)",
                "SLOT_NAME=\(slot ?? "")",
            ], entrypoint: nil)
    }

    /// Runs the entrypoint in the running container in mode `tls`: it copies the node's key
    /// from the config mount to where the server reads it, owned by the server's OS user
    /// with mode 0600 (as root, which can read the host's file), and exits.
    public func installTLS(_ service: String) -> [String] { inContainer(service, mode: "tls") }

    /// The entrypoint in the running container, as root, in `mode`, with `variables` added.
    func inContainer(_ service: String, mode: String, _ variables: [String] = []) -> [String] {
        var line = base + ["exec", "-T", "-u", "root", "-e", "PGCLUSTER_ENTRYPOINT_MODE=\(mode)"]
        for variable in variables { line += ["-e", variable] }
        return line + [service, "bash", ComposeRenderer.ContainerPath.entrypoint]
    }

    /// Stops the server cleanly and keeps its container running (the entrypoint's `hold`;
    /// exit 3 when no supervisor runs the server: a container started by an older entrypoint).
    public func hold(_ service: String) -> [String] { inContainer(service, mode: "hold") }

    /// pg_controldata in the running container of a held server.
    /// pg_waldump's transaction statistics (``PGWaldump``) in a one-off container.
    public func transactionRecords(_ node: Node, timeline: Int, from start: LSN, to end: LSN) -> [String] {
        offline(
            node, user: "postgres", entrypoint: "pg_waldump",
            PGWaldump.transactionStatistics(walDir: "\(ComposeRenderer.ContainerPath.dataDir)/pg_wal", timeline: timeline, from: start, to: end))
    }

    public func heldControlData(_ service: String) -> [String] {
        base + ["exec", "-T", "-u", "postgres", service, "pg_controldata", "-D", ComposeRenderer.ContainerPath.dataDir]
    }

    /// The entrypoint's follow mode in the running container of a held server.
    public func heldFollow(_ service: String, upstreamHost: String, upstreamPort: Int, slot: String?) -> [String] {
        inContainer(service, mode: "follow", ["PRIMARY_HOST=\(upstreamHost)", "PRIMARY_PORT=\(upstreamPort)", "SLOT_NAME=\(slot ?? "")"])
    }

    /// Lets a held server start again in its container.
    public func release(_ service: String) -> [String] {
        base + ["exec", "-T", "-u", "root", service, "rm", "-f", ComposeRenderer.ContainerPath.holdFile]
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
    private let tool: ToolChoice
    private let held = HeldNodes()

    /// - Parameter tool: the compose program; found on first use when not given
    ///   (``ComposeCommands/chooseTool(pluginWorks:version1:)``).
    public init(spec: ClusterSpec, templates: TemplateSet = .embedded, runner: any CommandRunning = LocalRunner(), tool: [String]? = nil) {
        self.spec = spec
        self.renderer = Renderer(spec: spec, templates: templates)
        self.runner = StepContainers(base: runner)
        self.tool = ToolChoice(tool)
    }

    /// Runs the compose backend's programs; a step container whose name is taken
    /// (``ComposeCommands/stepContainer(_:)``: an earlier step's, whose command was stopped)
    /// is removed (`docker rm -f`, which also stops one still running), said, and the step
    /// run again, once. Only while this process holds the cluster lock (`mayRemove`): that
    /// is what makes the container a stopped command's, never a running one's.
    struct StepContainers: CommandRunning {
        let base: any CommandRunning
        var mayRemove: @Sendable () -> Bool = { HeldLocks.held != nil }

        func run(_ command: Command) async throws(ClusterError) -> CommandResult {
            let result = try await base.run(command)
            guard !result.succeeded, result.output.contains("already in use"), mayRemove(),
                let flag = command.arguments.firstIndex(of: "--name"), flag + 1 < command.arguments.count
            else { return result }
            let name = command.arguments[flag + 1]
            Console.warn("the container \(name) of an earlier step is still there (its command was stopped): removing it")
            var remove = ComposeCluster.command(["docker", "rm", "-f", name])
            remove.timeout = ComposeCluster.probeTimeout
            let removed = try await base.run(remove)
            guard removed.succeeded else {
                throw ClusterError(
                    "the container \(name) of an earlier step is in the way and could not be removed",
                    details: removed.output.split(whereSeparator: \.isNewline).suffix(3).map { "| " + $0 })
            }
            return try await base.run(command)
        }
    }

    /// The command lines for this cluster's project, in the project folder on record.
    public func commands() async -> ComposeCommands {
        ComposeCommands(tool: await tool.resolve(self), projectDirectory: Self.projectDirectory(spec), project: spec.compose.project)
    }

    /// Where `init` renders the compose project: `local.dir/compose`.
    public static func defaultProjectDirectory(_ spec: ClusterSpec) -> String { "\(spec.local.dir)/compose" }

    /// The project folder every command drives: the one `render --out DIR` or `init` put on
    /// record in local.dir (``ComposeProjectRecord``), else `local.dir/compose`.
    public static func projectDirectory(_ spec: ClusterSpec) -> String {
        ComposeProjectRecord.load(spec: spec)?.projectDirectory ?? defaultProjectDirectory(spec)
    }

    /// Asks once per process which compose program works: `docker compose version`, else
    /// docker-compose v1 on PATH.
    final class ToolChoice: @unchecked Sendable {
        private let lock = NSLock()
        private var chosen: [String]?

        init(_ given: [String]?) { chosen = given }

        func resolve(_ cluster: ComposeCluster) async -> [String] {
            if let known = lock.withLock({ chosen }) { return known }
            var pluginWorks = false
            if ComposeCluster.onPath("docker") != nil {
                let probe = try? await cluster.runner.run(cluster.command(["docker", "compose", "version"]))
                pluginWorks = probe?.succeeded == true
            }
            let tool = ComposeCommands.chooseTool(pluginWorks: pluginWorks, version1: ComposeCluster.onPath("docker-compose"))
            lock.withLock { chosen = tool }
            return tool
        }
    }

    /// Where `name` is found on PATH, if anywhere.
    static func onPath(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    func command(_ line: [String], environment: [String: String] = [:]) -> Command {
        Self.command(line, environment: environment)
    }

    /// `line` with its program found on PATH.
    static func command(_ line: [String], environment: [String: String] = [:]) -> Command {
        let executable = line[0].hasPrefix("/") ? line[0] : onPath(line[0]) ?? "/usr/bin/\(line[0])"
        return Command(executable, Array(line.dropFirst()), environment: environment)
    }

    /// A question to the engine (does a container run, kill one): it must not hang a command or
    /// a watcher's tick when the engine does not answer, so it has a deadline.
    func probe(_ line: [String]) -> Command {
        var probe = command(line)
        probe.timeout = Self.probeTimeout
        return probe
    }

    static let probeTimeout: Double = 20

    /// One clear line when Docker is missing or no engine answers.
    public func checkEngine() async throws(ClusterError) {
        let docker = probe(["docker", "info", "--format", "{{.ServerVersion}}"])
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

    /// True when the node's container runs; false only when that is proven (the engine
    /// answered and lists it neither running, paused nor restarting); nil when it cannot be
    /// told. A paused container (`docker pause`) is not stopped: its server comes back, as a
    /// primary, the moment it is unpaused, so it is unknown, never a proven stop.
    public func serverRuns(_ node: NodeSpec) async -> Bool? {
        let commands = await commands()
        let service = node.serviceHost
        guard let running = try? await runner.run(probe(commands.running(service))), running.succeeded else { return nil }
        if ComposeCommands.lists(service, in: running.output) { return true }
        for status in ["paused", "restarting"] {
            guard let result = try? await runner.run(probe(commands.inStatus(status, service))), result.succeeded else {
                return nil
            }
            if ComposeCommands.lists(service, in: result.output) { return nil }
        }
        return false
    }

    public func isRunning(_ node: NodeSpec) async -> Bool {
        guard let result = try? await runner.run(probe(await commands().running(node.serviceHost))), result.succeeded else {
            return false
        }
        return ComposeCommands.lists(node.serviceHost, in: result.output)
    }

    /// Not read on compose: the data lives in a volume that only a container of the project's
    /// image (`compose.image`) opens, and that image's server refuses another major version's
    /// data by itself.
    public func dataVersion(_ node: NodeSpec) async -> MajorVersion.Found {
        MajorVersion.Found(node: node.name, dataDir: ComposeRenderer.ContainerPath.dataDir, pgVersion: nil)
    }

    public func hasData(_ node: NodeSpec) async -> Bool {
        (try? await runner.run(command(await commands().hasData(node.serviceHost))))?.succeeded == true
    }

    public func start(_ node: NodeSpec) async throws(ClusterError) {
        if held.release(node.name) {
            try await run(await commands().release(node.serviceHost), what: "\(node.name): start the held server again")
            return
        }
        try await run(await commands().start(node.serviceHost), what: "\(node.name): docker compose up")
    }

    public func stop(_ node: NodeSpec, mode: StopMode) async throws(ClusterError) {
        try await run(await commands().stop(node.serviceHost, mode: mode), what: "\(node.name): docker compose stop")
    }

    /// Holds the container with its server stopped (``ComposeCommands/hold(_:)``), so that
    /// `controlData`, `follow` and `start` run inside it. A container started by an older
    /// entrypoint, whose server is its first process (exit 3), is stopped as for `.fast`.
    public func stopForSwitchover(_ node: NodeSpec) async throws(ClusterError) -> String? {
        let result = try await runner.run(command(await commands().hold(node.serviceHost)))
        if result.succeeded {
            held.add(node.name)
            return nil
        }
        guard result.status == 3 else {
            throw ClusterError("\(node.name): stopping the server in its container failed: \(result.output.suffix(300))")
        }
        try await stop(node, mode: .fast)
        return nil
    }

    /// The nodes whose container this process holds with the server stopped.
    final class HeldNodes: @unchecked Sendable {
        private let lock = NSLock()
        private var names: Set<String> = []

        func add(_ name: String) { lock.withLock { _ = names.insert(name) } }
        func contains(_ name: String) -> Bool { lock.withLock { names.contains(name) } }
        /// Whether `name` was held; it is not any more.
        func release(_ name: String) -> Bool { lock.withLock { names.remove(name) != nil } }
    }

    /// `node` as a throwaway container outside compose sees it (``ComposeCommands/Node``).
    func offline(_ node: NodeSpec) -> ComposeCommands.Node {
        let environment = ComposeRenderer(renderer: renderer, superuserPassword: "", replicationPassword: "").environment(node)
        return ComposeCommands.Node(
            folder: node.name, volume: ComposeRenderer.volumeName(node), image: spec.compose.image,
            environment: environment.map { "\($0.key)=\($0.value)" }, service: node.serviceHost)
    }

    public func controlData(_ node: NodeSpec) async throws(ClusterError) -> String {
        let line = held.contains(node.name) ? await commands().heldControlData(node.serviceHost) : await commands().controlData(offline(node))
        return try await run(line, what: "\(node.name): pg_controldata").output
    }

    public func transactionRecords(_ node: NodeSpec, timeline: Int, from start: LSN, to end: LSN) async throws(ClusterError) -> CommandResult {
        try await runner.run(command(await commands().transactionRecords(offline(node), timeline: timeline, from: start, to: end)))
    }

    public func finishCrashRecovery(_ node: NodeSpec) async throws(ClusterError) {
        try await run(await commands().singleUserRecovery(offline(node)), what: "\(node.name): crash recovery in single-user mode")
    }

    /// Only a rewind: a compose node's copy is made by its container's entrypoint, which
    /// copies afresh until one finishes (its volume is removed first).
    public func unfinishedStep(_ node: NodeSpec) async -> UnfinishedStep? {
        FileManager.default.fileExists(atPath: LocalLayout(spec: spec).composeRewindMark(node.name)) ? .rewind : nil
    }

    public func rewind(_ node: NodeSpec, from source: NodeSpec, credentials: Credentials) async throws(ClusterError) -> String {
        let mark = LocalLayout(spec: spec).composeRewindMark(node.name)
        try FileWriter.writeAtomically(Data("pg_rewind from \(source.name) began; removed once the node follows it\n".utf8), to: mark, mode: 0o600)
        let conninfo = ConfigText.conninfo([
            ("host", source.serviceHost), ("port", String(source.servicePort)), ("user", credentials.superuser.user),
            ("dbname", "postgres"), ("connect_timeout", "5"),
        ] + renderer.verifyServer(from: node))
        let output = try await run(
            await commands().rewind(node.serviceHost, sourceConninfo: conninfo), what: "\(node.name): pg_rewind",
            environment: ["PGPASSWORD": credentials.superuser.password]
        ).output
        try await follow(node, upstream: source)
        unlink(mark)
        return output
    }

    public func reclone(_ node: NodeSpec, from source: NodeSpec, credentials: Credentials) async throws(ClusterError) {
        try await run(await commands().remove(node.serviceHost), what: "\(node.name): docker compose rm")
        try await run(await commands().removeVolume(ComposeRenderer.volumeName(node)), what: "\(node.name): docker volume rm")
        // The rewound data went with its volume.
        unlink(LocalLayout(spec: spec).composeRewindMark(node.name))
        try await run(
            await commands().clone(
                node.serviceHost, upstreamHost: source.serviceHost, upstreamPort: source.servicePort,
                slot: spec.replication.slots ? renderer.slotName(node) : nil),
            what: "\(node.name): clone from \(source.name)")
    }

    public func follow(_ node: NodeSpec, upstream: NodeSpec) async throws(ClusterError) {
        let slot = spec.replication.slots ? renderer.slotName(node) : nil
        let commands = await commands()
        let line =
            held.contains(node.name)
            ? commands.heldFollow(node.serviceHost, upstreamHost: upstream.serviceHost, upstreamPort: upstream.servicePort, slot: slot)
            : commands.follow(offline(node), upstreamHost: upstream.serviceHost, upstreamPort: upstream.servicePort, slot: slot)
        try await run(line, what: "\(node.name): follow \(upstream.name)")
    }

    /// Into the node's folder of the project, which its container mounts (a folder, so a
    /// file replaced there is seen inside at once). A standby's upstream stays in
    /// postgresql.auto.conf, where `follow` put it; standby.conf says the same.
    public func placeConfig(_ node: NodeSpec, following upstream: NodeSpec?) async throws(ClusterError) {
        var files = [
            RenderedFile(path: "\(node.name)/postgresql.conf", contents: try renderer.postgresqlConf(node)),
            RenderedFile(path: "\(node.name)/pg_hba.conf", contents: try renderer.hbaConf(node)),
        ]
        if let upstream {
            files.append(RenderedFile(path: "\(node.name)/standby.conf", contents: try renderer.standbyConf(node, upstream: upstream)))
        }
        try FileWriter().write(files, under: Self.projectDirectory(spec))
    }

    public func fence(_ node: NodeSpec) async -> String? {
        guard await isRunning(node) else { return nil }
        _ = try? await runner.run(probe(await commands().kill(node.serviceHost)))
        return "killed the container of service \(node.serviceHost)"
    }

    /// SIGKILL to the container's first process (the entrypoint that runs the server): the
    /// whole node crashes at once.
    public func crash(_ node: NodeSpec) async -> String? {
        guard let result = try? await runner.run(probe(await commands().kill(node.serviceHost))), result.succeeded else {
            return nil
        }
        return "docker compose kill -s SIGKILL \(node.serviceHost)"
    }

    /// `docker compose down -v` (containers and volumes), then pgcluster's own files. A
    /// project folder rendered elsewhere by `render --out DIR` is left in place.
    /// Stops the project's own watcher (`compose.watcher`), which holds the cluster lock
    /// while it runs: `destroy` does this before it takes the lock. Nothing to do without a
    /// rendered project; a failure is a warning (the lock then says who holds it).
    public func stopWatcher() async {
        let directory = Self.projectDirectory(spec)
        guard spec.compose.watcher, FileManager.default.fileExists(atPath: "\(directory)/\(ComposeRenderer.FileName.compose)") else {
            return
        }
        do throws(ClusterError) {
            try await checkEngine()
            _ = try await run(await commands().stopWatcher(), what: "docker compose stop \(ComposeRenderer.watcherService)")
            Console.progress("stopped the project's watcher (\(ComposeRenderer.watcherService))")
        } catch {
            Console.warn("could not stop the project's watcher: \(error.message)")
        }
    }

    public func destroy() async throws(ClusterError) {
        try await checkEngine()
        try await run(await commands().down(), what: "docker compose down")
        let layout = LocalLayout(spec: spec)
        for file in layout.clusterFiles + [ComposeProjectRecord.path(spec: spec)] + spec.nodes.map({ layout.composeRewindMark($0.name) }) {
            unlink(file)
        }
        try? FileManager.default.removeItem(atPath: ComposeCluster.defaultProjectDirectory(spec))
        rmdir(layout.root)
    }

    public func logTail(_ node: NodeSpec, lines: Int) async -> [String] {
        let result = try? await runner.run(command(await commands().logs(node.serviceHost, lines: lines)))
        return result?.output.split(separator: "\n").map(String.init) ?? []
    }
}

// MARK: TLS

extension ComposeCluster {
    /// Every node's TLS files for the project in `projectDirectory` (``ComposeRenderer/tlsFiles(_:_:)``);
    /// none with `tls.mode: off`. With `generate`, a node keeps the files it has there while
    /// they are still good (``NodeTLS/stillValid(_:caPEM:for:spec:ca:now:)``), so that
    /// rendering again changes nothing; otherwise it gets a new certificate from the cluster
    /// CA in local.dir (made there first; `createCA: false` for a dry run). With `files`, the
    /// spec's files.
    public static func certificates(spec: ClusterSpec, projectDirectory: String, createCA: Bool = true) throws(ClusterError)
        -> [RenderedFile]
    {
        guard spec.tls.enabled else { return [] }
        let ca = spec.tls.mode == .generate ? try NodeTLS.clusterCA(spec, create: createCA) : nil
        var material: [String: (certificate: NodeCertificate, caPEM: String)] = [:]
        for node in spec.nodes {
            if let ca, let existing = existingTLS(node, in: projectDirectory),
                NodeTLS.stillValid(existing.certificate, caPEM: existing.caPEM, for: node, spec: spec, ca: ca)
            {
                material[node.name] = existing
            } else {
                material[node.name] = try NodeTLS.material(spec, node, ca: ca)
            }
        }
        return ComposeRenderer.tlsFiles(spec, material)
    }

    static func existingTLS(_ node: NodeSpec, in directory: String) -> (certificate: NodeCertificate, caPEM: String)? {
        typealias Name = ComposeRenderer.FileName
        func read(_ file: String) -> String? {
            FileManager.default.contents(atPath: "\(directory)/\(Name.tls(node.name, file))").map { String(decoding: $0, as: UTF8.self) }
        }
        guard let certificate = read(Name.serverCertificate), let key = read(Name.serverKey), let ca = read(Name.caCertificate)
        else { return nil }
        return (NodeCertificate(certificatePEM: certificate, keyPEM: key), ca)
    }

    /// A new certificate for `node` (or the spec's files again) written into its folder of
    /// the project; a running container copies the key into place at once (the entrypoint
    /// does so on every start too). The server reads them on its next reload.
    @discardableResult
    public func installTLS(_ node: NodeSpec, ca: ClusterCA? = nil) async throws(ClusterError) -> NodeCertificate {
        var authority = ca
        if authority == nil && spec.tls.mode == .generate { authority = try NodeTLS.clusterCA(spec) }
        let material = try NodeTLS.material(spec, node, ca: authority)
        try FileWriter().write(ComposeRenderer.tlsFiles(spec, [node.name: material]), under: Self.projectDirectory(spec))
        if await isRunning(node) {
            try await run(await commands().installTLS(node.serviceHost), what: "\(node.name): copy its new key into the container")
        }
        return material.certificate
    }
}

/// Which folder holds the compose project that pgcluster drives: `local.dir/compose.json`,
/// written by `init` (local.dir/compose) and by `render --out DIR`, so every command also
/// works on a project started by hand with `docker compose up -d` in DIR.
public struct ComposeProjectRecord: Codable, Sendable, Equatable {
    /// An absolute path.
    public var projectDirectory: String

    public init(projectDirectory: String) { self.projectDirectory = projectDirectory }

    public static func path(spec: ClusterSpec) -> String { "\(spec.local.dir)/compose.json" }

    public static func load(spec: ClusterSpec) -> ComposeProjectRecord? {
        guard let data = FileManager.default.contents(atPath: path(spec: spec)) else { return nil }
        return try? JSONDecoder().decode(ComposeProjectRecord.self, from: data)
    }

    public func save(spec: ClusterSpec) throws(ClusterError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try FileWriter.writeAtomically((try? encoder.encode(self)) ?? Data(), to: Self.path(spec: spec), mode: 0o644)
    }
}
