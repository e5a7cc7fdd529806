import Foundation

/// `pgcluster restore --to TARGET --into SPEC`: a new cluster from this cluster's backups.
/// The new spec's primary is restored by pgBackRest from the backup the target needs,
/// recovers to the target and is promoted; then its standbys are cloned as `init` does.
/// The live cluster is only read: its repository, and a `pgbackrest check` on its primary
/// (a WAL switch, so that what was just written is in the archive).
public struct ClusterRestore: Sendable {
    public let source: BackupRepository
    public let target: HostCluster
    public var to: RestoreTarget
    /// Seconds the restored primary may take to recover and be promoted.
    public var recoveryTimeout: Double = 1800

    /// Replacing the cluster's own data (`--in-place`): `target` is the cluster itself.
    public let inPlace: Bool

    /// Into a new cluster (`--into`).
    public init(source: HostCluster, target: HostCluster, to: RestoreTarget) throws(ClusterError) {
        self.source = try BackupRepository(cluster: source)
        self.target = target
        self.to = to
        inPlace = false
    }

    /// In place of the cluster's own data (`--in-place --yes`): every node is stopped, its
    /// data moved aside (`data.before-restore` beside it), the primary restored and the
    /// standbys cloned; the old data is removed only once every standby streams.
    public init(inPlaceOf cluster: HostCluster, to: RestoreTarget) throws(ClusterError) {
        source = try BackupRepository(cluster: cluster)
        target = cluster
        self.to = to
        inPlace = true
    }

    /// Where `--in-place` keeps a node's data until the restore is verified.
    func asideDir(_ node: NodeSpec) -> String { "\(target.layout.nodeDir(node.name))/data.before-restore" }

    public struct Report: Sendable, Codable {
        public var cluster: String
        public var primary: String
        public var backup: String
        public var target: String
        public var timeline: Int?
        public var lsn: LSN?
        public var seconds: Double

        public var text: String {
            "cluster \(cluster) restored from backup \(backup) to \(target): primary \(primary) on timeline \(timeline.map(String.init) ?? "?") "
                + "at \(lsn?.description ?? "?"), standbys streaming (" + String(format: "%.1f s", seconds) + ")"
        }
    }

    public func run() async throws(ClusterError) -> Report {
        if inPlace { return try await restore() }
        return try await source.leavingNoLocalDir { () async throws(ClusterError) in try await restore() }
    }

