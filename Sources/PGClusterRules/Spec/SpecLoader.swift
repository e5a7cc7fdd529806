import Foundation
import Yams

/// Reads and validates a cluster spec.
///
/// The YAML is walked as a node tree rather than decoded with `Codable`, so that
/// every problem can name its line and key path, unknown keys are refused, and all
/// problems are reported at once.
public enum SpecLoader {
    /// Names of nodes and clusters: they become directory names, `application_name`,
    /// entries of `synchronous_standby_names`, slot names and compose service names.
    /// Lowercase only, because PostgreSQL compares standby names case-insensitively.
    static let namePattern = #/^[a-z0-9][a-z0-9_-]{0,62}$/#
    /// A node's slot is `pgcluster_<name>`, and slot names have at most 63 bytes.
    static let maxNodeNameLength = 63 - "pgcluster_".count
    static let rolePattern = #/^[a-z_][a-z0-9_]{0,62}$/#
    static let parameterPattern = #/^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$/#

    /// Settings the rendered files own; a spec that sets them in `postgres.parameters`
    /// would silently break replication or the tool's view of the cluster. Each is
    /// refused with this reason. (Settings the rendered postgresql.conf only suggests,
    /// such as max_connections, may be given: see ``Renderer/tunableSettings``.)
    public static let managedParameters: [String: String] = {
        var reasons: [String: String] = [:]
        for name in [
            "port", "listen_addresses", "unix_socket_directories", "wal_level", "hot_standby", "max_wal_senders",
            "max_replication_slots", "synchronous_standby_names", "primary_conninfo", "primary_slot_name", "hba_file",
            "ident_file", "config_file", "data_directory", "cluster_name", "include", "include_if_exists", "include_dir",
            "password_encryption",
        ] {
            reasons[name] = "set by pgcluster itself; remove it from parameters"
        }
        reasons["wal_log_hints"] = "set by pgcluster itself: pg_rewind needs it to bring a failed primary back"
        reasons["synchronous_commit"] =
            "set by pgcluster itself: it stays on, because off or local would acknowledge commits that no standby has; "
            + "choose the waiting with replication.synchronous or `pgcluster quorum`"
        reasons["max_slot_wal_keep_size"] = "set by pgcluster itself: give the cap as replication.maxSlotWalKeep"
        reasons["recovery_min_apply_delay"] =
            "not supported: a delayed standby makes every failover wait for it to replay, or promotes a standby "
            + "that has not applied acknowledged commits"
        return reasons
    }()

    /// Settings that may be given only with a value that keeps acknowledged commits safe.
    static let mustStayOn: [String: String] = [
        "fsync": "off loses acknowledged commits and can corrupt the data in a crash of the server or the machine",
        "full_page_writes": "off leaves torn pages after a crash, and pg_rewind cannot bring a failed primary back",
    ]

    /// The major versions whose settings and steps pgcluster uses (wal_keep_size,
    /// max_slot_wal_keep_size and re-pointing a standby by reload need 13).
    public static let supportedVersions = 13...17

    /// PostgreSQL's reading of a boolean (parse_bool): on/off, true/false, yes/no, 1/0,
    /// any unambiguous prefix of those words, in any case. nil when it is not one.
    static func postgresBool(_ text: String) -> Bool? {
        let value = text.trimmingCharacters(in: .whitespaces).lowercased()
        guard !value.isEmpty else { return nil }
        switch value {
        case "on", "1": return true
        case "of", "off", "0": return false
        default: break
        }
        if "true".hasPrefix(value) || "yes".hasPrefix(value) { return true }
        if "false".hasPrefix(value) || "no".hasPrefix(value) { return false }
        return nil
    }

    /// A size in PostgreSQL's memory units (`kB`, `MB`, `GB`, `TB`, case as PostgreSQL
    /// writes them), in megabytes; nil when it is not one or not a whole number of MB.
    static func megabytes(_ text: String) -> Int? {
        guard let match = text.wholeMatch(of: #/([0-9]{1,12})(kB|MB|GB|TB)/#), let number = Int(match.1) else { return nil }
        switch match.2 {
        case "kB": return number % 1024 == 0 ? number / 1024 : nil
        case "MB": return number
        case "GB": return number * 1024
        default: return number * 1024 * 1024
        }
    }

    public static func load(path: String) throws(SpecError) -> ClusterSpec {
        let file = absolutePath(path)
        guard let data = FileManager.default.contents(atPath: file) else {
            let reason = FileManager.default.fileExists(atPath: file) ? "cannot read the file" : "no such file"
            throw SpecError([SpecProblem(file: file, key: "", reason: reason)])
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw SpecError([SpecProblem(file: file, key: "", reason: "not UTF-8 text")])
        }
        return try parse(text, file: file)
    }

    public static func parse(_ text: String, file: String) throws(SpecError) -> ClusterSpec {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw SpecError([SpecProblem(file: file, line: error.line, key: "", reason: "malformed YAML: \(error.shortReason)")])
        } catch {
            throw SpecError([SpecProblem(file: file, key: "", reason: "malformed YAML: \(error)")])
        }
        var reader = Reader(file: file)
        let spec = reader.spec(root)
        if !reader.problems.isEmpty { throw SpecError(reader.problems) }
        return spec!
    }

    static func absolutePath(_ path: String) -> String {
        let url = URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
        return url.standardizedFileURL.path
    }
}

/// Yams' own descriptions quote the spec (the duplicate-key one quotes all of it,
/// passwords included), so problems are built from the parts, never from `description`.
extension YamlError {
    var line: Int? {
        switch self {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _): mark.line
        case .duplicatedKeysInMapping(_, let context): context.mark.line
        case .reader(_, let offset?, _, let yaml): yaml.prefix(offset).filter(\.isNewline).count + 1
        default: nil
        }
    }

    var shortReason: String {
        switch self {
        case .scanner(_, let problem, _, _), .parser(_, let problem, _, _), .composer(_, let problem, _, _): problem
        case .duplicatedKeysInMapping(let keys, _):
            "key given twice in one mapping: \(keys.map { "'\($0)'" }.joined(separator: ", "))"
        case .reader(let problem, _, _, _): problem
        case .writer(let problem), .emitter(let problem), .representer(let problem): problem
        case .dataCouldNotBeDecoded: "not UTF-8 text"
        case .no, .memory: "\(self)"
        }
    }
}

