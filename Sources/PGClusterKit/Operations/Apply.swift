import Foundation

/// `pgcluster apply`: looks at the live cluster, and carries an ``ApplyPlan`` out step by
/// step, each timed. A step that fails stops it: the error says what was done and what is
/// left, and `apply` run again plans from what is then live.
public struct Apply: Sendable {
    /// The desired state: the edited spec.
    public let spec: ClusterSpec
    public let credentials: Credentials
    /// The server-side steps of settings and restarts, on every backend.
    public let cluster: any ServerControl
    /// Adding and removing nodes: backends local and ssh (``ApplyPlan`` refuses them on compose).
    let hosts: HostCluster?
    public let ops: ServerOps
    /// The restart steps, shared with `pgcluster restart`.
    let restarter: RollingRestarter

    public init(spec: ClusterSpec, credentials: Credentials, templates: TemplateSet = .embedded) throws(ClusterError) {
        self.spec = spec
        self.credentials = credentials
        if spec.backend == .compose {
            cluster = ComposeCluster(spec: spec, templates: templates)
            hosts = nil
        } else {
            let hosts = try HostCluster(spec: spec, templates: templates)
            cluster = hosts
            self.hosts = hosts
        }
        self.ops = ServerOps(spec: spec, credentials: credentials, templates: templates)
        self.restarter = RollingRestarter(cluster: cluster, credentials: credentials)
    }

    /// The host cluster, for the steps only backends local and ssh take.
    func hostCluster(for step: String) throws(ClusterError) -> HostCluster {
        guard let hosts else {
            throw ClusterError("\(step): apply adds and removes nodes on backends local and ssh, not compose", exitCode: .refused)
        }
        return hosts
    }

    public struct Report: Sendable, Encodable {
        public var plan: ApplyPlan
        public var primary: String
        public var steps: [StepTimer.Step]
        public var totalSeconds: Double

        public var text: String {
            (["apply done in \(String(format: "%.3f", totalSeconds)) s; the primary is \(primary)", "steps:"]
                + steps.map(\.line)).joined(separator: "\n")
        }
    }

    /// The recorded nodes that the spec no longer has: where they live comes from the record.
    func formerNodes(_ recorded: ClusterState?) -> [NodeSpec] {
        (recorded?.nodes ?? []).filter { spec.node(named: $0.name) == nil }.map(\.node)
    }

    /// The spec with the former nodes added, so the server-side steps can reach them.
    func clusterWithFormer(_ former: [NodeSpec]) throws(ClusterError) -> HostCluster {
        var wider = spec
        wider.nodes += former
        return try HostCluster(spec: wider, templates: cluster.renderer.templates)
    }

    /// Where to ask whether nodes that do not answer have data: with the former nodes on
    /// backends local and ssh.
    func dataCheck(_ former: [NodeSpec]) throws(ClusterError) -> any ServerControl {
        hosts == nil ? cluster : try clusterWithFormer(former)
    }

    /// Observes every node the spec or the record knows, reads each answering node's
    /// pg_settings, and asks the hosts of those that do not answer whether they have data.
    public func gather() async throws(ClusterError) -> ApplyFacts {
        try await cluster.checkMajorVersion(spec.nodes)
        let recorded = try await ClusterRecord.load(spec: spec)
        let former = formerNodes(recorded)
        let observations = await Observer(credentials: credentials).observeAll(spec.nodes + former)
        let answering = observations.filter(\.reachable).map(\.node)
        let settings = await parallelResults(answering) { node throws(ClusterError) in
            try await self.liveSettings(node)
        }
        // The parameters as PostgreSQL reads them, on a node that answers, before any plan.
        if let checked = answering.first(where: { spec.node(named: $0.name) != nil }), let hosts {
            try await hosts.checkParameters(checked)
        }
        // A repository whose stanza belongs to another database system, before any plan.
        if spec.backup != nil, let hosts, let live = observations.first(where: { $0.reachable && $0.isPrimary }) {
            let repository = try BackupRepository(cluster: hosts)
            try await repository.refuseForeignStanza(
                system: { await repository.systemIdentifier(of: live.node, credentials: credentials) }, what: "\(live.node.name)'s")
        }
        var facts = ApplyFacts(observations: observations, recorded: recorded)
        try facts.render(spec)
        for (node, result) in settings {
            switch result {
            case .success(let rows): facts.settings[node.name] = rows
            case .failure(let error): throw error
            }
        }
        let wider = try dataCheck(former)
        for observation in observations where !observation.reachable {
            if await wider.hasData(observation.node) { facts.hasData.insert(observation.node.name) }
        }
        return facts
    }