    func restore() async throws(ClusterError) -> Report {
        let clock = ContinuousClock()
        let began = clock.now
        let sourceSpec = source.spec, spec = target.spec
        // The source's passwords, from its local.dir. Without them (the cluster destroyed, or
        // its local.dir lost with its machine) the restored roles get new ones
        // (``adoptRoles(_:_:)``): `--into`, the new cluster's; `--in-place`, the cluster is
        // made again, as `init` would, from its backups.
        let sourceCredentials = try Credentials.storedIfAny(spec: sourceSpec)
        let adopting = sourceCredentials == nil
        if !inPlace { try checkNewCluster(sourceCredentials) }
        if adopting { try checkAdoptable() }
        // Everything that can refuse does so before anything is written.
        let catalog = try await source.catalog()
        if catalog.stanzaMissing {
            throw ClusterError(
                "no backups of \(sourceSpec.name) in \(source.settings.repo): the stanza does not exist",
                details: [
                    adopting
                        ? "there is nothing to restore \(sourceSpec.name) from (it has no local.dir either): make it with `pgcluster init -f \(sourceSpec.file)`"
                        : "take one with `pgcluster backup -f \(sourceSpec.file)`"
                ])
        }
        let plan: RestoreChoice.Plan
        switch RestoreChoice.plan(to, catalog: catalog, history: try await source.newestTimelineHistory()) {
        case .success(let chosen): plan = chosen
        case .failure(let refusal): throw refusal
        }
        if let refusal = RestoreChoice.unreachable(to, now: Date(), primaryLsn: nil, archiveEnd: nil) { throw refusal }
        var live: NodeSpec?
        var primaryLsn: LSN?
        if let sourceCredentials, let primary = await liveSource(sourceCredentials) {
            live = primary
            if let foreign = await source.foreignStanza(catalog, primary: primary, credentials: sourceCredentials) { throw foreign }
            primaryLsn = try await markEnd(on: primary, sourceCredentials)
        }
        // From a node's pg_control; with the nodes gone, from the backups themselves.
        var segmentBytes = await source.segmentBytes()
        if segmentBytes == nil { segmentBytes = catalog.inferredSegmentBytes }
        let archiveEnd = primaryLsn != nil ? nil : segmentBytes.flatMap { catalog.archiveEnd(segmentBytes: $0) }
        // A restored cluster keeps its backup's WAL segment size: the spec cannot change it.
        if !inPlace, let wanted = spec.postgres.walSegmentSize, let bytes = segmentBytes, UInt64(wanted) << 20 != bytes {
            Console.warn(
                "\(spec.file): postgres.walSegmentSize \(wanted)MB is not used: the restored cluster keeps "
                    + "\(sourceSpec.name)'s \(bytes >> 20)MB segments (fixed when a cluster is made)")
        }
        if let refusal = RestoreChoice.unreachable(to, now: Date(), primaryLsn: primaryLsn, archiveEnd: archiveEnd) {
            throw refusal
        }
        let initializer = ClusterInit(cluster: target, force: false)
        if inPlace {
            for node in spec.nodes where try await target.host(node).exists(asideDir(node)) {
                throw ClusterError(
                    "\(node.name): \(asideDir(node)) is left from an earlier in-place restore; nothing was changed",
                    details: [
                        "it may be the only copy of the data from before that restore: if the cluster is as it should be "
                            + "(pgcluster status), remove it and run restore again; to go back to it instead: pgcluster stop, "
                            + "remove \(target.layout.dataDir(node.name)), move it in its place, pgcluster start"
                    ])
            }
        } else {
            let existing = try await initializer.nodesWithData()
            if !existing.isEmpty {
                throw ClusterError(
                    "\(spec.file): data already exists for \(existing.map(\.name).joined(separator: ", ")) under \(target.layout.serverRoot); "
                        + "restore --into makes a new cluster and touches none",
                    exitCode: .refused,
                    details: ["an earlier restore into it that failed? remove it with: pgcluster destroy -f \(spec.file) --yes"])
            }
            try await initializer.checkPreconditions(newDatabase: false)
            // The new cluster keeps the source's database system: a stanza of its name made
            // for another one could never take its archive.
            if spec.backup != nil {
                try await BackupRepository(cluster: target).refuseForeignStanza(
                    system: { catalog.systemId?.value }, what: "the restored cluster's (\(sourceSpec.name)'s)")
            }
        }

        // What the live primary wrote just now goes to the archive (pgbackrest check switches
        // WAL). Adopting, the source's nodes are gone with its local.dir: nothing to ask.
        let pushed = adopting ? nil : try await source.run(["check"])
        if pushed?.succeeded != true {
            if live == nil {
                Console.progress("no primary of \(sourceSpec.name) answers: restoring from what the archive holds")
            } else {
                Console.warn("pgbackrest check on \(sourceSpec.name) failed: restoring from what the archive holds")
            }
        }

        var credentials: Credentials
        if let sourceCredentials {
            credentials = sourceCredentials
            credentials.rootCertificate = Credentials.rootCertificate(for: spec)
        } else {
            credentials = try Credentials.resolve(spec: spec, storedAt: target.layout.credentialsFile)
            Console.progress(
                "\(sourceSpec.name)'s passwords are not here (\(LocalLayout(spec: sourceSpec).credentialsFile) is missing): "
                    + "the restored roles get " + (inPlace ? "new ones" : "\(spec.name)'s own"))
        }
        var aside: [String] = []
        var wereRunning: [NodeSpec] = []
        if inPlace { (aside, wereRunning) = try await stopAndMoveAside() }
        if !inPlace || adopting {
            try target.makeRoot()
            if spec.tls.mode == .generate { _ = try target.clusterCA() }
        }
        // Adopting, the passwords are stored once the roles have them: a restore that fails
        // before leaves none, and the next one adopts again.
        let storeCredentials = { () async throws(ClusterError) in
            try credentials.save(to: target.layout.credentialsFile)
            try await target.writePassfile(credentials)
        }
        if !inPlace && !adopting { try await storeCredentials() }

        let primary = spec.primary
        // From backend ssh into a new cluster: pgBackRest on its primary's host (this machine,
        // or a host of its own) reads the repository host, with the live cluster's key.
        let reader = !inPlace && source.remote ? target.layout.pgbackrestReaderDir : nil
        var promoted = false
        var adopted = false
        do {
            try await target.prepareDirectories(primary)
            Console.progress("[\(primary.name)] pgbackrest restore --set=\(plan.backup.label) \(plan.targetArguments.joined(separator: " "))")
            let arguments =
                ["--pg1-path=\(target.layout.dataDir(primary.name))", "--set=\(plan.backup.label)"] + plan.targetArguments
                + ["--log-level-console=off", "--log-level-stderr=info", "restore"]
            if inPlace {
                // On the primary's host (backend ssh: from the repository host, by ssh).
                try await source.check(node: primary, arguments, what: "pgbackrest restore into \(primary.name)", progress: true)
            } else if let reader {
                let config = try await source.prepareReader(in: reader, on: target.host(primary))
                _ = try await source.check(
                    on: target.host(primary), config: config, arguments, what: "pgbackrest restore into \(primary.name)", progress: true)
            } else {
                try await source.check(arguments, what: "pgbackrest restore into \(primary.name)", progress: true)
            }
            try await target.placeConfig(primary, following: nil)
            Console.progress("[\(primary.name)] starting: recovery to \(to), then promotion")
            try await target.start(primary)
            if adopting {
                try await waitForPromotionOverSocket(primary, credentials)
                promoted = true
                try await adoptRoles(primary, credentials)
                try await storeCredentials()
                adopted = true
            }
            try await waitForPromotion(primary, credentials)
            promoted = true
            // The spec's application role: new passwords adopting; from the source's passwords,
            // when the source had no such role.
            if !inPlace || adopting, let app = spec.app, adopting || sourceCredentials?.app?.user != app.user {
                try await ensureAppRole(app, on: primary, &credentials)
                try await storeCredentials()
            }
            // Promoted and without restore_command: the live cluster's key goes.
            if let reader { await source.removeReader(in: reader, on: target.host(primary)) }
            try await initializer.completeFromPrimary(primary, credentials)
        } catch {
            if let reader { await source.removeReader(in: reader, on: target.host(primary)) }
            guard inPlace else {
                var failure = error
                failure.details.append(
                    "nothing of \(sourceSpec.name) was changed; remove what the restore made with: pgcluster destroy -f \(spec.file) --yes")
                throw failure
            }
            var failure = error
            if !promoted {
                // Nothing restored took writes: the cluster goes back to what it was.
                failure.details.append(await putBack(wereRunning: wereRunning, credentials))
            } else if adopting && !adopted {
                // Promoted, but no role has a password anyone knows: of no use; a copy of the backup, nothing else.
                try? await target.stop(primary, mode: .immediate)
                try? await target.host(primary).remove([target.layout.dataDir(primary.name)])
                failure.details.append(
                    "\(primary.name) was restored and promoted, but its roles have no new passwords: that copy was removed, "
                        + (aside.isEmpty ? "and nothing of the cluster is left (as before the restore)" : "the data from before the restore is kept: \(aside.joined(separator: ", "))")
                        + "; restore again once the cause is fixed")
            } else if !aside.isEmpty {
                failure.details.append(
                    "\(primary.name) runs as the restored primary; the data from before the restore is kept: \(aside.joined(separator: ", ")); "
                        + "a standby that does not stream gets a new copy with `pgcluster rejoin NODE --reclone`")
            }
            throw failure
        }
        if !aside.isEmpty {
            // Every standby streams from the restored primary: the old data can go.
            Console.progress("restore verified; removing the data from before it")
            for node in spec.nodes { try await target.host(node).remove([asideDir(node)]) }
        }
        let observation = await Observer(credentials: credentials).observe(primary)
        return Report(
            cluster: spec.name, primary: primary.name, backup: plan.backup.label, target: to.description,
            timeline: observation.timeline, lsn: observation.currentLsn, seconds: (clock.now - began).seconds)
    }

