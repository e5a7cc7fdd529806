import Foundation

/// A file pgcluster writes: where (relative to an output folder), what, and its mode.
public struct RenderedFile: Sendable, Equatable {
    public var path: String
    public var contents: String
    public var mode: Int

    public init(path: String, contents: String, mode: Int = 0o644) {
        self.path = path
        self.contents = contents
        self.mode = mode
    }
}

/// Where pgcluster keeps its files: its own memory in `local.dir` on this machine, and each
/// node's folder on the node's host — under local.dir too for backend local, under
/// `<ssh.dir>/<cluster>` for backend ssh.
public struct LocalLayout: Sendable {
    /// local.dir, on this machine.
    public let root: String
    /// Where node folders and the replication passfile live, on each node's host.
    public let serverRoot: String

    public init(spec: ClusterSpec) {
        root = spec.local.dir
        serverRoot = spec.backend == .ssh ? "\(spec.ssh.dir)/\(spec.name)" : spec.local.dir
        isSSH = spec.backend == .ssh
    }

    let isSSH: Bool

    public func nodeDir(_ node: String) -> String { "\(serverRoot)/\(node)" }
    public func dataDir(_ node: String) -> String { "\(serverRoot)/\(node)/data" }
    public func logFile(_ node: String) -> String { "\(serverRoot)/\(node)/postgres.log" }
    public func socketDir(_ node: String) -> String { "\(serverRoot)/\(node)/run" }
    /// The replication password for standbys' walreceivers, owned by the server's OS user (on each host).
    public var passfile: String { "\(serverRoot)/pgpass" }
    public var credentialsFile: String { "\(root)/credentials.json" }
    public var stateFile: String { "\(root)/state.json" }
    public var historyFile: String { "\(root)/history.json" }
    /// `backup:`: pgBackRest's configuration for this cluster, on the nodes' host, and its
    /// own folder for logs and locks (the repository is `backup.repo`).
    public var pgbackrestConf: String { "\(serverRoot)/pgbackrest.conf" }
    public var pgbackrestDir: String { "\(serverRoot)/pgbackrest" }
    /// Backend ssh (`backup.repoHost`): pgBackRest's configuration on the repository host.
    /// The nodes' hosts keep `pgbackrestConf`, which points at it.
    public var pgbackrestRepoConf: String { "\(serverRoot)/pgbackrest-repo.conf" }
    /// Backend ssh: on every host of the cluster (nodes' and repository's), what pgBackRest
    /// goes between them with: an ssh wrapper (its `cmd-ssh`), the cluster's own key, and the
    /// hosts' keys (from this machine's known_hosts, checked by pgcluster's own connections).
    public var pgbackrestSSH: String { "\(pgbackrestDir)/ssh" }
    public var pgbackrestKey: String { "\(pgbackrestDir)/id_ed25519" }
    public var pgbackrestKnownHosts: String { "\(pgbackrestDir)/known_hosts" }
    /// Backend ssh: the folder holding that key pair, made on this machine at the first need.
    public var backupKeyFolder: String { "\(root)/backup-ssh" }
    /// The password file older versions gave `initdb --pwfile`; removed if one was left behind.
    public func initdbPasswordFile(_ node: String) -> String { "\(serverRoot)/\(node)/.initdb-pw" }
    /// Backend ssh: this machine's record of the hosts' keys, and the master connections' sockets.
    public var knownHostsFile: String { "\(root)/known_hosts" }
    public var sshControlDirectory: String { "\(root)/ssh" }

    /// What pgcluster creates in a node's folder; `destroy` removes these and nothing else there.
    public func nodeFiles(_ node: String) -> [String] {
        [dataDir(node), logFile(node), socketDir(node), initdbPasswordFile(node), tlsDir(node), rewindMark(node), cloneMark(node)]
    }

    /// Present on the node's host while pg_rewind changes its data, until the node is set to
    /// follow (``HostCluster/rewind(_:from:credentials:)``): a rewind that did not get that far
    /// left data that must not be rewound again (see ``ServerControl/unfinishedStep(_:)``).
    public func rewindMark(_ node: String) -> String { "\(serverRoot)/\(node)/rewind-unfinished" }
    /// Present on the node's host from before pg_basebackup (or the copy of a fresh clone)
    /// until the copy is set to follow its upstream (``HostCluster/clone(_:from:credentials:progress:copies:)``):
    /// a copy that did not get that far is not started, but copied afresh (``ServerControl/unfinishedStep(_:)``).
    public func cloneMark(_ node: String) -> String { "\(serverRoot)/\(node)/clone-unfinished" }
    /// Compose's ``rewindMark(_:)``: in local.dir on this machine, which runs every compose step
    /// (a node's volume holds its data folder and nothing beside it).
    public func composeRewindMark(_ node: String) -> String { "\(root)/.rewind-unfinished.\(node)" }

