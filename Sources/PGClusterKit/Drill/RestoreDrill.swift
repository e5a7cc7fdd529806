import Foundation

/// `pgcluster drill --restore --into SCRATCH`: proves point-in-time recovery. Writers run
/// under ANY 1 while a backup is taken; they stop, the primary's clock is noted, a second
/// set of writers (ids of their own) runs; the cluster is then restored to the noted time
/// into the scratch spec. Every row acknowledged before the time must be there, and no row
/// of the second writers. The scratch cluster is destroyed afterwards.
public struct RestoreDrill: Sendable {
    public let cluster: HostCluster
    public let scratch: HostCluster
    public let credentials: Credentials
    public var clients: Int
    /// Seconds each phase of writing lasts.
    public var duration: Double

    public init(cluster: HostCluster, scratch: HostCluster, credentials: Credentials, clients: Int, duration: Double) {
        self.cluster = cluster
        self.scratch = scratch
        self.credentials = credentials
        self.clients = clients
        self.duration = duration
    }

    public struct Report: Sendable, Encodable {
        public var backup: String
        /// The noted time, as given to `restore --to`.
        public var target: String
        /// Acknowledged before the time: all must be in the restored cluster.
        public var expected: Int
        public var present: Int
        public var missing: Int
        public var missingIds: [Int64]
        /// Written after the time (acknowledged or not): none may be in the restored cluster.
        public var writtenAfter: Int
        public var presentAfter: Int
        public var presentAfterIds: [Int64]
        public var restoreSeconds: Double

        public var exact: Bool { missing == 0 && presentAfter == 0 }

        public var text: String {
            var lines = [
                "restore drill: backup \(backup), restored to \(target) in " + String(format: "%.1f s", restoreSeconds),
                "rows acknowledged before the target: \(expected); present after the restore: \(present); missing: \(missing)",
                "rows written after the target: \(writtenAfter); present after the restore (must be 0): \(presentAfter)",
            ]
            if !missingIds.isEmpty { lines.append("missing ids: \(missingIds.prefix(20).map(String.init).joined(separator: ", "))") }
            if !presentAfterIds.isEmpty {
                lines.append("ids after the target that came back: \(presentAfterIds.prefix(20).map(String.init).joined(separator: ", "))")
            }
            lines.append(exact ? "exact: the restore holds every row before the target and none after" : "NOT EXACT")
            return lines.joined(separator: "\n")
        }
    }

    public func run() async throws(ClusterError) -> Report {
        let spec = cluster.spec
        var drill = Drill(
            cluster: cluster, credentials: credentials, clients: clients, duration: duration, mode: .any(1), victim: .primary,
            rounds: 1)
        drill.keepTable = true
        let primary = try await drill.prepare()
        let conninfo = drill.connectionString()
        do {
            try WriteLoad.prepare(conninfo: conninfo, password: credentials.superuser.password)
        } catch {
            throw ClusterError("\(primary.name): cannot create \(WriteLoad.table): \(error)")
        }
        let ops = ServerOps(spec: spec, credentials: credentials, templates: cluster.renderer.templates)
        try await ops.execute(primary, ["TRUNCATE \(WriteLoad.table)"])

        Console.progress("restore drill: \(clients) writers under ANY 1, a full backup meanwhile")
        let before = WriteLoad(conninfo: conninfo, password: credentials.superuser.password, clients: clients)
        before.start()
        do {
            _ = try await ClusterBackup(cluster: cluster, credentials: credentials, kind: .full).run()
        } catch {
            _ = await before.stop()
            throw error
        }
        try? await Task.sleep(for: .seconds(duration))
        let acknowledged = await before.stop().acknowledged
        let noted = try await ops.execute(
            primary, ["SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'"]
        ).scalar ?? ""
        guard let target = RestoreTarget(noted) else { throw ClusterError("\(primary.name): cannot read its clock ('\(noted)')") }
        Console.progress("restore drill: \(acknowledged.count) rows acknowledged; time noted: \(target); writing more")
        let after = WriteLoad(
            conninfo: conninfo, password: credentials.superuser.password, clients: clients, firstWriter: 1 << 16)
        after.start()
        try? await Task.sleep(for: .seconds(duration))
        _ = await after.stop()
        let afterIds = try await ops.execute(primary, ["SELECT id FROM \(WriteLoad.table) WHERE writer >= \(1 << 16)"])
            .rows.compactMap { $0[0].flatMap { Int64($0) } }

        let clock = ContinuousClock()
        let began = clock.now
        let restore = try ClusterRestore(source: cluster, target: scratch, to: target)
        let restored = try await restore.run()
        let seconds = (clock.now - began).seconds
        // The same roles, but the scratch cluster's own CA.
        let scratchOps = ServerOps(
            spec: scratch.spec, credentials: try Credentials.stored(spec: scratch.spec), templates: scratch.renderer.templates)
        let rows = try await scratchOps.execute(scratch.spec.primary, ["SELECT id FROM \(WriteLoad.table)"], timeout: 60)
        let present = Set(rows.rows.compactMap { $0[0].flatMap { Int64($0) } })
        Console.progress("restore drill: destroying the scratch cluster \(scratch.spec.name)")
        _ = try? await ClusterDestroy(cluster: scratch).run()
        try? await drill.dropTable()

        let missing = acknowledged.filter { !present.contains($0) }.sorted()
        let back = afterIds.filter { present.contains($0) }.sorted()
        return Report(
            backup: restored.backup, target: target.description, expected: acknowledged.count,
            present: acknowledged.count - missing.count, missing: missing.count, missingIds: missing,
            writtenAfter: afterIds.count, presentAfter: back.count, presentAfterIds: back, restoreSeconds: seconds)
    }
}
