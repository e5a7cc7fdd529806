import Foundation

/// Renders a self-contained docker-compose project for a `backend: compose` spec.
///
/// Its files sit beside the per-node folders of ``Renderer/nodeFiles()``, each of which is
/// mounted read-only at ``ContainerPath/configDir`` in its node's container:
///
/// | file | mode | what |
/// | --- | --- | --- |
/// | `docker-compose.yml` | 0644 | one service per node (named by `serviceHost`), a volume each, the network |
/// | `.env` | 0600 | the project name and both passwords: the only file that holds a secret |
/// | `pgcluster-entrypoint.sh` | 0755 | every node's entrypoint: passfile, clone of the primary, server |
/// | `primary-init.sh` | 0755 | run once by the image after initdb: replication role and slots |
/// | `<node>/tls/server.crt`, `ca.crt` | 0644 | with TLS on: the node's certificate and the cluster CA's (``tlsFiles(_:_:)``) |
/// | `<node>/tls/server.key` | 0600 | its key; the entrypoint copies it to ``ContainerPath/serverKey`` |
///
/// Everything but `.env` and the TLS files depends on the spec alone, so it is the same on
/// every render. The cluster CA's key never enters the project: it stays in local.dir.
/// `.env` holds the passwords given to ``init(renderer:superuserPassword:replicationPassword:)``,
/// else those of the spec, else new random ones.
public struct ComposeRenderer: Sendable {
    public let renderer: Renderer
    /// The password of `superuser.user`, written to `.env` as `POSTGRES_PASSWORD`.
    public let superuserPassword: String
    /// The password of `replication.user`, written to `.env` as `REPLICATION_PASSWORD`.
    public let replicationPassword: String
    /// The project's folder (absolute), where it is known: the watcher service
    /// (`compose.watcher`) mounts it at the same path.
    public let projectDirectory: String?
    /// The engine's socket on this machine, which the watcher service mounts.
    public let engineSocket: String

    /// Where things are inside a node's container.
    public enum ContainerPath {
        /// The node's rendered folder: postgresql.conf, pg_hba.conf and standby.conf, which
        /// postgresql.conf's `include_if_exists = 'standby.conf'` finds beside itself.
        public static let configDir = "/etc/pgcluster"
        public static let dataDir = "/var/lib/postgresql/data"
        /// The replication passfile; `primary_conninfo` names it (see ``Renderer/primaryConninfo(_:upstream:)``).
        public static let passfile = "/var/lib/postgresql/pgpass"
        public static let entrypoint = "/usr/local/bin/pgcluster-entrypoint.sh"
        /// The official image runs the scripts of /docker-entrypoint-initdb.d/ after initdb.
        public static let primaryInit = "/docker-entrypoint-initdb.d/10-pgcluster-replication.sh"
        /// The node's TLS files as rendered (``FileName/tlsDir``), in its read-only config
        /// mount: the certificate and the CA certificate are read there.
        public static let tlsSource = "\(configDir)/\(FileName.tlsDir)"
        public static let serverCertificate = "\(tlsSource)/\(FileName.serverCertificate)"
        public static let caCertificate = "\(tlsSource)/\(FileName.caCertificate)"
        /// The entrypoint's copy of the key, owned by the server's OS user with mode 0600:
        /// PostgreSQL refuses a key others may read, and a mount keeps the host's owner.
        /// Outside the data volume, so pg_basebackup never carries it to another node.
        public static let serverKey = "/var/lib/postgresql/tls/server.key"
        /// Present while a switchover holds the container with its server stopped (the
        /// entrypoint's `hold` mode); `supervisor.pid` beside it says the entrypoint runs
        /// the server as its child.
        public static let holdFile = "/run/pgcluster/hold"
    }

    /// Names of the project's files in the output folder. Node names cannot hold a `.`, so
    /// none of these can clash with a node's folder.
    public enum FileName {
        public static let compose = "docker-compose.yml"
        public static let env = ".env"
        public static let entrypoint = "pgcluster-entrypoint.sh"
        public static let primaryInit = "primary-init.sh"
        /// A node's TLS files, in its folder: `<node>/tls/{server.crt,server.key,ca.crt}`.
        public static let tlsDir = "tls"
        public static let serverCertificate = "server.crt"
        public static let serverKey = "server.key"
        public static let caCertificate = "ca.crt"

        /// `<node>/tls/<file>`, relative to the project folder.
        public static func tls(_ node: String, _ file: String) -> String { "\(node)/\(tlsDir)/\(file)" }
    }

    /// The compose network every node joins; its subnet is `compose.subnet`.
    static let network = "pgcluster"