    /// The node's TLS files on its host (`tls.mode` generate or files), outside the data
    /// folder so that pg_basebackup and pg_rewind never carry one node's key to another.
    public func tlsDir(_ node: String) -> String { "\(serverRoot)/\(node)/tls" }
    public func serverCertificate(_ node: String) -> String { "\(tlsDir(node))/server.crt" }
    public func serverKey(_ node: String) -> String { "\(tlsDir(node))/server.key" }
    /// The cluster CA's certificate on the node's host: its walreceiver and pg_basebackup verify the upstream with it.
    public func nodeCACertificate(_ node: String) -> String { "\(tlsDir(node))/ca.crt" }
    /// The cluster CA (`tls.mode: generate`), on this machine only; its key never leaves it.
    /// Node names cannot hold a '.', so these never clash with a node's folder.
    public var caCertificate: String { "\(root)/ca.crt" }
    public var caKey: String { "\(root)/ca.key" }

    /// The cluster lock (``ClusterLock``), with the files store.
    public var lockFile: String { "\(root)/\(ClusterLock.fileName)" }
    /// The one watcher's leadership (``FileLeadership``), with the files store.
    public var watchLockFile: String { "\(root)/.pgcluster-watch.lock" }
    /// What pgcluster creates directly in local.dir, besides the node folders.
    public var clusterFiles: [String] {
        [credentialsFile, stateFile, historyFile, lockFile, watchLockFile, caCertificate, caKey]
            + (isSSH
                ? [knownHostsFile, sshControlDirectory, backupKeyFolder]
                : [passfile, pgbackrestConf, pgbackrestDir, pgbackrestReaderDir])
    }
    /// Backend local, during a `restore --into` this cluster from a cluster of backend ssh:
    /// what pgBackRest here needs to read that cluster's repository host (its key among
    /// them); removed at the end of the restore, and by `destroy` if a killed restore left it.
    public var pgbackrestReaderDir: String { "\(serverRoot)/pgbackrest-reader" }
}

/// Turns a spec into the text of every configuration file. Pure: no file is read or written.
public struct Renderer: Sendable {
    public let spec: ClusterSpec
    public let templates: TemplateSet

    public init(spec: ClusterSpec, templates: TemplateSet = .embedded) {
        self.spec = spec
        self.templates = templates
    }

    /// Every file of every node, for `pgcluster render`: postgresql.conf and pg_hba.conf,
    /// and for standbys standby.signal and standby.conf following the spec's primary.
    public func nodeFiles() throws(ClusterError) -> [RenderedFile] {
        var files: [RenderedFile] = []
        for node in spec.nodes {
            files.append(RenderedFile(path: "\(node.name)/postgresql.conf", contents: try postgresqlConf(node)))
            files.append(RenderedFile(path: "\(node.name)/pg_hba.conf", contents: try hbaConf(node)))
            if node.role == .standby {
                files.append(RenderedFile(path: "\(node.name)/standby.signal", contents: ""))
                files.append(
                    RenderedFile(path: "\(node.name)/standby.conf", contents: try standbyConf(node, upstream: spec.primary)))
            }
        }
        if let conf = try pgbackrestConf() {
            files.append(RenderedFile(path: "pgbackrest.conf", contents: conf, mode: 0o640))
        }
        if let conf = try pgbackrestRepoConf() {
            files.append(RenderedFile(path: "pgbackrest-repo.conf", contents: conf, mode: 0o640))
        }
        return files
    }