/// Walks the YAML tree, collecting problems instead of stopping at the first.
private struct Reader {
    let file: String
    var problems: [SpecProblem] = []

    mutating func fail(_ node: Node?, _ key: String, _ reason: String) {
        problems.append(SpecProblem(file: file, line: node?.mark?.line, key: key, reason: reason))
    }

    /// The keys of a mapping, refusing unknown and duplicate ones.
    mutating func mapping(_ node: Node?, _ path: String, allowed: [String]) -> [String: Node] {
        guard let node else { return [:] }
        guard case .mapping(let mapping) = node else {
            if node.null == nil { fail(node, path, "expected a mapping of keys to values") }
            return [:]
        }
        var result: [String: Node] = [:]
        for (keyNode, value) in mapping {
            guard let key = keyNode.scalar?.string else {
                fail(keyNode, path, "keys must be plain names")
                continue
            }
            let keyPath = path.isEmpty ? key : "\(path).\(key)"
            if !allowed.contains(key) {
                fail(keyNode, keyPath, "unknown key (known here: \(allowed.joined(separator: ", ")))")
            } else if result[key] != nil {
                fail(keyNode, keyPath, "given twice")
            } else {
                result[key] = value
            }
        }
        return result
    }

    mutating func string(_ node: Node?, _ path: String, default value: String? = nil) -> String? {
        guard let node, node.null == nil else {
            if value == nil { fail(node, path, "required") }
            return value
        }
        guard let scalar = node.scalar else {
            fail(node, path, "expected a single value")
            return value
        }
        return scalar.string
    }

    mutating func int(_ node: Node?, _ path: String, default value: Int? = nil, range: ClosedRange<Int>) -> Int? {
        guard let node, node.null == nil else {
            if value == nil { fail(node, path, "required") }
            return value
        }
        guard let number = node.scalar.flatMap({ Int($0.string) }) else {
            fail(node, path, "expected a whole number")
            return value
        }
        guard range.contains(number) else {
            fail(
                node, path,
                range.count == 1 ? "must be \(range.lowerBound)" : "must be from \(range.lowerBound) to \(range.upperBound)")
            return value
        }
        return number
    }

    mutating func bool(_ node: Node?, _ path: String, default value: Bool) -> Bool {
        guard let node, node.null == nil else { return value }
        guard let flag = node.bool, node.scalar != nil else {
            fail(node, path, "expected true or false")
            return value
        }
        return flag
    }

    mutating func name(_ node: Node?, _ path: String, default value: String? = nil) -> String? {
        guard let text = string(node, path, default: value) else { return nil }
        guard text.wholeMatch(of: SpecLoader.namePattern) != nil else {
            fail(node, path, "'\(text)' is not a valid name: use 1 to 53 of a-z, 0-9, '_' and '-', starting with a letter or digit")
            return nil
        }
        return text
    }

    mutating func roleName(_ node: Node?, _ path: String, default value: String) -> String {
        guard let text = string(node, path, default: value) else { return value }
        guard text.wholeMatch(of: SpecLoader.rolePattern) != nil else {
            fail(node, path, "'\(text)' is not a valid role name: use a-z, 0-9 and '_', starting with a letter or '_'")
            return value
        }
        return text
    }

    mutating func cidr(_ node: Node?, _ path: String) -> CIDR? {
        guard let text = string(node, path) else { return nil }
        do {
            return try CIDR(parsing: text)
        } catch {
            fail(node, path, "bad CIDR '\(text)': \(error)")
            return nil
        }
    }

    // MARK: Sections