    /// `--into`: a cluster of its own (name, local.dir; backend local, or backend ssh when
    /// the backups are on a repository host, which the new primary's host then reads) with
    /// the same roles.
    func checkNewCluster(_ sourceCredentials: Credentials?) throws(ClusterError) {
        let sourceSpec = source.spec, spec = target.spec
        switch spec.backend {
        case .local: break
        case .ssh:
            guard source.remote else {
                throw ClusterError(
                    "restore --into a spec of backend ssh restores on its primary's host, which cannot read \(sourceSpec.name)'s repository: "
                        + "it is a folder on this machine (\(source.settings.repo))",
                    exitCode: .usage,
                    details: ["restore into a spec of backend local, or keep the backups on a repository host (backend ssh, backup.repoHost)"])
            }
        case .compose:
            throw ClusterError("restore --into needs a spec of backend local or ssh; \(spec.file) has compose", exitCode: .usage)
        }
        guard sourceSpec.backend != .compose else {
            throw ClusterError(
                "restore --into from a cluster of backend compose is not supported: it has no backups",
                exitCode: .usage)
        }
        guard spec.name != sourceSpec.name else {
            throw ClusterError(
                "\(spec.file) names the same cluster (\(spec.name)): the restored cluster needs a name of its own (or use --in-place --yes)",
                exitCode: .usage)
        }
        guard spec.local.dir != sourceSpec.local.dir else {
            throw ClusterError("\(spec.file) has the same local.dir as \(sourceSpec.file): give it its own", exitCode: .usage)
        }
        let superuser = sourceCredentials?.superuser.user ?? sourceSpec.superuser.user
        let replication = sourceCredentials?.replication.user ?? sourceSpec.replication.user
        guard superuser == spec.superuser.user, replication == spec.replication.user else {
            throw ClusterError(
                "\(spec.file) names other roles than the backup holds (superuser \(superuser), replication \(replication)): give it the same superuser.user and replication.user",
                exitCode: .usage)
        }
    }