    /// `haproxy.cfg` (with `watch.http`; nil without): a read-write frontend on `routing.rw`
    /// checked by `/primary` and a read-only one on `routing.ro` checked by `/replica`, on
    /// the watcher's port for each node (README.md, "Health endpoints and HAProxy"; docs/ARCHITECTURE.md, "pgcluster watch").
    public func haproxyConf() throws(ClusterError) -> String? {
        guard let http = spec.watch.http else { return nil }
        let nodes = spec.nodes.enumerated().map { index, node -> [String: Any] in
            [
                "name": node.name, "host": HAProxyTiming.address(node.host), "port": node.port,
                // A wildcard bind answers on loopback; HAProxy needs an address to send to.
                "checkAddress": http.isWildcard ? (http.isIPv6 ? "::1" : "127.0.0.1") : http.host,
                "checkPort": http.port(forNode: index),
            ]
        }
        let context: [String: Any] = [
            "cluster": spec.name, "specFile": (spec.file as NSString).lastPathComponent,
            "rw": spec.routing.rw, "ro": spec.routing.ro, "httpPort": http.port, "nodes": nodes,
            "inter": HAProxyTiming.milliseconds(spec.watch.interval),
            "downinter": HAProxyTiming.milliseconds(HAProxyTiming.downInterval(interval: spec.watch.interval)),
            "checkTimeout": HAProxyTiming.milliseconds(HAProxyTiming.checkTimeout(interval: spec.watch.interval)),
        ]
        return try templates.render("haproxy.cfg.mustache", context)
    }

    /// logrotate's configuration for every node's server log (backends local and ssh; a
    /// compose node logs to its container's output, which the engine rotates): daily, a
    /// week kept, copytruncate because the server holds its log open.
    public func logrotateConf() throws(ClusterError) -> String? {
        guard spec.backend != .compose else { return nil }
        let layout = LocalLayout(spec: spec)
        let context: [String: Any] = [
            "cluster": spec.name, "specFile": (spec.file as NSString).lastPathComponent,
            "logs": spec.nodes.map { ["path": layout.logFile($0.name)] }, "user": spec.local.osUser,
        ]
        return try templates.render("logrotate.conf.mustache", context)
    }

    /// The number of WAL senders and slots: one per node (any node may become the
    /// primary of all others), two for pg_basebackup's streams, plus headroom.
    public var maxWalSenders: Int { max(10, spec.nodes.count * 2 + 4) }

    /// Settings postgresql.conf sets to pgcluster's choice, which a spec may tune in
    /// `postgres.parameters`: the spec's value then takes the place of this default, so
    /// each is written once. (Settings a spec may not change are refused by
    /// ``SpecLoader/managedParameters``.)
    public func tunableSettings(_ node: NodeSpec) -> [String: String] {
        var settings = [
            "max_connections": "100",
            "wal_keep_size": "256MB",
            "hot_standby_feedback": "on",
            "wal_receiver_status_interval": "1s",
            // Short enough that standbys give up a silent primary within watch.failoverAfter;
            // one that gave up a busy one reconnects within a second.
            "wal_receiver_timeout": spec.watch.replicationTimeout,
            // Compose: PostgreSQL's own 5 s. A standby there names its upstream by service
            // name; once that container stops, the name leaves the engine's DNS, which may
            // pass the question on to a resolver that never answers, and a WAL receiver
            // stuck in that lookup holds up a promotion for as long (4.4 s measured with
            // podman). Retrying less often, a switchover promotes before the next lookup.
            "wal_retrieve_retry_interval": spec.backend == .compose ? "5s" : "1s",
            // The primary's side needs no haste (it detects standbys, not failures), and a
            // second would cut pg_basebackup's WAL stream, which replies every 10 s, on a busy host.
            "wal_sender_timeout": "10s",
            "log_line_prefix": ConfigText.confValue("%m [%p] \(node.name) "),
            "log_replication_commands": "on",
        ]
        for parameter in spec.postgres.parameters where settings[parameter.name] != nil {
            settings[parameter.name] = ConfigText.confValue(parameter.value)
        }
        return settings
    }

