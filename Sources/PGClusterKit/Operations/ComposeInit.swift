import Foundation

/// `pgcluster init` for the compose backend: render the project under
/// `local.dir/compose` with the cluster's credentials (and, with TLS, each node's
/// certificate from the cluster CA in local.dir), `docker compose up -d`, wait
/// until every standby streams, apply the synchronous mode.
public struct ComposeInit: Sendable {
    public let cluster: ComposeCluster
    public var force: Bool
    public var streamTimeout: Double = 300

    public init(cluster: ComposeCluster, force: Bool) {
        self.cluster = cluster
        self.force = force
    }

    public func run() async throws(ClusterError) {
        let spec = cluster.spec
        let layout = LocalLayout(spec: spec)
        try await cluster.checkEngine()
        if FileManager.default.fileExists(atPath: layout.credentialsFile) && !force {
            throw ClusterError.refused(
                "a cluster already exists at \(layout.root); init does not touch it. Add --force to render and start it again")
        }
        let credentials = try Credentials.resolve(spec: spec, storedAt: layout.credentialsFile)
        try credentials.save(to: layout.credentialsFile)

        let directory = ComposeCluster.defaultProjectDirectory(spec)
        let compose = ComposeRenderer(
            renderer: cluster.renderer, superuserPassword: credentials.superuser.password,
            replicationPassword: credentials.replication.password, projectDirectory: directory)
        let files = try cluster.renderer.nodeFiles() + compose.projectFiles()
            + ComposeCluster.certificates(spec: spec, projectDirectory: directory)
        try FileWriter().write(files, under: directory)
        try RenderCommand.placeWatcher(spec, outputDirectory: directory, dryRun: false)
        try ComposeProjectRecord(projectDirectory: directory).save(spec: spec)
        Console.progress("rendered the compose project in \(directory)")
        try await cluster.run(await cluster.commands().up(), what: "docker compose up")
        Console.progress("started; waiting for \(spec.standbys.count) standbys to clone and stream")

        let ops = ServerOps(spec: spec, credentials: credentials, templates: cluster.renderer.templates)
        let missing = await ops.confirmStreaming(spec.standbys, from: spec.primary, timeline: nil, timeout: streamTimeout)
        if !missing.isEmpty {
            var details: [String] = []
            for node in missing { details += await cluster.logTail(node, lines: 8).map { "\(node.name) log | " + $0 } }
            throw ClusterError(
                "standbys not streaming after \(Int(streamTimeout)) s: \(missing.map(\.name).joined(separator: ", "))",
                details: details)
        }
        // The image's initdb and primary-init.sh stored PostgreSQL's 4096-iteration secrets,
        // made from the clear passwords in .env; a generated password gets the cheap one, as
        // `init` gives it on the other backends (its logins then cost a 64th of the work).
        let secrets = [credentials.superuser, credentials.replication].compactMap(\.cheapSecretStatement)
        if !secrets.isEmpty {
            do throws(ClusterError) {
                try await ops.execute(spec.primary, secrets)
            } catch {
                throw ClusterError("\(spec.primary.name): cannot store the generated passwords' SCRAM secrets: \(error.message)")
            }
        }
        let mode = spec.replication.synchronous
        let names = spec.standbys.map(\.name)
        try await QuorumChange(credentials: credentials, primary: spec.primary, mode: mode, standbys: names, timeout: 60, intent: spec).apply()
        try await ClusterRecord.saveSynchronous(spec: spec, primary: spec.primary.name, mode: mode, standbys: nil, applied: (mode, names))
    }
}