    /// `--in-place`: stops every node, then moves each node's data folder aside. Returns
    /// where the data went, and the nodes that ran before.
    func stopAndMoveAside() async throws(ClusterError) -> (moved: [String], wereRunning: [NodeSpec]) {
        let spec = target.spec
        var running: [NodeSpec] = []
        for node in spec.nodes {
            if await target.postmasterRuns(node) { running.append(node) }
            Console.progress("[\(node.name)] stopping (restore --in-place)")
            try await target.stop(node, mode: .fast)
        }
        var moved: [String] = []
        for node in spec.nodes where try await target.host(node).exists(target.layout.dataDir(node.name)) {
            try await target.host(node).check(
                ["/bin/mv", "-T", target.layout.dataDir(node.name), asideDir(node)],
                what: "\(node.name): moving its data aside")
            moved.append(asideDir(node))
        }
        return (moved, running)
    }

    /// `--in-place` failed before the restored primary was promoted: it is stopped and its
    /// data removed (a copy of the backup, nothing else), every node's own data goes back,
    /// and the nodes that ran are started again (``StartNodes``: the recorded primary
    /// first). Returns the line that says what the cluster is now.
    func putBack(wereRunning: [NodeSpec], _ credentials: Credentials) async -> String {
        let spec = target.spec, primary = spec.primary
        var putBack = 0
        do throws(ClusterError) {
            if await target.postmasterRuns(primary) { try await target.stop(primary, mode: .immediate) }
            for node in spec.nodes {
                if try await target.host(node).exists(asideDir(node)) {
                    try await target.host(node).remove([target.layout.dataDir(node.name)])
                    try await target.host(node).check(
                        ["/bin/mv", "-T", asideDir(node), target.layout.dataDir(node.name)], what: "\(node.name): putting its data back")
                    putBack += 1
                } else if node == primary {
                    // It had none (a cluster made again from its backups): the copy goes.
                    try await target.host(node).remove([target.layout.dataDir(node.name)])
                }
            }
        } catch {
            return "putting the data from before the restore back failed (\(error.message)): it is in \(spec.nodes.map(asideDir).joined(separator: ", ")); "
                + "to go back, `pgcluster stop`, remove each node's data folder and move data.before-restore in its place, `pgcluster start`"
        }
        guard putBack > 0 else { return "the restored copy was removed: nothing of the cluster is left, as before the restore" }
        Console.progress("restore failed before its primary was promoted: every node's own data is back")
        guard !wereRunning.isEmpty else { return "nothing was changed: every node's own data is back in its data folder" }
        do throws(ClusterError) {
            _ = try await StartNodes(control: target, credentials: credentials).run(wereRunning)
        } catch {
            return "every node's own data is back in its data folder, but starting them again failed: \(error.message); see `pgcluster status`"
        }
        return "nothing was changed: every node's own data is back in its data folder, and "
            + "\(wereRunning.map(\.name).joined(separator: ", ")) running again"
    }