    mutating func spec(_ root: Node?) -> ClusterSpec? {
        guard let root, root.null == nil else {
            fail(nil, "", "the file is empty; see examples/local.yaml")
            return nil
        }
        let top = mapping(
            root, "",
            allowed: [
                "version", "name", "backend", "postgres", "superuser", "replication", "network", "tls", "local", "ssh",
                "compose", "store", "watch", "routing", "backup", "nodes", "hooks", "app",
            ])
        if top.isEmpty && problems.isEmpty { fail(root, "", "expected a mapping with name and nodes") }

        let version = int(top["version"], "version", default: 1, range: 1...1) ?? 1
        let name = self.name(top["name"], "name") ?? "invalid"
        var backend = ClusterSpec.Backend.local
        if let text = string(top["backend"], "backend", default: "local") {
            if let value = ClusterSpec.Backend(rawValue: text) {
                backend = value
            } else {
                fail(top["backend"], "backend", "must be local, ssh or compose, not '\(text)'")
            }
        }
        let postgres = postgresSection(top["postgres"])
        let superuser = account(
            mapping(top["superuser"], "superuser", allowed: ["user", "password"]), "superuser", defaultUser: "postgres")
        let replicationMap = mapping(
            top["replication"], "replication", allowed: ["user", "password", "slots", "maxSlotWalKeep", "synchronous"])
        let replicationAccount = account(replicationMap, "replication", defaultUser: "replicator")
        let slots = bool(replicationMap["slots"], "replication.slots", default: true)
        let (syncMode, syncCount, syncNode) = synchronous(replicationMap["synchronous"])
        let maxSlotWalKeep = slotWalKeep(replicationMap["maxSlotWalKeep"])

        let networkMap = mapping(top["network"], "network", allowed: ["allow"])
        var allow: [CIDR] = []
        if let list = networkMap["allow"] {
            if case .sequence(let items) = list {
                for (i, item) in items.enumerated() {
                    if let value = cidr(item, "network.allow[\(i)]") { allow.append(value) }
                }
                if items.isEmpty { fail(list, "network.allow", "must list at least one CIDR") }
            } else {
                fail(list, "network.allow", "expected a list of CIDRs such as [127.0.0.1/32]")
            }
        } else {
            allow = [try! CIDR(parsing: "127.0.0.1/32")]
        }

        let localMap = mapping(top["local"], "local", allowed: ["dir", "osUser"])
        let dirText = string(localMap["dir"], "local.dir", default: "./\(name)-data") ?? "./data"
        let specFolder = URL(fileURLWithPath: file).deletingLastPathComponent()
        let dir = URL(fileURLWithPath: dirText, relativeTo: specFolder).standardizedFileURL.path
        let osUser = string(localMap["osUser"], "local.osUser", default: "postgres") ?? "postgres"

        let composeMap = mapping(top["compose"], "compose", allowed: ["project", "image", "subnet", "watcher"])
        let project = self.name(composeMap["project"], "compose.project", default: name) ?? name
        let image = string(composeMap["image"], "compose.image", default: "postgres:\(postgres.version)") ?? "postgres:15"
        var subnet = try! CIDR(parsing: "172.28.0.0/16")
        if composeMap["subnet"] != nil, let value = cidr(composeMap["subnet"], "compose.subnet") { subnet = value }
        let watcher = bool(composeMap["watcher"], "compose.watcher", default: false)
        if watcher && backend != .compose {
            fail(composeMap["watcher"], "compose.watcher", "applies to the compose backend only")
        }

        let ssh = sshSection(top["ssh"], backend: backend, specFolder: specFolder)
        let store = storeSection(top["store"], specFolder: specFolder)
        let tls = tlsSection(top["tls"], specFolder: specFolder)
        let nodes = nodesSection(top["nodes"], backend: backend, tls: tls.mode, specFolder: specFolder)
        let watch = watchSection(top["watch"])
        let hooks = hooksSection(top["hooks"])
        let app = appSection(top["app"], superuser: superuser.user, replication: replicationAccount.user)
        let backup = backupSection(top["backup"], backend: backend, specFolder: specFolder)
        let routing = routingSection(top["routing"], watchNode: top["watch"], watch: watch, nodes: nodes)

        // Cross-checks that need the whole spec.
        let standbyCount = nodes.filter { $0.role == .standby }.count
        var mode = SynchronousMode.async
        if let parsed = SynchronousMode(mode: syncMode, count: syncCount) {
            mode = parsed
            if mode != .async && syncCount > standbyCount {
                fail(
                    syncNode, "replication.synchronous.count",
                    "\(syncCount) is more than the \(standbyCount) standby node(s) in the spec")
            }
        }
        if replicationAccount.user == superuser.user {
            fail(replicationMap["user"] ?? top["replication"], "replication.user", "must differ from superuser.user ('\(superuser.user)')")
        }
        if backup != nil, backend != .compose {
            // pgBackRest reaches the servers over their socket as their OS user, which
            // pg_hba.conf's peer line admits as the superuser only when the names agree.
            let serverUser = backend == .ssh && ssh.user != "root" ? ssh.user : osUser
            if superuser.user != serverUser {
                fail(
                    top["backup"], "backup",
                    "pgBackRest connects to the servers over their socket as their OS user '\(serverUser)', which pg_hba.conf "
                        + "admits (peer) as the superuser only under the same name: superuser.user is '\(superuser.user)'; "
                        + "use '\(serverUser)', or run the servers as an OS user named '\(superuser.user)'")
            }
        }

        var spec = ClusterSpec(
            version: version, name: name, backend: backend, postgres: postgres, superuser: superuser,
            replication: ReplicationSettings(
                user: replicationAccount.user, password: replicationAccount.password, slots: slots, synchronous: mode,
                maxSlotWalKeep: maxSlotWalKeep),
            network: NetworkSettings(allow: allow),
            local: LocalSettings(dir: dir, osUser: osUser),
            compose: ComposeSettings(project: project, image: image, subnet: subnet, watcher: watcher), ssh: ssh, store: store, tls: tls,
            nodes: nodes, file: file, watch: watch, hooks: hooks, app: app, backup: backup)
        spec.routing = routing
        return spec
    }

    mutating func hooksSection(_ node: Node?) -> HookSettings {
        let map = mapping(node, "hooks", allowed: ["onRoleChange", "onFailover", "timeout"])
        var hooks = HookSettings()
        func program(_ key: String) -> HookSettings.Program? {
            guard let value = map[key], value.null == nil else { return nil }
            let path = "hooks.\(key)"
            switch value {
            case .scalar(let scalar):
                guard !scalar.string.trimmingCharacters(in: .whitespaces).isEmpty else {
                    fail(value, path, "is empty: give a command line (run by /bin/sh -c) or a list of arguments")
                    return nil
                }
                return .shell(scalar.string)
            case .sequence(let items):
                let arguments = items.compactMap { $0.scalar?.string }
                guard arguments.count == items.count, let first = arguments.first else {
                    fail(value, path, "expected a list of arguments such as [/usr/local/bin/move-vip, --up]")
                    return nil
                }
                guard first.hasPrefix("/") else {
                    fail(value, path, "the program '\(first)' must be an absolute path (no shell looks it up)")
                    return nil
                }
                return .arguments(arguments)
            default:
                fail(value, path, "expected a command line or a list of arguments")
                return nil
            }
        }
        hooks.onRoleChange = program("onRoleChange")
        hooks.onFailover = program("onFailover")
        if let value = map["timeout"], let text = string(value, "hooks.timeout", default: "10") {
            if let seconds = WatchSettings.seconds(text), (0.1...3600).contains(seconds) {
                hooks.timeout = seconds
            } else {
                fail(value, "hooks.timeout", "'\(text)' is not a duration from 0.1 s to 1 h (write 10s, 500ms, 2)")
            }
        }
        return hooks
    }