    /// - Parameters:
    ///   - superuserPassword: overrides `superuser.password` of the spec.
    ///   - replicationPassword: overrides `replication.password` of the spec.
    ///   A password that is neither given nor in the spec is generated, so rendering the
    ///   same spec twice without passwords gives two different `.env` files.
    public init(
        renderer: Renderer, superuserPassword: String? = nil, replicationPassword: String? = nil,
        projectDirectory: String? = nil, engineSocket: String = ComposeRenderer.engineSocket()
    ) {
        self.renderer = renderer
        self.projectDirectory = projectDirectory
        self.engineSocket = engineSocket
        self.superuserPassword = superuserPassword ?? renderer.spec.superuser.password ?? Credentials.generatePassword()
        self.replicationPassword =
            replicationPassword ?? renderer.spec.replication.password ?? Credentials.generatePassword()
    }

    private var spec: ClusterSpec { renderer.spec }

    /// The project's own files, with paths relative to the output folder.
    public func projectFiles() throws(ClusterError) -> [RenderedFile] {
        try checkServiceNames()
        return [
            RenderedFile(path: FileName.compose, contents: try composeFile()),
            RenderedFile(path: FileName.env, contents: try envFile(), mode: 0o600),
            RenderedFile(path: FileName.entrypoint, contents: try entrypointScript(), mode: 0o755),
            RenderedFile(path: FileName.primaryInit, contents: try primaryInitScript(), mode: 0o755),
        ]
    }

    /// Each node's TLS files, from `material` (by node name): ``FileName/tls(_:_:)``.
    public static func tlsFiles(
        _ spec: ClusterSpec, _ material: [String: (certificate: NodeCertificate, caPEM: String)]
    ) -> [RenderedFile] {
        spec.nodes.flatMap { node -> [RenderedFile] in
            guard let (certificate, caPEM) = material[node.name] else { return [] }
            return [
                RenderedFile(path: FileName.tls(node.name, FileName.serverCertificate), contents: certificate.certificatePEM),
                RenderedFile(path: FileName.tls(node.name, FileName.serverKey), contents: certificate.keyPEM, mode: 0o600),
                RenderedFile(path: FileName.tls(node.name, FileName.caCertificate), contents: caPEM),
            ]
        }
    }

    // MARK: docker-compose.yml

    public func composeFile() throws(ClusterError) -> String {
        let primary = spec.primary
        let services: [[String: Any]] = spec.nodes.map { node in
            var volumes = [
                "\(volumeName(node)):\(ContainerPath.dataDir)",
                "./\(node.name):\(ContainerPath.configDir):ro",
                "./\(FileName.entrypoint):\(ContainerPath.entrypoint):ro",
            ]
            if node.role == .primary {
                volumes.append("./\(FileName.primaryInit):\(ContainerPath.primaryInit):ro")
            }
            let healthcheck = [
                "CMD", "pg_isready", "-q", "-h", "127.0.0.1", "-p", String(node.servicePort),
                "-U", spec.superuser.user, "-d", "postgres",
            ]
            let dependsOn: [[String: Any]] =
                node.role == .standby ? [["service": Self.yamlString(primary.serviceHost)]] : []
            return [
                "service": Self.yamlString(node.serviceHost),
                "image": Self.yamlString(spec.compose.image),
                "entrypoint": Self.yamlFlow(["bash", ContainerPath.entrypoint]),
                "environment": environment(node).map { ["key": $0.key, "value": Self.yamlString($0.value)] },
                "volumes": volumes.map { ["mount": Self.yamlString($0)] },
                "publish": Self.yamlString(publishedPort(node)),
                "network": Self.network,
                "healthcheck": Self.yamlFlow(healthcheck),
                "dependsOn": dependsOn,
                "volume": Self.yamlString(volumeName(node)),
            ]
        }
        var context: [String: Any] = [
            "cluster": spec.name,
            "specFile": specFileName,
            "primary": primary.name,
            "configDir": ContainerPath.configDir,
            "network": Self.network,
            "subnet": Self.yamlString(spec.compose.subnet.description),
            "services": services,
        ]
        if let watcher = watcherService() { context["watcher"] = watcher }
        return try renderer.templates.render("docker-compose.yml.mustache", context)
    }

    /// The `pgcluster-watch` service's name (``checkServiceNames()`` keeps nodes off it).
    public static let watcherService = "pgcluster-watch"

    /// Where the watcher's container finds the engine's socket.
    static let watcherEngineSocket = "/run/pgcluster/engine.sock"

    /// The engine's socket on this machine: `DOCKER_HOST` when it names a unix socket, else
    /// Docker's default.
    public static func engineSocket(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let host = environment["DOCKER_HOST"], host.hasPrefix("unix://") { return String(host.dropFirst("unix://".count)) }
        return "/var/run/docker.sock"
    }