    /// The live cluster's primary, when one answers (the live cluster may be gone: a
    /// restore after losing every node).
    func liveSource(_ credentials: Credentials) async -> NodeSpec? {
        let observations = await Observer(credentials: credentials).observeAll(source.spec.nodes)
        let primaries = observations.filter { $0.reachable && $0.isPrimary }
        return primaries.count == 1 ? primaries[0].node : nil
    }

    /// On the live primary, before its WAL is archived: a commit of pgcluster's own, so
    /// that the archive holds a commit after any time target up to now (recovery to a time
    /// stops only at a commit; on an idle cluster it would reach the archive's end first and
    /// fail). Local to the primary (`synchronous_commit = local`): a cluster whose standbys
    /// are away does not hold it. Returns the primary's WAL position after it.
    func markEnd(on primary: NodeSpec, _ credentials: Credentials) async throws(ClusterError) -> LSN? {
        let ops = ServerOps(spec: source.spec, credentials: credentials, templates: target.renderer.templates)
        let result = try await ops.execute(
            primary,
            [
                "BEGIN", "SET LOCAL synchronous_commit TO local", "SELECT pg_current_xact_id()", "COMMIT",
                "SELECT pg_current_wal_lsn()",
            ])
        return result.rows.first?.first.flatMap { $0 }.flatMap(LSN.init)
    }

    /// Without the source's passwords, the restored primary is asked over its own socket on
    /// its host, as the server's OS user (pg_hba.conf's `local … peer` line for the
    /// superuser), so no password is needed: psql with these arguments.
    func socketPsql(_ primary: NodeSpec, _ credentials: Credentials) -> [String] {
        [
            target.binary("psql"), "-X", "-q", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1", "-h", target.layout.socketDir(primary.name),
            "-p", String(primary.port), "-U", credentials.superuser.user, "-d", "postgres",
        ]
    }

    /// Adopting is refused before anything is written where it cannot work: from a repository
    /// host (the cluster's ssh key for it went with local.dir), or with a superuser that the
    /// peer line cannot admit (it admits the server's OS user as the role of the same name
    /// only; pgBackRest connects the same way).
    func checkAdoptable() throws(ClusterError) {
        if source.remote {
            throw ClusterError(
                "restore from \(source.spec.name)'s repository host (\(source.place)) needs its local.dir, which is gone "
                    + "(no \(LocalLayout(spec: source.spec).credentialsFile)): the cluster's ssh key for that host went with it; nothing was made",
                details: [
                    "a cluster whose local.dir is gone is restored by pgcluster from a repository folder on this machine only; "
                        + "on \(source.settings.repoHost ?? "the repository host"), `pgbackrest restore` restores it by hand"
                ])
        }
        let superuser = target.spec.superuser.user
        guard superuser != target.serverUserName else { return }
        throw ClusterError(
            "\(source.spec.name)'s passwords are not here (\(LocalLayout(spec: source.spec).credentialsFile) is missing), and the restored "
                + "roles get new ones over the server's socket as its OS user '\(target.serverUserName)', which pg_hba.conf admits as role "
                + "'\(target.serverUserName)' only, not the superuser '\(superuser)' of \(target.spec.file); nothing was written",
            details: [
                "put \(source.spec.name)'s credentials.json back in \(source.spec.local.dir) and restore again"
            ])
    }

