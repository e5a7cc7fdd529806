import Foundation

/// `pgcluster init` for the local backend: a primary and its standbys, streaming,
/// in the spec's synchronous mode.
public struct ClusterInit: Sendable {
    public let cluster: LocalCluster
    public var force: Bool
    /// Seconds to wait for every standby to stream.
    public var streamTimeout: Double = 120

    public init(cluster: LocalCluster, force: Bool) {
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
        try credentials.save(to: layout.credentialsFile)
        try cluster.writePassfile(credentials)

        let primary = spec.primary
        do {
            try await initPrimary(primary, credentials)
            try await cloneStandbys(from: primary, credentials)
            try await waitForStreaming(primary, credentials)
            let mode = spec.replication.synchronous
            let names = spec.standbys.map(\.name)
            Console.progress("[\(primary.name)] synchronous mode \(mode)")
            let quorum = QuorumChange(
                credentials: credentials, primary: primary, mode: mode, standbys: names, timeout: streamTimeout)
            try await quorum.apply()
            try ClusterRecord.saveSynchronous(spec: spec, primary: primary.name, mode: mode, standbys: nil, applied: (mode, names))
        } catch {
            let running = spec.nodes.filter(cluster.postmasterRuns).map(\.name)
            var failure = error
            if !running.isEmpty {
                failure.details.append(
                    "still running, half-configured: \(running.joined(separator: ", ")); "
                        + "start over with `pgcluster init --force` or remove it with `pgcluster destroy --yes`")
            }
            throw failure
        }
        let seconds = (clock.now - began).seconds
        Console.progress("cluster \(spec.name) is up in \(String(format: "%.1f", seconds)) s: \(spec.nodes.count) nodes")
    }