    mutating func appSection(_ node: Node?, superuser: String, replication: String) -> AppSettings? {
        guard let node, node.null == nil else { return nil }
        let map = mapping(node, "app", allowed: ["user", "database"])
        let user = roleName(map["user"], "app.user", default: "app")
        let database = roleName(map["database"], "app.database", default: user)
        if user == superuser || user == replication {
            fail(map["user"] ?? node, "app.user", "must differ from superuser.user and replication.user ('\(user)')")
        }
        if ["postgres", "template0", "template1"].contains(database) {
            fail(map["database"] ?? node, "app.database", "'\(database)' is PostgreSQL's own: name the application's database")
        }
        return AppSettings(user: user, database: database)
    }

    /// `backup: {repo: PATH, repoHost: ADDRESS, retention: {full: N, diff: N}}`. Backend
    /// local: the repository is a folder on this machine (`repoHost` is refused). Backend
    /// ssh: it is on `repoHost`, a host of its own reached by ssh (required: a repository on
    /// one node's host would go down with it), at the absolute path `repo`. Compose: refused.
    mutating func backupSection(_ node: Node?, backend: ClusterSpec.Backend, specFolder: URL) -> BackupSettings? {
        guard let node, node.null == nil else { return nil }
        let map = mapping(node, "backup", allowed: ["repo", "repoHost", "retention", "standbysFrom"])
        if map.isEmpty && problems.isEmpty { fail(node, "backup", "expected a mapping such as {repo: /var/lib/pgbackrest}") }
        if backend == .compose {
            fail(
                node, "backup",
                "not supported yet with backend compose: pgcluster runs pgBackRest for backends local and ssh")
        }
        var repoHost: String?
        if let value = map["repoHost"], let text = string(value, "backup.repoHost") {
            if backend != .ssh {
                fail(value, "backup.repoHost", "applies to backend ssh only: with backend local, backup.repo is a folder on this machine")
            } else if text.isEmpty || text.hasPrefix("-") || text.contains(where: { $0.isWhitespace || $0 == "'" || $0 == "@" || $0 == "\"" }) {
                fail(value, "backup.repoHost", "'\(text)' is not a host name or address")
            } else {
                repoHost = text
            }
        } else if backend == .ssh && !map.isEmpty {
            fail(
                node, "backup.repoHost",
                "required with backend ssh: the address of the host that keeps the repository (reached by ssh as the nodes are)")
        }
        var repo: String?
        if map["repo"] == nil {
            if !map.isEmpty { fail(node, "backup.repo", "required: the folder that holds the backups") }
        } else if let text = string(map["repo"], "backup.repo") {
            let expanded = text.hasPrefix("~/") ? FileManager.default.homeDirectoryForCurrentUser.path + String(text.dropFirst(1)) : text
            if text.isEmpty || text.contains(where: { $0.isNewline || $0 == "'" || $0 == "\"" || $0 == "=" }) {
                // The path goes into pgbackrest.conf and, quoted, into archive_command.
                fail(map["repo"], "backup.repo", "'\(text)' is not a usable folder path")
            } else if backend == .ssh && !text.hasPrefix("/") {
                fail(map["repo"], "backup.repo", "must be an absolute path on backup.repoHost, such as /var/lib/pgbackrest, not '\(text)'")
            } else {
                repo = URL(fileURLWithPath: expanded, relativeTo: specFolder).standardizedFileURL.path
                if repo == "/" { fail(map["repo"], "backup.repo", "must not be /") }
            }
        }
        let retention = mapping(map["retention"], "backup.retention", allowed: ["full", "diff"])
        let full = int(retention["full"], "backup.retention.full", default: 2, range: 1...9999) ?? 2
        let diff = retention["diff"] == nil ? nil : int(retention["diff"], "backup.retention.diff", range: 1...9999)
        var standbysFrom = BackupSettings.StandbysFrom.primary
        if let value = map["standbysFrom"], let text = string(value, "backup.standbysFrom") {
            if let from = BackupSettings.StandbysFrom(rawValue: text) {
                standbysFrom = from
            } else {
                fail(value, "backup.standbysFrom", "'\(text)' is not one of primary, repository")
            }
        }
        guard let repo else { return nil }
        return BackupSettings(repo: repo, repoHost: repoHost, retentionFull: full, retentionDiff: diff, standbysFrom: standbysFrom)
    }

    /// `routing:` and the checks of `watch.http` that need the nodes: node i's endpoints
    /// answer on port + i, which must stay a valid port below Linux's ephemeral range
    /// (ip_local_port_range starts at 32768: a listener there can find its port taken by an
    /// outgoing connection), and must not be a node's PostgreSQL port on the same address.
    mutating func routingSection(_ node: Node?, watchNode: Node?, watch: WatchSettings, nodes: [NodeSpec]) -> RoutingSettings {
        var routing = RoutingSettings()
        let httpNode = watchNode?["http"] ?? watchNode
        if let http = watch.http {
            let last = http.port(forNode: max(0, nodes.count - 1))
            if last >= 32768 {
                fail(
                    httpNode, "watch.http",
                    "node \(nodes.count - 1) would answer on port \(last): node i answers on \(http.port) + i, which must stay "
                        + "below 32768 (Linux hands out ports from 32768 up to outgoing connections); choose a lower port")
            }
            let clashes = nodes.enumerated().compactMap { i, spec -> String? in
                guard spec.host == http.host || http.isWildcard,
                    let j = nodes.indices.first(where: { http.port(forNode: $0) == spec.port })
                else { return nil }
                return "port \(spec.port) (node \(j)'s endpoints) is nodes[\(i)]'s PostgreSQL port on \(spec.host)"
            }
            if !clashes.isEmpty {
                fail(httpNode, "watch.http", clashes.joined(separator: "; ") + ": choose a port range the nodes do not use")
            }
        }
        guard let node, node.null == nil else { return routing }
        if watch.http == nil {
            fail(node, "routing", "applies with watch.http only: HAProxy routes by the watcher's health endpoints")
        }
        let map = mapping(node, "routing", allowed: ["rw", "ro"])
        routing.rw = int(map["rw"], "routing.rw", default: 5000, range: 1...65535) ?? 5000
        routing.ro = int(map["ro"], "routing.ro", default: 5001, range: 1...65535) ?? 5001
        if routing.rw == routing.ro {
            fail(map["ro"] ?? node, "routing.ro", "\(routing.ro) is routing.rw too: the read-write and read-only frontends need ports of their own")
        }
        return routing
    }