    /// Adopting: waits until the restored primary has left recovery (asked over its socket).
    func waitForPromotionOverSocket(_ primary: NodeSpec, _ credentials: Credentials) async throws(ClusterError) {
        let host = target.host(primary)
        let psql = socketPsql(primary, credentials)
        let deadline = ContinuousClock.now + .seconds(recoveryTimeout)
        while true {
            let asked = try await host.run(psql + ["-c", "SELECT pg_is_in_recovery()"])
            // (The answer is the last line: psql may warn first, such as that it cannot enter the working folder.)
            if asked.succeeded, asked.output.split(whereSeparator: \.isNewline).last == "f" { return }
            if asked.status == 127 { throw ClusterError("\(primary.name): \(psql[0]) is missing on \(host.label)") }
            if asked.output.contains("authentication failed") {
                throw ClusterError(
                    "\(primary.name): the restored server does not let the server's OS user '\(target.serverUserName)' in as "
                        + "\(credentials.superuser.user) over its socket (\(asked.output.trimmingCharacters(in: .whitespacesAndNewlines))), "
                        + "so its roles cannot be given new passwords",
                    details: ["put \(source.spec.name)'s credentials.json back in \(source.spec.local.dir) and restore again"])
            }
            if let failed = await gaveUp(primary, deadline: deadline) { throw failed }
            try? await Task.sleep(for: .milliseconds(200))
        }
    }

    /// The spec's application role on the restored primary, with the login in `credentials`
    /// (a new one when they have none for it): its password set, the role made when the
    /// backup has none, and its database made when missing, as `init` makes them.
    func ensureAppRole(_ app: AppSettings, on primary: NodeSpec, _ credentials: inout Credentials) async throws(ClusterError) {
        let login = credentials.app.flatMap { $0.user == app.user ? $0 : nil } ?? Credentials.Login.resolve(user: app.user, given: nil, stored: nil)
        // (A generated password: the cheap secret, as every generated one.)
        guard let secret = SCRAMSecret.make(password: login.password) else { throw ClusterError("cannot make the SCRAM secret of \(app.user)'s password") }
        let ops = ServerOps(spec: target.spec, credentials: credentials, templates: target.renderer.templates)
        let user = ConfigText.sqlLiteral(app.user), role = ConfigText.identifier(app.user)
        let roles = try await ops.execute(primary, ["SELECT count(*) FROM pg_roles WHERE rolname = \(user)"])
        let verb = roles.scalar == "0" ? "CREATE" : "ALTER"
        try await ops.execute(
            primary,
            [
                "SET log_statement TO none", "SET log_min_error_statement TO panic", "SET synchronous_commit TO local",
                "\(verb) ROLE \(role) WITH LOGIN PASSWORD \(ConfigText.sqlLiteral(secret))",
            ])
        let databases = try await ops.execute(primary, ["SELECT count(*) FROM pg_database WHERE datname = \(ConfigText.sqlLiteral(app.database))"])
        if databases.scalar == "0" {
            try await ops.execute(primary, ["SET synchronous_commit TO local", "CREATE DATABASE \(ConfigText.identifier(app.database)) OWNER \(role)"])
        }
        credentials.app = login
        Console.progress("[\(primary.name)] application role \(app.user) " + (verb == "CREATE" ? "made" : "given a new password"))
    }

    /// While the restored primary recovers: the error to stop with when its server has
    /// ended or `deadline` has passed, with its log; nil while it may still get there.
    func gaveUp(_ primary: NodeSpec, deadline: ContinuousClock.Instant) async -> ClusterError? {
        guard await !target.postmasterRuns(primary) || ContinuousClock.now > deadline else { return nil }
        return ClusterError(
            "\(primary.name): the restored server did not reach the target \(to) and was not promoted",
            details: (await target.serverLog(primary, lines: 12)).map { "log | " + $0 }
                + ["a target later than the archive's end cannot be reached: see `pgcluster backups`"])
    }