    func liveSettings(_ node: NodeSpec) async throws(ClusterError) -> [LiveSetting] {
        let rows = try await ops.execute(
            node, ["SELECT name, setting, unit, vartype, context, sourcefile, pending_restart FROM pg_settings"], timeout: 5)
        return rows.rows.map { row in
            LiveSetting(
                name: row[0] ?? "", setting: row[1] ?? "", unit: row[2], vartype: row[3] ?? "string", context: row[4] ?? "",
                sourcefile: row[5], pendingRestart: row[6] == "t")
        }
    }

    /// Carries the plan out, one step at a time.
    public func execute(_ plan: ApplyPlan) async throws(ClusterError) -> Report {
        var timer = StepTimer()
        var primary = spec.node(named: plan.primary)!
        for (index, step) in plan.steps.enumerated() {
            Console.progress("[apply] step \(index + 1)/\(plan.steps.count): \(step.text)")
            do throws(ClusterError) {
                let outcome = try await perform(step, plan: plan, primary: primary)
                if let newPrimary = outcome { primary = newPrimary }
                timer.lap("\(index + 1). " + step.text)
            } catch {
                let done = plan.steps.prefix(index).map { "done: " + $0.text }
                let left = plan.steps.dropFirst(index).map { "left: " + $0.text }
                throw ClusterError(
                    "apply stopped at step \(index + 1) of \(plan.steps.count) (\(step.text)): \(error.message)",
                    exitCode: error.exitCode,
                    details: error.details + done + left
                        + ["fix what is named above, then run pgcluster apply again: it plans afresh from the live cluster"])
            }
        }
        if spec.backup != nil, !plan.steps.isEmpty, let hosts {
            try await ensureStanza(hosts, primary: primary)
            timer.lap("the pgBackRest stanza is there")
        }
        return Report(plan: plan, primary: primary.name, steps: timer.steps, totalSeconds: timer.total)
    }

    /// With `backup:` just added, the nodes archive from their restart on, into a stanza that
    /// `init` or the first `backup` makes: until then every archive-push failed and the WAL
    /// piled up in pg_wal. So after steps the stanza is made when the repository lists none
    /// (`info`, a fraction of a second), and the primary's archiver is woken
    /// (``ServerOps/wakeArchiver(_:)``).
    func ensureStanza(_ hosts: HostCluster, primary: NodeSpec) async throws(ClusterError) {
        try await BackupRepository(cluster: hosts).prepareForBackup()
        await ops.wakeArchiver(primary)
    }

    /// One step; returns the new primary when the step changed it.
    func perform(_ step: ApplyStep, plan: ApplyPlan, primary: NodeSpec) async throws(ClusterError) -> NodeSpec? {
        switch step {
        case .addNode(let name, _):
            try await add(spec.node(named: name)!, from: primary)
        case .synchronous(let mode, let standbys, _):
            try await QuorumChange(credentials: credentials, primary: primary, mode: mode, standbys: standbys, intent: spec).apply()
            try await ClusterRecord.saveSynchronous(
                spec: spec, primary: primary.name, mode: mode, standbys: plan.restriction, applied: (mode, standbys))
        case .removeNode(let name, _):
            try await remove(name, primary: primary)
        case .reload(let names):
            for name in names { try await reload(spec.node(named: name)!, primary: primary) }
        case .restartStandby(let name):
            try await restarter.restartStandby(spec.node(named: name)!, primary: primary, onlyIfPending: true)
        case .restartPrimary(let name, let how):
            let node = spec.node(named: name)!
            let after = try await restarter.restartPrimary(node, how: how, onlyIfPending: true)
            if after != node { return after }
        }
        return nil
    }