    mutating func watchSection(_ node: Node?) -> WatchSettings {
        let map = mapping(
            node, "watch", allowed: ["interval", "failoverAfter", "durability", "rejoin", "leaseTTL", "http", "httpPublic"])
        var settings = WatchSettings()
        func seconds(_ key: String, _ range: ClosedRange<Double>) -> Double? {
            guard let value = map[key], let text = string(value, "watch.\(key)", default: "") , !text.isEmpty else { return nil }
            guard let seconds = WatchSettings.seconds(text) else {
                fail(value, "watch.\(key)", "'\(text)' is not a duration: write seconds (0.5, 2) or with a unit (500ms, 2s)")
                return nil
            }
            guard range.contains(seconds) else {
                fail(value, "watch.\(key)", "\(text) is outside \(range.lowerBound) to \(range.upperBound) seconds")
                return nil
            }
            return seconds
        }
        if let interval = seconds("interval", 0.05...60) { settings.interval = interval }
        if let after = seconds("failoverAfter", 0.5...3600) { settings.failoverAfter = after }
        // etcd grants leases of whole seconds, and a leader renews every TTL/3: 2 s at least.
        if let ttl = seconds("leaseTTL", 2...600) { settings.leaseTTL = ttl }
        if settings.failoverAfter < settings.interval {
            fail(map["failoverAfter"] ?? map["interval"], "watch.failoverAfter",
                "\(settings.failoverAfter) s is shorter than watch.interval (\(settings.interval) s): a primary must be probed at least once before failover")
        }
        if let text = string(map["durability"], "watch.durability", default: "strict") {
            if let value = WatchSettings.Durability(rawValue: text) {
                settings.durability = value
            } else {
                fail(map["durability"], "watch.durability", "must be strict or available, not '\(text)'")
            }
        }
        if let text = string(map["rejoin"], "watch.rejoin", default: "auto") {
            if let value = WatchSettings.RejoinPolicy(rawValue: text) {
                settings.rejoin = value
            } else {
                fail(map["rejoin"], "watch.rejoin", "must be auto or manual, not '\(text)'")
            }
        }
        settings.httpPublic = bool(map["httpPublic"], "watch.httpPublic", default: false)
        if map["http"] != nil, let text = string(map["http"], "watch.http") {
            if let address = HTTPAddress(parsing: text), (1...65535).contains(address.port) {
                if address.isWildcard && !settings.httpPublic {
                    fail(
                        map["http"], "watch.http",
                        "\(text) binds every interface, and the endpoints (with /cluster and /metrics) have no authentication: "
                            + "give one address such as 127.0.0.1:8008, or set watch.httpPublic: true to accept that")
                } else {
                    settings.http = address
                }
            } else {
                fail(map["http"], "watch.http", "'\(text)' is not IP-ADDRESS:PORT such as 127.0.0.1:8008 or [::1]:8008 (an address, not a host name)")
            }
        } else if settings.httpPublic {
            fail(map["httpPublic"], "watch.httpPublic", "applies with watch.http only")
        }
        return settings
    }

    mutating func postgresSection(_ node: Node?) -> PostgresSettings {
        let map = mapping(node, "postgres", allowed: ["version", "bindir", "parameters", "walSegmentSize"])
        var version = int(map["version"], "postgres.version", default: 15, range: 1...1000) ?? 15
        if !SpecLoader.supportedVersions.contains(version) {
            let range = SpecLoader.supportedVersions
            fail(
                map["version"], "postgres.version",
                "PostgreSQL \(version) is not supported: pgcluster drives \(range.lowerBound) to \(range.upperBound)")
            version = 15
        }
        let bindir = map["bindir"] == nil ? nil : string(map["bindir"], "postgres.bindir")
        if let bindir, !bindir.hasPrefix("/") {
            fail(map["bindir"], "postgres.bindir", "must be an absolute path")
        }
        var parameters: [PostgresSettings.Parameter] = []
        if let params = map["parameters"] {
            if case .mapping(let pairs) = params {
                var seen = Set<String>()
                for (keyNode, value) in pairs {
                    let key = keyNode.scalar?.string ?? ""
                    let path = "postgres.parameters.\(key)"
                    if key.wholeMatch(of: SpecLoader.parameterPattern) == nil {
                        fail(keyNode, path, "not a PostgreSQL parameter name")
                    } else if let reason = SpecLoader.managedParameters[key] {
                        fail(keyNode, path, reason)
                    } else if !seen.insert(key).inserted {
                        fail(keyNode, path, "given twice")
                    } else if let text = value.scalar?.string {
                        if let risk = SpecLoader.mustStayOn[key] {
                            guard let on = SpecLoader.postgresBool(text) else {
                                fail(value, path, "'\(text)' is not a boolean (on or off)")
                                continue
                            }
                            guard on else {
                                fail(keyNode, path, "must stay on: \(risk)")
                                continue
                            }
                        }
                        parameters.append(.init(name: key, value: text))
                    } else {
                        fail(value, path, "expected a single value")
                    }
                }
            } else if params.null == nil {
                fail(params, "postgres.parameters", "expected a mapping such as {max_wal_size: 1GB}")
            }
        }
        let segment = walSegmentSize(map["walSegmentSize"])
        if let segment {
            // PostgreSQL refuses to start when min_wal_size or max_wal_size is under two
            // segments; its defaults (80MB, 1GB) hold up to 32MB segments.
            for (name, fallback) in [("min_wal_size", 80), ("max_wal_size", 1024)] {
                let given = parameters.first { $0.name == name }?.value
                let mb = given.flatMap { Int($0) ?? SpecLoader.megabytes($0) } ?? fallback
                if mb < 2 * segment {
                    fail(
                        map["walSegmentSize"], "postgres.walSegmentSize",
                        "\(name) (\(given ?? "PostgreSQL's default \(fallback)MB")) must be at least two WAL segments: "
                            + "give postgres.parameters.\(name) of at least \(2 * segment)MB")
                }
            }
        }
        return PostgresSettings(version: version, bindir: bindir, parameters: parameters, walSegmentSize: segment)
    }