    /// Adopting, once the restored primary is promoted: its superuser and replication role
    /// get the new cluster's passwords (the application role follows over TCP,
    /// ``ensureAppRole(_:on:_:)``). The SCRAM secrets are made here (libpq's for a password
    /// that is not plain ASCII): no password reaches the server, its log, or a message.
    func adoptRoles(_ primary: NodeSpec, _ credentials: Credentials) async throws(ClusterError) {
        // Nothing of this session in the server's log, whatever its logging settings; and
        // no wait for the quorum of standbys not cloned yet.
        var statements = [
            "SET log_statement TO none", "SET log_min_duration_statement TO -1", "SET log_min_error_statement TO panic",
            "SET synchronous_commit TO local",
        ]
        func secret(_ login: Credentials.Login) throws(ClusterError) -> String {
            // A password given in the spec keeps PostgreSQL's default iterations.
            guard
                let made = SCRAMSecret.make(password: login.password, iterations: login.generated ? SCRAMSecret.generatedIterations : 4096)
                    ?? PGConnection.offlineScramVerifier(user: login.user, password: login.password)
            else { throw ClusterError("cannot make the SCRAM secret of \(login.user)'s password") }
            return made
        }
        for login in [credentials.superuser, credentials.replication] {
            statements.append("ALTER ROLE \(ConfigText.identifier(login.user)) PASSWORD \(ConfigText.sqlLiteral(try secret(login)))")
        }
        let set = try await target.host(primary).run(
            socketPsql(primary, credentials), input: Data(statements.map { $0 + ";\n" }.joined().utf8))
        guard set.succeeded else {
            // psql's error line only: its context would quote the statement, secret and all.
            let error = set.output.split(whereSeparator: \.isNewline).first { $0.contains("ERROR") || $0.contains("FATAL") }
            throw ClusterError(
                "\(primary.name): giving the restored roles \(target.spec.name)'s passwords failed: "
                    + (error.map(String.init) ?? "psql exit \(set.status)"))
        }
        Console.progress("[\(primary.name)] promoted; its roles have \(target.spec.name)'s passwords")
    }

    /// Waits until the restored primary has left recovery, then forgets the recovery
    /// settings pgBackRest gave it: standbys cloned from it would otherwise stop at the
    /// same target, and read the old cluster's archive.
    func waitForPromotion(_ primary: NodeSpec, _ credentials: Credentials) async throws(ClusterError) {
        let ops = ServerOps(spec: target.spec, credentials: credentials, templates: target.renderer.templates)
        let deadline = ContinuousClock.now + .seconds(recoveryTimeout)
        while true {
            let observation = await Observer(credentials: credentials).observe(primary)
            if observation.isPrimary { break }
            if let error = observation.error, error.contains("authentication failed") {
                throw ClusterError(
                    "\(primary.name): the restored server does not accept \(source.spec.name)'s roles (\(error)): "
                        + "the backup is of another cluster's database",
                    details: ["check that backup.repo of \(source.spec.file) holds this cluster's backups: pgcluster backups"])
            }
            if let failed = await gaveUp(primary, deadline: deadline) { throw failed }
            try? await Task.sleep(for: .milliseconds(200))
        }
        let settings = [
            "restore_command", "recovery_target", "recovery_target_time", "recovery_target_lsn", "recovery_target_xid",
            "recovery_target_name", "recovery_target_action", "recovery_target_inclusive", "recovery_target_timeline",
        ]
        try await ops.execute(primary, settings.map { "ALTER SYSTEM RESET \($0)" } + ["SELECT pg_reload_conf()"])
        // Recovery settings are read at start only: a restart clears them from pg_settings
        // too, so nothing reports a pending restart.
        try await target.stop(primary, mode: .fast)
        try await target.start(primary)
        // A backup carries no replication slots.
        try await ops.ensureSlots(on: primary, for: target.spec.standbys)
    }
}