    /// Refuses existing data (unless `--force`), busy ports and a server user who cannot
    /// reach local.dir, before anything is changed.
    func checkPreconditions() async throws(ClusterError) {
        let existing = spec.nodes.filter { node in
            let path = layout.dataDir(node.name)
            return ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).isEmpty == false
        }
        if !existing.isEmpty {
            guard force else {
                throw ClusterError.refused(
                    "data already exists for \(existing.map(\.name).joined(separator: ", ")) under \(layout.root); "
                        + "init does not touch it. Add --force to stop those servers and erase their data")
            }
            for node in spec.nodes {
                if cluster.postmasterRuns(node) {
                    Console.progress("[\(node.name)] stopping the existing server (--force)")
                    try await cluster.stop(node, mode: .immediate)
                }
                try cluster.removeNodeFiles(node)
            }
            for file in [layout.stateFile, layout.historyFile] { unlink(file) }
        }
        for node in spec.nodes where !PortProbe.isFree(host: node.host, port: node.port) {
            throw ClusterError(
                "\(node.name): port \(node.port) on \(node.host) is already in use",
                details: ["stop what listens there, or give the node another port in \(spec.file)"])
        }
        try await checkServerUserCanReach(layout.root)
    }

    /// When running as root, the server's user must be able to reach local.dir: entering the
    /// deepest folder of its path that exists proves it can pass through every folder above.
    func checkServerUserCanReach(_ path: String) async throws(ClusterError) {
        guard OSUser.isRoot else { return }
        var folder = path
        while !FileManager.default.fileExists(atPath: folder) { folder = (folder as NSString).deletingLastPathComponent }
        if folder == path { _ = chmod(path, 0o755) }
        let result = try await cluster.runner.run(Command("/usr/bin/test", ["-x", folder], user: cluster.serverUser))
        guard result.succeeded else {
            throw ClusterError(
                "the server's OS user '\(cluster.serverUser.name)' cannot enter \(folder), on the way to local.dir \(path)",
                details: ["set local.dir in \(spec.file) to a folder it can reach, such as /tmp/\(spec.name) or /var/lib/pgcluster/\(spec.name)"])
        }
    }

    func initPrimary(_ primary: NodeSpec, _ credentials: Credentials) async throws(ClusterError) {
        let clock = ContinuousClock()
        let began = clock.now
        try cluster.prepareDirectories(primary)
        Console.progress("[\(primary.name)] initdb")
        let pwfile = try cluster.unlinkedSecretFile(
            layout.initdbPasswordFile(primary.name), credentials.superuser.password + "\n")
        defer { close(pwfile) }
        try await cluster.runner.check(
            cluster.serverCommand(
                "initdb",
                [
                    "-D", layout.dataDir(primary.name), "-U", credentials.superuser.user,
                    "--pwfile=/proc/self/fd/\(pwfile)",
                    "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions",
                ]),
            what: "\(primary.name): initdb")
        try cluster.placeConfig(primary, following: nil)
        Console.progress("[\(primary.name)] starting the primary")
        try await cluster.start(primary)

        let replicationUser = credentials.replication.user
        let slots = spec.replication.slots ? spec.standbys.map(cluster.renderer.slotName) : []
        let target = Observer(credentials: credentials).target(primary, connectTimeout: 10)
        let outcome: Result<Void, PGError> = await Blocking.run {
            do throws(PGError) {
                let connection = try PGConnection.connect(target)
                defer { connection.close() }
                // The primary may already wait for a quorum that does not exist yet.
                try connection.query("SET synchronous_commit = local")
                let verifier = try connection.scramVerifier(user: replicationUser, password: credentials.replication.password)
                try connection.query(
                    "CREATE ROLE \(ConfigText.identifier(replicationUser)) WITH REPLICATION LOGIN PASSWORD \(ConfigText.sqlLiteral(verifier))")
                for slot in slots {
                    try connection.query("SELECT pg_create_physical_replication_slot($1)", [slot])
                }
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        if case .failure(let error) = outcome {
            throw ClusterError("\(primary.name): cannot create the replication role and slots: \(error)")
        }
        Console.progress("[\(primary.name)] primary ready (\(String(format: "%.1f", (clock.now - began).seconds)) s)")
    }

    /// pg_basebackup every standby at once, then start each.
    func cloneStandbys(from primary: NodeSpec, _ credentials: Credentials) async throws(ClusterError) {
        let standbys = spec.standbys
        let errors: [ClusterError] = await withTaskGroup(of: ClusterError?.self) { group in
            for standby in standbys {
                group.addTask {
                    do {
                        try await clone(standby, from: primary, credentials)
                        try await cluster.start(standby)
                        return nil
                    } catch let error as ClusterError {
                        return error
                    } catch {
                        return ClusterError("\(standby.name): \(error)")
                    }
                }
            }
            var errors: [ClusterError] = []
            for await error in group { if let error { errors.append(error) } }
            return errors
        }
        if var first = errors.first {
            for other in errors.dropFirst() { first.details.append("also: \(other.message)") }
            throw first
        }
    }

    /// A fresh copy of `upstream` in `node`'s data folder, set up to follow it.
    public static func cloneCommand(
        cluster: LocalCluster, _ node: NodeSpec, from upstream: NodeSpec, credentials: Credentials, progress: Bool
    ) -> Command {
        var arguments = [
            "-D", cluster.layout.dataDir(node.name), "-h", upstream.host, "-p", String(upstream.port),
            "-U", credentials.replication.user, "-X", "stream", "-c", "fast", "--no-password",
        ]
        if cluster.spec.replication.slots { arguments += ["-S", cluster.renderer.slotName(node)] }
        if progress { arguments.append("-P") }
        var command = cluster.serverCommand("pg_basebackup", arguments, environment: ["PGPASSFILE": cluster.layout.passfile])
        command.passthroughStderr = progress
        return command
    }

    func clone(_ node: NodeSpec, from primary: NodeSpec, _ credentials: Credentials) async throws(ClusterError) {
        let clock = ContinuousClock()
        let began = clock.now
        try cluster.prepareDirectories(node)
        Console.progress("[\(node.name)] pg_basebackup from \(primary.name)")
        let command = Self.cloneCommand(
            cluster: cluster, node, from: primary, credentials: credentials,
            progress: Console.stderrIsTTY && spec.standbys.count == 1)
        try await cluster.runner.check(command, what: "\(node.name): pg_basebackup")
        try cluster.placeConfig(node, following: primary)
        Console.progress("[\(node.name)] cloned (\(String(format: "%.1f", (clock.now - began).seconds)) s), starting")
    }

    /// Waits (polling the primary's pg_stat_replication) until every standby streams.
    func waitForStreaming(_ primary: NodeSpec, _ credentials: Credentials) async throws(ClusterError) {
        let ops = ServerOps(spec: spec, credentials: credentials, templates: cluster.renderer.templates)
        let missing = await ops.confirmStreaming(spec.standbys, from: primary, timeline: nil, timeout: streamTimeout)
        guard !missing.isEmpty else {
            Console.progress("[\(primary.name)] all \(spec.standbys.count) standbys stream")
            return
        }
        throw ClusterError(
            "standbys not streaming after \(Int(streamTimeout)) s: \(missing.map(\.name).joined(separator: ", "))",
            details: missing.flatMap { node in cluster.serverLog(node, lines: 8).map { "\(node.name) log | " + $0 } })
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