    public func postgresqlConf(_ node: NodeSpec) throws(ClusterError) -> String {
        let compose = spec.backend == .compose
        let layout = LocalLayout(spec: spec)
        let standbyNames = node.role == .primary
            ? spec.replication.synchronous.standbyNames(spec.standbys.map(\.name)) : ""
        let tunable = tunableSettings(node)
        let parameters = spec.postgres.parameters.filter { tunable[$0.name] == nil }
            .map { ["name": $0.name, "value": ConfigText.confValue($0.value)] }
        let context: [String: Any] = [
            "node": node.name,
            "cluster": spec.name,
            "specFile": (spec.file as NSString).lastPathComponent,
            "listenAddresses": ConfigText.confValue(compose ? "*" : node.host),
            "port": compose ? node.servicePort : node.port,
            "socketDirectory": ConfigText.confValue(compose ? "/var/run/postgresql" : layout.socketDir(node.name)),
            "clusterName": ConfigText.confValue("\(spec.name)/\(node.name)"),
            "maxWalSenders": maxWalSenders,
            "maxReplicationSlots": maxWalSenders,
            "syncMode": node.role == .primary ? spec.replication.synchronous.description : "applied when promoted",
            "synchronousStandbyNames": ConfigText.confValue(standbyNames),
            "tunable": tunable,
            "maxSlotWalKeepSize": spec.replication.maxSlotWalKeep.setting,
            "tls": tlsFiles(node).map { files -> [String: Any] in
                [
                    "mode": spec.tls.mode.rawValue, "certFile": ConfigText.confValue(files.certificate),
                    "keyFile": ConfigText.confValue(files.key),
                ]
            } ?? false,
            "hasParameters": !parameters.isEmpty,
            "parameters": parameters,
            "archive": spec.backup == nil || compose
                ? false
                : [
                    "stanza": spec.name,
                    "archiveCommand": ConfigText.confValue(archiveCommand(node)),
                    "restoreCommand": ConfigText.confValue(restoreCommand(node)),
                ] as [String: Any],
        ]
        return try templates.render("postgresql.conf.mustache", context)
    }

    public func hbaConf(_ node: NodeSpec) throws(ClusterError) -> String {
        var allow = spec.network.allow.map(\.description)
        if spec.backend == .compose && !allow.contains(spec.compose.subnet.description) {
            allow.append(spec.compose.subnet.description)
        }
        let context: [String: Any] = [
            "node": node.name,
            "cluster": spec.name,
            "superuser": spec.superuser.user,
            "replicationUser": spec.replication.user,
            "allow": allow.map { ["cidr": $0] },
            "tcp": spec.tls.enabled ? "hostssl" : "host   ",
        ]
        return try templates.render("pg_hba.conf.mustache", context)
    }

    /// The standby settings of `node` when it follows `upstream`.
    public func standbyConf(_ node: NodeSpec, upstream: NodeSpec) throws(ClusterError) -> String {
        let context: [String: Any] = [
            "node": node.name,
            "upstream": upstream.name,
            "primaryConninfo": ConfigText.confValue(primaryConninfo(node, upstream: upstream)),
            "slot": spec.replication.slots ? ConfigText.confValue(slotName(node)) : false,
        ]
        return try templates.render("standby.conf.mustache", context)
    }

    /// `primary_conninfo` of `node` following `upstream`: the in-network address for
    /// compose, the node's own for local; never a password (it comes from the passfile).
    public func primaryConninfo(_ node: NodeSpec, upstream: NodeSpec) -> String {
        let compose = spec.backend == .compose
        return ConfigText.conninfo([
            ("host", compose ? upstream.serviceHost : upstream.host),
            ("port", String(compose ? upstream.servicePort : upstream.port)),
            ("user", spec.replication.user),
            ("application_name", node.name),
            ("passfile", compose ? ComposeRenderer.ContainerPath.passfile : LocalLayout(spec: spec).passfile),
            ("connect_timeout", "2"),
        ] + verifyServer(from: node))
    }

    /// Where a node's TLS files are on its host, or in its container for compose (the key
    /// as the entrypoint copies it, see ``ComposeRenderer/ContainerPath``); nil with
    /// `tls.mode: off`.
    public func tlsFiles(_ node: NodeSpec) -> (certificate: String, key: String, ca: String)? {
        guard spec.tls.enabled else { return nil }
        if spec.backend == .compose {
            typealias Path = ComposeRenderer.ContainerPath
            return (Path.serverCertificate, Path.serverKey, Path.caCertificate)
        }
        let layout = LocalLayout(spec: spec)
        return (layout.serverCertificate(node.name), layout.serverKey(node.name), layout.nodeCACertificate(node.name))
    }

    /// The conninfo settings with which a program on `node`'s host (walreceiver,
    /// pg_basebackup, pg_rewind) checks that it talks to the real server: the cluster CA
    /// and the server's name in its certificate. Nothing with `tls.mode: off`.
    public func verifyServer(from node: NodeSpec) -> [(String, String)] {
        guard let files = tlsFiles(node) else { return [] }
        return [("sslmode", "verify-full"), ("sslrootcert", files.ca)]
    }

    // MARK: pgBackRest (`backup:`)

    /// pgBackRest's arguments that every call for this cluster starts with: its own
    /// configuration file (never the machine's /etc/pgbackrest.conf, which another cluster
    /// may own) and the stanza, named after the cluster.
    public var pgbackrestBase: [String] {
        ["--config=\(LocalLayout(spec: spec).pgbackrestConf)", "--stanza=\(spec.name)"]
    }