    /// A new standby: slot first (so the primary keeps its WAL), a copy, started, streaming.
    /// Data left by an add that did not finish is removed first (never while a server runs on it).
    func add(_ node: NodeSpec, from primary: NodeSpec) async throws(ClusterError) {
        let cluster = try hostCluster(for: "add \(node.name)")
        if await cluster.postmasterRuns(node) {
            throw ClusterError(
                "\(node.name): a server runs on its data folder but does not answer as a member of the cluster",
                details: ["stop it (pgcluster stop \(node.name)), then apply again"])
        }
        if await cluster.hasData(node) {
            Console.progress("[\(node.name)] removing the data an unfinished add left")
            try await cluster.removeNodeFiles(node)
        }
        try await cluster.writePassfile(credentials)
        try await ops.ensureSlots(on: primary, for: [node])
        try await cluster.clone(node, from: primary, credentials: credentials, progress: false)
        try await restarter.startStandby(node, primary: primary)
        var members = try await ClusterRecord.members(spec: spec).filter { $0.name != node.name }
        members.append(.init(node))
        try await ClusterRecord.saveMembers(spec: spec, primary: primary.name, members: members)
    }

    /// A node that left the spec (already out of synchronous_standby_names): stopped, its
    /// slot dropped, its files removed, then forgotten.
    func remove(_ name: String, primary: NodeSpec) async throws(ClusterError) {
        _ = try hostCluster(for: "remove \(name)")
        let recorded = try await ClusterRecord.load(spec: spec)
        guard let node = formerNodes(recorded).first(where: { $0.name == name }) else { return }
        let wider = try clusterWithFormer([node])
        try await wider.stop(node, mode: .fast)
        // Its WAL sender may take a moment to end; an active slot cannot be dropped.
        let slot = ConfigText.sqlLiteral(ops.renderer.slotName(node))
        try await ops.waitFor("\(node.name)'s slot on \(primary.name) is dropped", timeout: 15) {
            try? await ops.dropSlot(on: primary, for: node)
            let left = try? await ops.execute(primary, ["SELECT count(*) FROM pg_replication_slots WHERE slot_name = \(slot)"])
            return left?.scalar == "0"
        }
        let kept = try await wider.removeNodeFiles(node)
        if !kept.isEmpty { Console.warn("\(node.name): kept files pgcluster did not create: \(kept.joined(separator: ", "))") }
        let members = try await ClusterRecord.members(spec: spec).filter { $0.name != name }
        try await ClusterRecord.saveMembers(spec: spec, primary: primary.name, members: members)
    }

    /// Places the rendered files and reloads. The files drop settings set at run time from
    /// postgresql.auto.conf: the primary's synchronous_standby_names is set again before the
    /// reload, so it never changes; a standby's upstream comes from standby.conf.
    func reload(_ node: NodeSpec, primary: NodeSpec) async throws(ClusterError) {
        let isPrimary = node.name == primary.name
        let before = try await ops.execute(
            node, ["SELECT pg_conf_load_time()::text, current_setting('synchronous_standby_names')"]
        ).rows.first ?? []
        // As rendered: the plan's order lowers the primary's values first (no floor).
        let placed = await HostCluster.$placesAsRendered.withValue(true) {
            await outcome { () async throws(ClusterError) in try await cluster.placeConfig(node, following: isPrimary ? nil : primary) }
        }
        try placed.get()
        var statements: [String] = []
        if isPrimary, before.count == 2 {
            statements.append("ALTER SYSTEM SET synchronous_standby_names = \(ConfigText.sqlLiteral(before[1] ?? ""))")
        }
        statements.append("SELECT pg_reload_conf()")
        let loadedBefore = before.first ?? nil
        let reloaded = try await ops.poll(node, after: statements, "SELECT pg_conf_load_time()::text", timeout: 10) { now in
            now.scalar != nil && now.scalar != loadedBefore
        }
        if reloaded == nil { throw ClusterError("timed out after 10 s waiting until \(node.name) reloaded its configuration") }
    }

    func confirmStreaming(_ standbys: [NodeSpec], from primary: NodeSpec) async throws(ClusterError) {
        try await restarter.confirmStreaming(standbys, from: primary)
    }
}
