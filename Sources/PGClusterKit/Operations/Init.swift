import Foundation

/// `pgcluster init` for the local and ssh backends: a primary and its standbys,
/// streaming, in the spec's synchronous mode.
public struct ClusterInit: Sendable {
    public let cluster: HostCluster
    public var force: Bool
    /// Seconds to wait for every standby to stream.
    public var streamTimeout: Double = 120

    public init(cluster: HostCluster, force: Bool) {
        self.cluster = cluster
        self.force = force
    }

    var spec: ClusterSpec { cluster.spec }
    var layout: LocalLayout { cluster.layout }

    public func run() async throws(ClusterError) {
        let clock = ContinuousClock()
        let began = clock.now
        try await checkPreconditions()
        let credentials = try Credentials.resolve(spec: spec, storedAt: layout.credentialsFile)
        try cluster.makeRoot()
        // The CA first (kept from an earlier init, so applications keep trusting it); each
        // node's certificate is signed when its folder is prepared.
        if spec.tls.mode == .generate { _ = try cluster.clusterCA() }
        try credentials.save(to: layout.credentialsFile)
        try await cluster.writePassfile(credentials)

        let primary = spec.primary
        do {
            try await initPrimary(primary, credentials)
            try await completeFromPrimary(primary, credentials)
        } catch {
            throw await withRunningNodes(error)
        }
        let seconds = (clock.now - began).seconds
        Console.progress("cluster \(spec.name) is up in \(String(format: "%.1f", seconds)) s: \(spec.nodes.count) node\(spec.nodes.count == 1 ? "" : "s")")
    }

    /// Once the primary runs: every standby cloned and streaming, the synchronous mode set,
    /// the cluster recorded (`init`, and `restore` after the primary was restored). With
    /// `backup:`, the stanza is created meanwhile, so that the archive works from the first
    /// WAL segments: it needs only the primary (pgBackRest passes over a node that does not
    /// answer yet), and over ssh it takes seconds (each query pgBackRest makes on a node
    /// through its remote waits 0.1 s at least), which the clones no longer wait for.
    func completeFromPrimary(_ primary: NodeSpec, _ credentials: Credentials) async throws(ClusterError) {
        async let stanza: Result<Void, ClusterError> = outcome { () async throws(ClusterError) in
            guard spec.backup != nil else { return }
            Console.progress("[\(primary.name)] pgbackrest stanza-create (while the standbys are cloned)")
            try await BackupRepository(cluster: cluster).ensureStanza()
            Console.progress("[\(primary.name)] pgbackrest stanza ready")
        }
        try await cloneStandbys(from: primary, credentials)
        try await waitForStreaming(primary, credentials)
        try await stanza.get()
        if spec.backup != nil { await settleArchiver(primary, credentials) }
        let mode = spec.replication.synchronous
        let names = spec.standbys.map(\.name)
        Console.progress("[\(primary.name)] synchronous mode \(mode)")
        let quorum = QuorumChange(
            credentials: credentials, primary: primary, mode: mode, standbys: names, timeout: streamTimeout, intent: spec)
        try await quorum.apply()
        try await ClusterRecord.saveSynchronous(spec: spec, primary: primary.name, mode: mode, standbys: nil, applied: (mode, names))
        try await ClusterRecord.saveMembers(spec: spec, primary: primary.name, members: spec.nodes.map(ClusterState.Member.init))
    }

    /// The error, naming the servers a failed init or restore left running.
    func withRunningNodes(_ error: ClusterError) async -> ClusterError {
        var running: [String] = []
        for node in spec.nodes where await cluster.postmasterRuns(node) { running.append(node.name) }
        var failure = error
        if !running.isEmpty {
            failure.details.append(
                "still running, half-configured: \(running.joined(separator: ", ")); "
                    + "start over with `pgcluster init --force` or remove it with `pgcluster destroy --yes`")
        }
        return failure
    }