    /// The node's `archive_command`. `--pg1-path` names this node's data folder: PostgreSQL
    /// runs the command in it and gives a relative `%p`, which pgBackRest resolves against pg1-path.
    public func archiveCommand(_ node: NodeSpec) -> String {
        ShellQuote.line(["pgbackrest"] + pgbackrestBase + ["--pg1-path=\(LocalLayout(spec: spec).dataDir(node.name))", "archive-push"])
            + " %p"
    }

    /// The node's `restore_command`, read only while it is in recovery (a standby, or a
    /// node being restored): the WAL that streaming can no longer give comes from the archive.
    public func restoreCommand(_ node: NodeSpec) -> String {
        ShellQuote.line(["pgbackrest"] + pgbackrestBase + ["--pg1-path=\(LocalLayout(spec: spec).dataDir(node.name))", "archive-get"])
            + #" %f "%p""#
    }

    /// pgbackrest.conf, nil without `backup:`. Backend local: the cluster's one configuration
    /// (``pgbackrestRepoConf()`` below, with every node on this machine). Backend ssh: the
    /// nodes' hosts' configuration, which names the repository host and reaches it by ssh.
    public func pgbackrestConf() throws(ClusterError) -> String? {
        guard let backup = spec.backup else { return nil }
        switch spec.backend {
        case .local: return try repositoryConf(backup)
        case .compose: return nil
        case .ssh:
            guard let repoHost = backup.repoHost else { return nil }
            let layout = LocalLayout(spec: spec)
            let context: [String: Any] = [
                "cluster": spec.name,
                "specFile": (spec.file as NSString).lastPathComponent,
                "repoHost": repoHost,
                "user": spec.sshServerUser,
                "repoConfig": layout.pgbackrestRepoConf,
                "sshPort": spec.ssh.port == 22 ? false : spec.ssh.port as Any,
                "cmdSSH": layout.pgbackrestSSH,
                "logPath": "\(layout.pgbackrestDir)/log",
                "lockPath": "\(layout.pgbackrestDir)/lock",
                "stanza": spec.name,
            ]
            return try templates.render("pgbackrest-node.conf.mustache", context)
        }
    }

    /// Backend ssh, `restore --into` a cluster on this machine: a pgbackrest.conf that reads
    /// this cluster's repository host from `folder` on this machine (the ssh wrapper,
    /// ``pgbackrestSSHWrapper(in:)``, its log and lock there). nil without a repository host.
    public func pgbackrestReaderConf(in folder: String) throws(ClusterError) -> String? {
        guard spec.backend == .ssh, let repoHost = spec.backup?.repoHost else { return nil }
        let context: [String: Any] = [
            "cluster": spec.name,
            "specFile": (spec.file as NSString).lastPathComponent,
            "repoHost": repoHost,
            "user": spec.sshServerUser,
            "repoConfig": LocalLayout(spec: spec).pgbackrestRepoConf,
            "sshPort": spec.ssh.port == 22 ? false : spec.ssh.port as Any,
            "cmdSSH": "\(folder)/ssh",
            "logPath": folder,
            "lockPath": folder,
            "stanza": spec.name,
        ]
        return try templates.render("pgbackrest-node.conf.mustache", context)
    }

    /// Backend ssh: pgbackrest.conf on the repository host (`backup.repoHost`): the
    /// repository, retention, and every node's host, reached by ssh. nil otherwise.
    public func pgbackrestRepoConf() throws(ClusterError) -> String? {
        guard spec.backend == .ssh, let backup = spec.backup, backup.repoHost != nil else { return nil }
        return try repositoryConf(backup)
    }