    /// `postgres.walSegmentSize`: `4MB`, `16MB`, `1GB` (or a number of MB), a power of two
    /// from 1 MB to 1 GB, as initdb takes it.
    mutating func walSegmentSize(_ node: Node?) -> Int? {
        let path = "postgres.walSegmentSize"
        guard let node, node.null == nil else { return nil }
        guard let text = node.scalar?.string else {
            fail(node, path, "expected a size such as 16MB")
            return nil
        }
        guard let mb = Int(text) ?? SpecLoader.megabytes(text), mb >= 1, mb <= 1024, mb & (mb - 1) == 0 else {
            fail(node, path, "'\(text)' is not a WAL segment size: a power of two from 1MB to 1GB (1MB, 2MB, 4MB, ... 16MB, ... 1GB)")
            return nil
        }
        return mb
    }

    mutating func account(_ map: [String: Node], _ path: String, defaultUser: String) -> Account {
        let user = roleName(map["user"], "\(path).user", default: defaultUser)
        var password: String?
        if let value = map["password"], value.null == nil {
            password = string(value, "\(path).password")
            if password?.isEmpty == true {
                fail(value, "\(path).password", "must not be empty; leave it out to have one generated")
            }
        }
        return Account(user: user, password: password)
    }

    mutating func slotWalKeep(_ node: Node?) -> SlotWalKeep {
        let path = "replication.maxSlotWalKeep"
        guard let text = string(node, path, default: "") , !text.isEmpty else { return .default }
        if text == "unlimited" { return .unlimited }
        guard let mb = SpecLoader.megabytes(text) else {
            fail(node, path, "'\(text)' is not a size: write it as 8GB, 512MB, 1TB (PostgreSQL's units), or unlimited")
            return .default
        }
        guard mb >= 16 else {
            fail(node, path, "\(text) is too small to keep a standby: give at least 16MB")
            return .default
        }
        return .megabytes(mb)
    }

    mutating func synchronous(_ node: Node?) -> (String, Int, Node?) {
        let map = mapping(node, "replication.synchronous", allowed: ["mode", "count"])
        var mode = string(map["mode"], "replication.synchronous.mode", default: "async") ?? "async"
        if !["async", "any", "first"].contains(mode) {
            fail(map["mode"], "replication.synchronous.mode", "must be async, any or first, not '\(mode)'")
            mode = "async"
        }
        let count = int(map["count"], "replication.synchronous.count", default: 1, range: 1...100) ?? 1
        return (mode, count, map["count"] ?? map["mode"] ?? node)
    }

    mutating func storeSection(_ node: Node?, specFolder: URL) -> StoreSettings {
        let map = mapping(node, "store", allowed: ["etcd"])
        guard let etcdNode = map["etcd"] else { return StoreSettings() }
        let etcd = mapping(
            etcdNode, "store.etcd", allowed: ["endpoints", "prefix", "timeout", "ca", "cert", "key", "user", "passwordFile"])
        var endpoints: [URL] = []
        if case .sequence(let items)? = etcd["endpoints"] {
            for (i, item) in items.enumerated() {
                guard let text = string(item, "store.etcd.endpoints[\(i)]") else { continue }
                guard let url = URL(string: text), url.scheme == "http" || url.scheme == "https", let host = url.host, !host.isEmpty
                else {
                    fail(
                        item, "store.etcd.endpoints[\(i)]",
                        "'\(text)' is not an etcd client URL such as https://10.0.0.5:2379 or http://10.0.0.5:2379")
                    continue
                }
                if let first = endpoints.first, first.scheme != url.scheme {
                    fail(
                        item, "store.etcd.endpoints[\(i)]",
                        "'\(text)' mixes \(url.scheme!) with \(first.scheme!): list every endpoint of one etcd cluster with the same scheme")
                    continue
                }
                endpoints.append(url)
            }
            if items.isEmpty { fail(etcd["endpoints"], "store.etcd.endpoints", "list at least one endpoint") }
        } else {
            fail(
                etcd["endpoints"] ?? etcdNode, "store.etcd.endpoints",
                "required: a list of etcd client URLs such as [https://10.0.0.5:2379]")
        }
        let prefix = string(etcd["prefix"], "store.etcd.prefix", default: "/pgcluster") ?? "/pgcluster"
        if !prefix.hasPrefix("/") || prefix.hasSuffix("/") || prefix.contains(where: { $0.isWhitespace }) {
            fail(etcd["prefix"], "store.etcd.prefix", "must start with / and not end with one, such as /pgcluster, not '\(prefix)'")
        }
        let timeout = int(etcd["timeout"], "store.etcd.timeout", default: 1, range: 1...30) ?? 1
        var settings = StoreSettings(etcd: EtcdSettings(endpoints: endpoints, prefix: prefix, timeout: Double(timeout)))

        // TLS: the CA, the client certificate and its key apply to https endpoints only.
        let https = endpoints.first?.scheme == "https"
        for key in ["ca", "cert", "key"] where etcd[key] != nil && !https && !endpoints.isEmpty {
            fail(etcd[key], "store.etcd.\(key)", "applies to https:// endpoints only (these are http://)")
        }
        if https {
            if etcd["ca"] != nil { settings.etcd?.ca = secretFile(etcd["ca"], "store.etcd.ca", specFolder: specFolder, secret: false) }
            if etcd["cert"] != nil {
                settings.etcd?.cert = secretFile(etcd["cert"], "store.etcd.cert", specFolder: specFolder, secret: false)
            }
            if etcd["key"] != nil { settings.etcd?.key = secretFile(etcd["key"], "store.etcd.key", specFolder: specFolder, secret: true) }
            if (etcd["cert"] == nil) != (etcd["key"] == nil) {
                let given = etcd["cert"] == nil ? "key" : "cert"
                let missing = given == "cert" ? "key" : "cert"
                fail(
                    etcd[given], "store.etcd.\(missing)",
                    "required with store.etcd.\(given): the client certificate and its key go together")
            }
        }
        // Authentication: a user, and its password in a file of its own.
        if etcd["user"] != nil, let user = string(etcd["user"], "store.etcd.user") {
            if user.isEmpty || user.contains(where: { $0.isWhitespace || $0.isNewline }) {
                fail(etcd["user"], "store.etcd.user", "not an etcd user name: '\(user)'")
            } else {
                settings.etcd?.user = user
            }
            if etcd["passwordFile"] == nil {
                fail(
                    etcd["user"], "store.etcd.passwordFile",
                    "required with store.etcd.user: a file (mode 0600) that holds the user's password; never a password in the spec")
            }
        }
        if etcd["passwordFile"] != nil {
            if etcd["user"] == nil {
                fail(etcd["passwordFile"], "store.etcd.passwordFile", "applies with store.etcd.user only: name the etcd user")
            } else {
                settings.etcd?.passwordFile = secretFile(
                    etcd["passwordFile"], "store.etcd.passwordFile", specFolder: specFolder, secret: true)
            }
        }
        return settings
    }