    /// Refuses an unready host, existing data (unless `--force`), busy ports and a server
    /// user who cannot reach local.dir, before anything is changed. `newDatabase` (init,
    /// not restore, whose cluster keeps its source's database system): a backup repository
    /// that already holds the cluster's stanza is refused too.
    func checkPreconditions(newDatabase: Bool = true) async throws(ClusterError) {
        try await preflightHosts()
        // Before --force may erase anything: data of another major version is refused even then.
        try await cluster.checkMajorVersion(spec.nodes)
        let existing = try await nodesWithData()
        if !existing.isEmpty && !force {
            throw ClusterError.refused(
                "data already exists for \(existing.map(\.name).joined(separator: ", ")) under \(layout.serverRoot); "
                    + "init does not touch it. Add --force to stop those servers and erase their data")
        }
        // Before --force erases anything: a new database could not archive into the stanza.
        if newDatabase, spec.backup != nil { try await BackupRepository(cluster: cluster).refuseExistingStanza() }
        if !existing.isEmpty {
            for node in spec.nodes {
                if await cluster.postmasterRuns(node) {
                    Console.progress("[\(node.name)] stopping the existing server (--force)")
                    try await cluster.stop(node, mode: .immediate)
                }
                try await cluster.removeNodeFiles(node)
            }
            for file in [layout.stateFile, layout.historyFile] { unlink(file) }
        }
        guard spec.backend == .local else { return }
        for node in spec.nodes where !PortProbe.isFree(host: node.host, port: node.port) {
            throw ClusterError(
                "\(node.name): port \(node.port) on \(node.host) is already in use",
                details: ["stop what listens there, or give the node another port in \(spec.file)"])
        }
        try await checkServerUserCanReach(layout.root)
    }

    /// The nodes whose data folder holds anything, asking every host at once.
    func nodesWithData() async throws(ClusterError) -> [NodeSpec] {
        let results = await parallelResults(spec.nodes) { node throws(ClusterError) in
            !((try await cluster.host(node).list(layout.dataDir(node.name))) ?? []).isEmpty
        }
        var existing: [NodeSpec] = []
        for (node, result) in results {
            switch result {
            case .success(true): existing.append(node)
            case .success(false): break
            case .failure(let error): throw error
            }
        }
        return existing
    }

    /// Every host at once: it answers, has the programs, the user and room for the cluster.
    /// One line per host that is not ready; nothing is changed anywhere before all are.
    func preflightHosts() async throws(ClusterError) {
        let hosts = cluster.distinctHosts.map(\.host)
        let (bindir, folder) = (cluster.bindir, layout.serverRoot)
        let errors = await parallel(hosts) { host throws(ClusterError) in try await host.preflight(bindir: bindir, folder: folder) }
            .compactMap(\.1)
        if var failure = ClusterError.combined(errors) {
            failure.details.append("nothing was changed on any host")
            throw failure
        }
    }

    /// When running as root, the server's user must be able to reach local.dir: entering the
    /// deepest folder of its path that exists proves it can pass through every folder above.
    func checkServerUserCanReach(_ path: String) async throws(ClusterError) {
        guard OSUser.isRoot else { return }
        var folder = path
        while !FileManager.default.fileExists(atPath: folder) { folder = (folder as NSString).deletingLastPathComponent }
        if folder == path { _ = chmod(path, 0o755) }
        let result = try await cluster.host(spec.primary).run(["/usr/bin/test", "-x", folder])
        guard result.succeeded else {
            throw ClusterError(
                "the server's OS user '\(cluster.serverUserName)' cannot enter \(folder), on the way to local.dir \(path)",
                details: ["set local.dir in \(spec.file) to a folder it can reach, such as /tmp/\(spec.name) or /var/lib/pgcluster/\(spec.name)"])
        }
    }