    /// The configuration that holds the repository: the repository, retention, and one
    /// `pg<N>-*` group per node (in spec order): on this machine (local), or on its host
    /// with `pg<N>-host` (ssh).
    func repositoryConf(_ backup: BackupSettings) throws(ClusterError) -> String {
        let layout = LocalLayout(spec: spec)
        let remote = spec.backend == .ssh
        let nodes = spec.nodes.enumerated().map { index, node -> [String: Any] in
            [
                "index": index + 1, "name": node.name, "dataDir": layout.dataDir(node.name), "port": node.port,
                "socketDir": layout.socketDir(node.name), "superuser": spec.superuser.user,
                "host": remote
                    ? [
                        "address": node.sshHost ?? node.host, "user": spec.sshServerUser, "config": layout.pgbackrestConf,
                        "port": spec.ssh.port == 22 ? false : spec.ssh.port as Any,
                    ] as [String: Any]
                    : false,
            ]
        }
        let context: [String: Any] = [
            "cluster": spec.name,
            "specFile": (spec.file as NSString).lastPathComponent,
            "repo": backup.repo,
            "retentionFull": backup.retentionFull,
            "retentionDiff": backup.retentionDiff.map { $0 as Any } ?? false,
            "logPath": "\(layout.pgbackrestDir)/log",
            "lockPath": "\(layout.pgbackrestDir)/lock",
            "cmdSSH": remote ? layout.pgbackrestSSH : false,
            "stanza": spec.name,
            "nodes": nodes,
        ]
        return try templates.render("pgbackrest.conf.mustache", context)
    }

    /// Backend ssh: the `cmd-ssh` pgBackRest runs between the hosts: ssh with the cluster's
    /// own key and the hosts' keys it was given, nothing from the user's ~/.ssh, never asking.
    /// Connections are shared (ControlMaster) and kept (ControlPersist): each archive-push
    /// and archive-get is one ssh, and a standby whose primary dies asks the archive at once,
    /// before any promotion can start; a new connection costs about 0.3 s, a kept one a few
    /// ms. pgcluster opens one from every node's host when it prepares the host; a dead link
    /// ends it within 15 s (ServerAlive) and the next call opens another.
    public func pgbackrestSSHWrapper() -> String {
        let layout = LocalLayout(spec: spec)
        return sshWrapper(key: layout.pgbackrestKey, knownHosts: layout.pgbackrestKnownHosts, control: "'~/.ssh/pgcluster-%C'", persist: "yes")
    }

    /// The wrapper of ``pgbackrestReaderConf(in:)``: its key and known_hosts in `folder`; its
    /// kept connection (a socket in the user's ~/.ssh: a folder's path may be longer than a
    /// socket's 108 bytes) ends 30 s after the last use. Without `keep` (no ~/.ssh), none.
    /// Its socket's name is its own: on a host that also runs a node of the live cluster, the
    /// reader's end (`ssh -O exit`) must not end that node's connection to the repository.
    public func pgbackrestSSHWrapper(in folder: String, keep: Bool) -> String {
        sshWrapper(
            key: "\(folder)/id_ed25519", knownHosts: "\(folder)/known_hosts", control: keep ? "'~/.ssh/pgcluster-reader-%C'" : "none",
            persist: keep ? "30" : "no")
    }

    func sshWrapper(key: String, knownHosts: String, control: String, persist: String) -> String {
        """
        #!/bin/sh
        # ssh for pgBackRest between the hosts of cluster \(spec.name), written by pgcluster.
        exec ssh -i \(ShellQuote.line([key])) -o IdentitiesOnly=yes \\
          -o UserKnownHostsFile=\(ShellQuote.line([knownHosts])) -o GlobalKnownHostsFile=/dev/null \\
          -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=\(spec.ssh.connectTimeout) \\
          -o ControlMaster=auto -o ControlPath=\(control) -o ControlPersist=\(persist) \\
          -o ServerAliveInterval=5 -o ServerAliveCountMax=3 "$@"

        """
    }

    /// The physical slot a standby streams from. Slot names allow only `[a-z0-9_]`.
    public func slotName(_ node: NodeSpec) -> String {
        "pgcluster_" + node.name.replacingOccurrences(of: "-", with: "_")
    }
}

/// How the rendered haproxy.cfg times its checks, from `watch.interval`.
enum HAProxyTiming {
    /// HAProxy checks as often as the watcher probes: a fresher answer does not exist.
    static func milliseconds(_ seconds: Double) -> String { "\(max(1, Int((seconds * 1000).rounded())))ms" }

    /// A node that is out is checked five times as often (at least every 100 ms, never
    /// less often than `inter`): the new primary of a failover takes writes that much sooner,
    /// at the cost of a few more requests to the watcher for the nodes that are out.
    static func downInterval(interval: Double) -> Double { min(interval, max(0.1, interval / 5)) }

    /// A check waits twice the interval (at least a second) for the watcher to answer: with
    /// `fall 1`, one slow answer from a busy watcher must not take a healthy node out.
    static func checkTimeout(interval: Double) -> Double { max(1, interval * 2) }

    /// An IPv6 address in a `server` line goes in brackets.
    static func address(_ host: String) -> String { host.contains(":") ? "[\(host)]" : host }
}