    /// A file on this machine that pgcluster reads a certificate, key or password from:
    /// resolved against the spec's folder, present and readable, and when `secret`
    /// (a key, a password) not readable nor writable by group or others (0600 or 0400).
    mutating func secretFile(_ node: Node?, _ path: String, specFolder: URL, secret: Bool) -> String? {
        guard let resolved = localFile(node, path, specFolder: specFolder) else { return nil }
        guard secret else { return resolved }
        let mode = ((try? FileManager.default.attributesOfItem(atPath: resolved))?[.posixPermissions] as? NSNumber)?.intValue
        guard let mode else {
            fail(node, path, "\(resolved): cannot read its mode")
            return nil
        }
        if mode & 0o077 != 0 {
            fail(
                node, path,
                "\(resolved) is mode \(String(format: "%04o", mode & 0o7777)), open to group or others: "
                    + "make it 0600 (chmod 600 \(resolved))")
            return nil
        }
        return resolved
    }

    mutating func sshSection(_ node: Node?, backend: ClusterSpec.Backend, specFolder: URL) -> SSHSettings {
        var ssh = SSHSettings()
        if node != nil && backend != .ssh {
            fail(node, "ssh", "applies to backend: ssh only (this spec has backend: \(backend.rawValue))")
        }
        let map = mapping(node, "ssh", allowed: ["user", "port", "identityFile", "dir", "connectTimeout"])
        if let user = string(map["user"], "ssh.user", default: "postgres") {
            if user.isEmpty || user.hasPrefix("-") || user.contains(where: { $0.isWhitespace || $0 == "@" || $0 == "'" }) {
                // A leading '-' would be read by ssh as an option (-oProxyCommand=...).
                fail(map["user"], "ssh.user", "'\(user)' is not a login name")
            } else {
                ssh.user = user
            }
        }
        ssh.port = int(map["port"], "ssh.port", default: 22, range: 1...65535) ?? 22
        ssh.connectTimeout = int(map["connectTimeout"], "ssh.connectTimeout", default: 3, range: 1...60) ?? 3
        if map["identityFile"] != nil, let text = string(map["identityFile"], "ssh.identityFile") {
            let expanded = text.hasPrefix("~/")
                ? FileManager.default.homeDirectoryForCurrentUser.path + String(text.dropFirst(1)) : text
            ssh.identityFile = URL(fileURLWithPath: expanded, relativeTo: specFolder).standardizedFileURL.path
        }
        if let dir = string(map["dir"], "ssh.dir", default: "/var/lib/pgcluster") {
            if !dir.hasPrefix("/") || dir.contains(where: { $0.isNewline || $0 == "'" }) {
                fail(map["dir"], "ssh.dir", "must be an absolute path on the hosts, such as /var/lib/pgcluster, not '\(dir)'")
            } else {
                ssh.dir = dir.count > 1 && dir.hasSuffix("/") ? String(dir.dropLast()) : dir
            }
        }
        return ssh
    }

    /// A path on this machine, resolved against the spec's folder, that must name a readable file.
    mutating func localFile(_ node: Node?, _ path: String, specFolder: URL) -> String? {
        guard let text = string(node, path) else { return nil }
        let expanded = text.hasPrefix("~/") ? FileManager.default.homeDirectoryForCurrentUser.path + String(text.dropFirst(1)) : text
        let resolved = URL(fileURLWithPath: expanded, relativeTo: specFolder).standardizedFileURL.path
        guard FileManager.default.isReadableFile(atPath: resolved) else {
            fail(node, path, "\(resolved): no such file, or not readable")
            return nil
        }
        return resolved
    }

    mutating func tlsSection(_ node: Node?, specFolder: URL) -> TLSSettings {
        let map = mapping(node, "tls", allowed: ["mode", "caFile"])
        var tls = TLSSettings()
        if let text = string(map["mode"], "tls.mode", default: TLSSettings.Mode.generate.rawValue) {
            if let mode = TLSSettings.Mode(rawValue: text) {
                tls.mode = mode
            } else {
                fail(map["mode"], "tls.mode", "must be generate, files or off, not '\(text)'")
            }
        }
        if tls.mode == .files {
            if map["caFile"] == nil {
                fail(node, "tls.caFile", "required with mode files: the CA certificate that signed the nodes' certificates")
            } else {
                tls.caFile = localFile(map["caFile"], "tls.caFile", specFolder: specFolder)
            }
        } else if map["caFile"] != nil {
            fail(map["caFile"], "tls.caFile", "applies to mode files only (this spec has mode \(tls.mode.rawValue))")
        }
        return tls
    }