    /// Folders the watcher needs at the paths it knows them by: the spec's, local.dir and
    /// the project's, without one that another holds. Pure.
    public static func sharedFolders(_ folders: [String]) -> [String] {
        let sorted = Set(folders.map { URL(fileURLWithPath: $0).standardizedFileURL.path }).sorted()
        var kept: [String] = []
        for folder in sorted where !kept.contains(where: { folder == $0 || folder.hasPrefix($0 == "/" ? "/" : $0 + "/") }) {
            kept.append(folder)
        }
        return kept
    }

    /// With `compose.watcher: true` and the project's folder known: the service that runs
    /// `pgcluster watch` (docker-compose.yml says why it looks as it does).
    private func watcherService() -> [String: Any]? {
        guard spec.compose.watcher, let projectDirectory else { return nil }
        let specPath = URL(fileURLWithPath: spec.file).standardizedFileURL.path
        let folders = Self.sharedFolders([(specPath as NSString).deletingLastPathComponent, spec.local.dir, projectDirectory])
        let mount = WatcherBundle.mountPoint
        let volumes = ["./\(WatcherBundle.folder):\(mount):ro", "\(engineSocket):\(Self.watcherEngineSocket)"]
            + folders.map { "\($0):\($0)" }
        let environment: [(String, String)] = [
            ("PATH", "\(mount)/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            ("LD_LIBRARY_PATH", "\(mount)/\(WatcherBundle.Path.libraries)"),
            ("DOCKER_CONFIG", "\(mount)/\(WatcherBundle.Path.dockerConfig)"),
            ("DOCKER_HOST", "unix://\(Self.watcherEngineSocket)"),
        ]
        return [
            "service": Self.watcherService,
            "image": Self.yamlString(spec.compose.image),
            "entrypoint": Self.yamlFlow(["\(mount)/\(WatcherBundle.Path.executable)", "watch", "-f", specPath]),
            "environment": environment.map { ["key": $0.0, "value": Self.yamlString($0.1)] },
            "volumes": volumes.map { ["mount": Self.yamlString($0)] },
        ]
    }

    /// The variables `node`'s container gets besides those of `.env`, in the order
    /// docker-compose.yml lists them; `pgcluster-entrypoint.sh` documents each.
    public func environment(_ node: NodeSpec) -> [(key: String, value: String)] {
        var variables: [(key: String, value: String)] = [
            ("PGDATA", ContainerPath.dataDir),
            // The image's temporary init server and its psql use PGPORT; our postgresql.conf
            // sets the same port for the real server.
            ("PGPORT", String(node.servicePort)),
            ("POSTGRES_USER", spec.superuser.user),
            // The image's initdb, on the first start of the primary (see ClusterSpec's walSegmentSize).
            ("POSTGRES_INITDB_ARGS", "--wal-segsize=\(spec.postgres.walSegmentMB)"),
            ("NODE_NAME", node.name),
            ("NODE_ROLE", node.role.rawValue),
            ("REPLICATION_USER", spec.replication.user),
            ("POSTGRES_CONFIG_DIR", ContainerPath.configDir),
            ("PASSFILE", ContainerPath.passfile),
        ]
        if renderer.spec.tls.enabled {
            variables.append(("TLS_SOURCE_DIR", ContainerPath.tlsSource))
            variables.append(("TLS_KEY_FILE", ContainerPath.serverKey))
        }
        if node.role == .standby {
            variables.append(("PRIMARY_HOST", spec.primary.serviceHost))
            variables.append(("PRIMARY_PORT", String(spec.primary.servicePort)))
            variables.append(("SLOT_NAME", spec.replication.slots ? renderer.slotName(node) : ""))
        }
        return variables
    }

    /// The named volume of `node`'s data directory.
    public func volumeName(_ node: NodeSpec) -> String { Self.volumeName(node) }

    public static func volumeName(_ node: NodeSpec) -> String { "\(node.name)-data" }

    /// `HOST:PORT:SERVICEPORT`: published on the node's `host` when that is an IPv4 address
    /// (so the default 127.0.0.1 keeps the server off other networks), otherwise on every
    /// interface of the Docker host.
    public func publishedPort(_ node: NodeSpec) -> String {
        let host = node.host == "localhost" ? "127.0.0.1" : node.host
        let ports = "\(node.port):\(node.servicePort)"
        return CIDR.ipv4Bytes(host) != nil ? "\(host):\(ports)" : ports
    }

    /// Service names become DNS names on the compose network (standbys reach the primary by
    /// its `serviceHost`), so they must be plain and unique. The spec loader does not check
    /// `serviceHost`, so the compose render does.
    private func checkServiceNames() throws(ClusterError) {
        var seen: [String: String] = [:]
        for node in spec.nodes {
            let name = node.serviceHost
            let valid = !name.isEmpty && name.first != "." && name.first != "-"
                && name.unicodeScalars.allSatisfy { Self.serviceNameCharacters.contains($0) }
            guard valid else {
                throw ClusterError(
                    "\(spec.file): node \(node.name): serviceHost '\(name)' is not a compose service name",
                    exitCode: .badSpec, details: ["use letters, digits, '.', '_' and '-', starting with a letter or digit"])
            }
            if spec.compose.watcher && name == Self.watcherService {
                throw ClusterError(
                    "\(spec.file): node \(node.name): serviceHost '\(name)' is the watcher's service (compose.watcher)",
                    exitCode: .badSpec, details: ["give the node another serviceHost"])
            }
            if let other = seen[name] {
                throw ClusterError(
                    "\(spec.file): nodes \(other) and \(node.name) have the same serviceHost '\(name)'",
                    exitCode: .badSpec, details: ["each node is its own compose service; give each its own serviceHost"])
            }
            seen[name] = node.name
        }
    }

    private static let serviceNameCharacters = Set(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-".unicodeScalars)

    // MARK: .env

    public func envFile() throws(ClusterError) -> String {
        let context: [String: Any] = [
            "cluster": spec.name,
            "project": spec.compose.project,
            "superuser": spec.superuser.user,
            "replicationUser": spec.replication.user,
            "superuserPassword": try Self.dotenvValue(superuserPassword, what: "superuser.password"),
            "replicationPassword": try Self.dotenvValue(replicationPassword, what: "replication.password"),
        ]
        return try renderer.templates.render("compose-dotenv.mustache", context)
    }

    /// A value of a `.env` line that docker-compose v1 and v2 both read back unchanged:
    /// bare when it holds only characters no dotenv parser treats specially, otherwise
    /// single-quoted (literal in both; no escapes exist inside single quotes).
    static func dotenvValue(_ value: String, what: String) throws(ClusterError) -> String {
        if !value.isEmpty && value.unicodeScalars.allSatisfy({ dotenvBareCharacters.contains($0) }) { return value }
        guard !value.contains(where: { $0 == "'" || $0.isNewline }) else {
            throw ClusterError(
                "\(what) cannot be written to the compose project's .env: it holds a single quote or a line break",
                exitCode: .badSpec, details: ["choose a password without them, or leave it out to have one generated"])
        }
        return "'\(value)'"
    }

    private static let dotenvBareCharacters = Set(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.,:/@%+=~^".unicodeScalars)

    // MARK: Scripts

    public func entrypointScript() throws(ClusterError) -> String {
        let context: [String: Any] = [
            "cluster": spec.name,
            "specFile": specFileName,
            "replicationUser": spec.replication.user,
            "configDir": ContainerPath.configDir,
            "passfile": ContainerPath.passfile,
            "tlsKeyFile": ContainerPath.serverKey,
            "holdFile": ContainerPath.holdFile,
        ]
        return try renderer.templates.render("compose-entrypoint.sh.mustache", context)
    }

    public func primaryInitScript() throws(ClusterError) -> String {
        let slots = spec.replication.slots ? spec.standbys.map(renderer.slotName) : []
        let context: [String: Any] = [
            "cluster": spec.name,
            "specFile": specFileName,
            "replicationUser": spec.replication.user,
            "hasSlots": !slots.isEmpty,
            "slotList": slots.map(ConfigText.sqlLiteral).joined(separator: ", "),
            "slotNames": slots.joined(separator: ", "),
        ]
        return try renderer.templates.render("compose-primary-init.sh.mustache", context)
    }

    // MARK: Quoting

    private var specFileName: String { (spec.file as NSString).lastPathComponent }

    /// A double-quoted YAML scalar, with `$` doubled so docker-compose does not take it
    /// for a variable to interpolate.
    static func yamlString(_ value: String) -> String {
        var quoted = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\\": quoted += "\\\\"
            case "\"": quoted += "\\\""
            case "$": quoted += "$$"
            case "\n": quoted += "\\n"
            case "\t": quoted += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7f:
                quoted += "\\x" + String(scalar.value, radix: 16, uppercase: true).leftPadded(to: 2)
            default: quoted.unicodeScalars.append(scalar)
            }
        }
        return quoted + "\""
    }

    /// A YAML flow sequence of double-quoted strings, such as `["CMD", "pg_isready"]`.
    static func yamlFlow(_ values: [String]) -> String {
        "[" + values.map(yamlString).joined(separator: ", ") + "]"
    }
}

extension String {
    fileprivate func leftPadded(to length: Int) -> String {
        String(repeating: "0", count: max(0, length - count)) + self
    }
}