    func initPrimary(_ primary: NodeSpec, _ credentials: Credentials) async throws(ClusterError) {
        let clock = ContinuousClock()
        let began = clock.now
        try await cluster.prepareDirectories(primary)
        Console.progress("[\(primary.name)] initdb")
        // A password file left by an older version goes. This one never has a name: the
        // password arrives on stdin into a file unlinked at once, which initdb reads through
        // the descriptor, so nothing is left however pgcluster ends (kill -9 included).
        try await cluster.host(primary).remove([layout.initdbPasswordFile(primary.name)])
        let withPasswordFile = #"f=$(mktemp) && exec 3<>"$f" && rm -f "$f" && cat >&3 && exec "$@" --pwfile=/proc/self/fd/3"#
        try await cluster.host(primary).check(
            [
                "/bin/sh", "-c", withPasswordFile, "sh", cluster.binary("initdb"), "-D", layout.dataDir(primary.name),
                "-U", credentials.superuser.user, "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8",
                "--no-instructions", "--wal-segsize=\(spec.postgres.walSegmentMB)",
            ],
            input: Data((credentials.superuser.password + "\n").utf8), what: "\(primary.name): initdb")
        do throws(ClusterError) {
            try await cluster.checkParameters(primary)
        } catch {
            // Nothing but initdb's fresh folder was made: it goes, so that `init` runs again as is.
            try? await cluster.host(primary).remove([layout.dataDir(primary.name)])
            throw error
        }
        try await cluster.placeConfig(primary, following: nil)
        Console.progress("[\(primary.name)] starting the primary")
        try await cluster.start(primary)

        let replicationUser = credentials.replication.user
        let appDatabase = spec.app?.database
        let slots = spec.replication.slots ? spec.standbys.map(cluster.renderer.slotName) : []
        let target = Observer(credentials: credentials).target(primary, connectTimeout: 10)
        let outcome: Result<Void, PGError> = await Blocking.run {
            do throws(PGError) {
                let connection = try PGConnection.connect(target)
                defer { connection.close() }
                // The primary may already wait for a quorum that does not exist yet.
                try connection.query("SET synchronous_commit = local")
                // initdb stored the superuser's password with PostgreSQL's default secret;
                // a generated one gets the cheap secret every connection is quicker with.
                if let cheap = credentials.superuser.cheapSecretStatement { try connection.query(cheap) }
                let verifier = try connection.scramVerifier(for: credentials.replication)
                try connection.query(
                    "CREATE ROLE \(ConfigText.identifier(replicationUser)) WITH REPLICATION LOGIN PASSWORD \(ConfigText.sqlLiteral(verifier))")
                for slot in slots {
                    try connection.query("SELECT pg_create_physical_replication_slot($1, true)", [slot])
                }
                if let app = credentials.app, let database = appDatabase {
                    // The application's own role (SCRAM, not a superuser) owns its database.
                    let appVerifier = try connection.scramVerifier(for: app)
                    try connection.query(
                        "CREATE ROLE \(ConfigText.identifier(app.user)) WITH LOGIN PASSWORD \(ConfigText.sqlLiteral(appVerifier))")
                    try connection.query(
                        "CREATE DATABASE \(ConfigText.identifier(database)) OWNER \(ConfigText.identifier(app.user))")
                }
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        if case .failure(let error) = outcome {
            throw ClusterError("\(primary.name): cannot create the replication role, slots and application role: \(error)")
        }
        Console.progress("[\(primary.name)] primary ready (\(String(format: "%.1f", (clock.now - began).seconds)) s)")
    }

    /// Every host with standbys at once; on a host with more than two new standbys, one
    /// pg_basebackup, which the others there copy (``HostCluster/clone(_:from:credentials:progress:copies:)``);
    /// then each starts.
    ///
    /// A base backup costs the primary and the host a TLS stream, a backup checkpoint and a
    /// WAL segment switch (each lengthening the WAL of every other backup then running),
    /// while a copy is only the files, but it starts once its clone is complete. Eight
    /// standbys on one 2-core host: init took 5.7–7.4 s with eight base backups, 2.8–3.3 s
    /// with one and seven copies. Two: 3.15 s with two base backups at once, 3.59 s with one
    /// and a copy (medians of 8 alternating runs, on a disk slow to make files; equal on a
    /// quiet one), so two standbys keep a base backup each.
    func cloneStandbys(from primary: NodeSpec, _ credentials: Credentials) async throws(ClusterError) {
        let groups = cluster.distinctHosts.flatMap { host -> [[NodeSpec]] in
            let standbys = host.nodes.filter { $0.name != primary.name }
            return standbys.count > 2 ? [standbys] : standbys.map { [$0] }
        }
        let progress = Console.stderrIsTTY && groups.count == 1
        let errors = await parallelResults(groups) { nodes throws(ClusterError) in
            try await clone(nodes[0], copies: Array(nodes.dropFirst()), from: primary, credentials, progress: progress)
            let starts = await parallel(nodes) { node throws(ClusterError) in try await cluster.start(node) }
            if let failure = ClusterError.combined(starts.compactMap(\.1)) { throw failure }
        }
        .compactMap(\.1.error)
        if let failure = ClusterError.combined(errors) { throw failure }
    }

    func clone(
        _ node: NodeSpec, copies: [NodeSpec], from primary: NodeSpec, _ credentials: Credentials, progress: Bool
    ) async throws(ClusterError) {
        let clock = ContinuousClock()
        let began = clock.now
        Console.progress("[\(node.name)] pg_basebackup from \(primary.name)")
        let copied = try await cluster.clone(node, from: primary, credentials: credentials, progress: progress, copies: copies)
        let also = copied.isEmpty ? "" : " and copied for \(copied.map(\.name).joined(separator: ", "))"
        Console.progress("[\(node.name)] cloned\(also) (\(String(format: "%.1f", (clock.now - began).seconds)) s), starting")
    }

    /// A WAL file can be ready before the stanza exists (a clone ends with a WAL switch): its
    /// archive-push fails, and PostgreSQL's archiver, after three tries a second apart, waits
    /// up to a minute before the next, so `status` right after init warned that archiving
    /// fails. A reload wakes the archiver at once (its SIGHUP sets its latch); once it has
    /// archived past the failure, its counters are reset: those failures were init's order
    /// of steps, and an alert on new failures starts from zero. At most 10 s; an archive that
    /// still fails is left for `status` to report.
    func settleArchiver(_ primary: NodeSpec, _ credentials: Credentials) async {
        let ops = ServerOps(spec: spec, credentials: credentials, templates: cluster.renderer.templates)
        guard let first = await ops.observer.observe(primary).archiver, first.failedCount > 0 else { return }
        let now = first.failing ? await ops.wakeUntilArchiving(primary) : first
        guard let now, !now.failing else { return }
        _ = try? await ops.execute(primary, ["SELECT pg_stat_reset_shared('archiver')"])
    }

    /// Waits (polling the primary's pg_stat_replication) until every standby streams.
    func waitForStreaming(_ primary: NodeSpec, _ credentials: Credentials) async throws(ClusterError) {
        let ops = ServerOps(spec: spec, credentials: credentials, templates: cluster.renderer.templates)
        let missing = await ops.confirmStreaming(spec.standbys, from: primary, timeline: nil, timeout: streamTimeout)
        guard !missing.isEmpty else {
            switch spec.standbys.count {
            case 0: break
            case 1: Console.progress("[\(primary.name)] its standby streams")
            case let count: Console.progress("[\(primary.name)] all \(count) standbys stream")
            }
            return
        }
        throw ClusterError(
            "standbys not streaming after \(Int(streamTimeout)) s: \(missing.map(\.name).joined(separator: ", "))",
            details: await logs(missing))
    }

    func logs(_ nodes: [NodeSpec]) async -> [String] {
        var lines: [String] = []
        for node in nodes { lines += await cluster.serverLog(node, lines: 8).map { "\(node.name) log | " + $0 } }
        return lines
    }
}

extension Duration {
    var seconds: Double {
        let (s, attos) = components
        return Double(s) + Double(attos) / 1e18
    }
}

/// Whether a TCP port can be listened on.
public enum PortProbe {
    public static func isFree(host: String, port: Int) -> Bool {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var info: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &info) == 0, let first = info else { return true }
        defer { freeaddrinfo(info) }
        let fd = socket(first.pointee.ai_family, first.pointee.ai_socktype, first.pointee.ai_protocol)
        guard fd >= 0 else { return true }
        defer { close(fd) }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        return bind(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0
    }
}