    mutating func nodesSection(
        _ node: Node?, backend: ClusterSpec.Backend, tls: TLSSettings.Mode = .generate, specFolder: URL
    ) -> [NodeSpec] {
        guard let node else {
            fail(nil, "nodes", "required: list the primary and its standbys")
            return []
        }
        guard case .sequence(let items) = node else {
            fail(node, "nodes", "expected a list of nodes")
            return []
        }
        var nodes: [NodeSpec] = []
        var names: [String: Int] = [:]
        var addresses: [String: Int] = [:]
        var primaries: [Int] = []
        for (i, item) in items.enumerated() {
            let path = "nodes[\(i)]"
            let map = mapping(
                item, path, allowed: [
                    "name", "host", "port", "role", "priority", "serviceHost", "servicePort", "sshHost", "tlsCert", "tlsKey",
                ])
            if map.isEmpty { continue }
            let name = self.name(map["name"], "\(path).name")
            if let name, name.count > SpecLoader.maxNodeNameLength {
                // PostgreSQL cuts names at 63 bytes: a longer slot name would be refused
                // by primary_slot_name and silently shortened by pg_create_physical_replication_slot.
                fail(
                    map["name"], "\(path).name",
                    "'\(name)' is too long: at most \(SpecLoader.maxNodeNameLength) characters, because the node's replication slot is pgcluster_<name> and PostgreSQL allows 63")
            }
            let host = string(map["host"], "\(path).host", default: "127.0.0.1") ?? "127.0.0.1"
            if host.isEmpty || host.hasPrefix("-") || host.contains(where: { $0.isWhitespace || $0 == "'" || $0 == "\\" }) {
                fail(map["host"], "\(path).host", "'\(host)' is not a host name or address")
            }
            let port = int(map["port"], "\(path).port", range: 1...65535)
            var role = NodeSpec.Role.standby
            if let text = string(map["role"], "\(path).role", default: "standby") {
                if let value = NodeSpec.Role(rawValue: text) { role = value } else {
                    fail(map["role"], "\(path).role", "must be primary or standby, not '\(text)'")
                }
            }
            let priority = int(map["priority"], "\(path).priority", default: 100, range: 0...1_000_000) ?? 100
            let serviceHost = map["serviceHost"] == nil ? nil : string(map["serviceHost"], "\(path).serviceHost")
            let servicePort = int(map["servicePort"], "\(path).servicePort", default: 5432, range: 1...65535) ?? 5432
            let sshHost = map["sshHost"] == nil ? nil : string(map["sshHost"], "\(path).sshHost")
            if backend != .ssh && map["sshHost"] != nil {
                fail(map["sshHost"], "\(path).sshHost", "applies to backend: ssh only")
            }
            if let sshHost, sshHost.isEmpty || sshHost.hasPrefix("-") || sshHost.contains(where: { $0.isWhitespace || $0 == "'" || $0 == "@" }) {
                fail(map["sshHost"], "\(path).sshHost", "'\(sshHost)' is not a host name or address")
            }
            if backend == .ssh && map["host"] == nil && map["sshHost"] == nil {
                fail(item, path, "backend ssh needs the node's host (or sshHost): where its server runs")
            }
            var tlsCert: String?
            var tlsKey: String?
            if tls == .files {
                for key in ["tlsCert", "tlsKey"] where map[key] == nil {
                    fail(item, "\(path).\(key)", "required with tls.mode files: the node's \(key == "tlsCert" ? "certificate" : "private key") (PEM)")
                }
                if map["tlsCert"] != nil { tlsCert = localFile(map["tlsCert"], "\(path).tlsCert", specFolder: specFolder) }
                if map["tlsKey"] != nil { tlsKey = localFile(map["tlsKey"], "\(path).tlsKey", specFolder: specFolder) }
            } else if let given = map["tlsCert"] ?? map["tlsKey"] {
                fail(given, path, "tlsCert and tlsKey apply to tls.mode files only (this spec has mode \(tls.rawValue))")
            }
            if backend != .compose && (map["serviceHost"] != nil || map["servicePort"] != nil) {
                fail(map["serviceHost"] ?? map["servicePort"], path, "serviceHost and servicePort apply to the compose backend only")
            }
            if let name {
                // '-' and '_' map to the same slot name, so they must not tell two nodes apart.
                let key = name.replacingOccurrences(of: "-", with: "_")
                if let first = names[key] {
                    fail(map["name"], "\(path).name", "duplicate node name '\(name)' (also nodes[\(first)]; '-' and '_' count as the same)")
                } else {
                    names[key] = i
                }
            }
            if let port {
                let address = "\(host):\(port)"
                if let first = addresses[address] {
                    fail(map["port"], "\(path).port", "duplicate port \(port) on \(host) (also nodes[\(first)])")
                } else {
                    addresses[address] = i
                }
            }
            if role == .primary { primaries.append(i) }
            if let name, let port {
                var spec = NodeSpec(
                    name: name, host: host, port: port, role: role, priority: priority,
                    serviceHost: serviceHost, servicePort: servicePort, sshHost: sshHost)
                spec.tlsCert = tlsCert
                spec.tlsKey = tlsKey
                nodes.append(spec)
            }
        }
        if items.isEmpty {
            fail(node, "nodes", "list at least a primary")
        } else if primaries.isEmpty {
            fail(node, "nodes", "no node has role: primary; exactly one must")
        } else if primaries.count > 1 {
            let list = primaries.map { "nodes[\($0)]" }.joined(separator: ", ")
            fail(items[primaries[1]], "nodes[\(primaries[1])].role", "more than one primary (\(list)); exactly one must be")
        }
        return nodes
    }
}
