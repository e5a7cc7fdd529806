import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

extension TestCluster {
    /// Adds `backup: {repo: ./repo}` (a repository in the test's own folder) to the spec.
    func enableBackup(repo: String = "./repo") throws {
        let yaml = try String(contentsOfFile: specPath, encoding: .utf8)
        try yaml.replacingOccurrences(of: "\nnodes:\n", with: "\nbackup:\n  repo: \(repo)\nnodes:\n")
            .write(toFile: specPath, atomically: true, encoding: .utf8)
    }

    /// `pgbackrest check` with the cluster's rendered configuration, as the server's OS
    /// user: the live primary's archive_command works and WAL reaches the repository.
    func pgbackrestCheck() -> RunResult {
        let user = OSUser.named("postgres")!
        return TestCluster.spawnWithFiles(
            ["/usr/bin/setpriv", "--reuid=\(user.uid)", "--regid=\(user.gid)", "--init-groups", "--", "/usr/bin/env", "-C", "/", "--",
             "/usr/bin/pgbackrest", "--config=\(dataRoot)/pgbackrest.conf", "--stanza=\(name)", "check"],
            timeout: 120)
    }

    /// Whether `standby` streams from `primary` (its row in the primary's pg_stat_replication).
    func streams(_ standby: String, from primary: String) throws -> Bool {
        try sql(primary, "SELECT state FROM pg_stat_replication WHERE application_name = '\(standby)'").scalar == "streaming"
    }

    /// Inserts ids `range` into table t on the primary `node`, one transaction each.
    func insert(_ node: String, _ range: ClosedRange<Int>) throws {
        let connection = try connect(node)
        defer { connection.close() }
        try connection.query("CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY)")
        for id in range { try connection.query("INSERT INTO t VALUES (\(id))") }
    }

    func ids(_ node: String) throws -> [Int] {
        try sql(node, "SELECT id FROM t ORDER BY id").rows.compactMap { $0[0].flatMap { Int($0) } }
    }

    /// The node that answers as primary.
    func currentPrimary() -> String? {
        nodeNames.first { node in (try? sql(node, "SELECT pg_is_in_recovery()").scalar) == "f" }
    }
}

/// Ports 22420-22499 (22400-22419 are HAProxy's frontends in HealthEndpointTests).
@Suite("backups and point-in-time recovery on real servers (pgBackRest)", .serialized, .clusterLimit)
struct BackupTests {
    @Test("the archive keeps working across switchover and failover; restore to an LSN and to a time gives exactly the rows before it; the restored cluster takes quorum, fails over losing nothing and rejoins; destroyed, the cluster comes back from its backups with every row")
    func archiveAcrossRoleChangesAndRestore() async throws {
        try await withCluster(name: "bk-src", basePort: 22470, synchronous: "{mode: any, count: 1}") { cluster in
            try cluster.enableBackup()
            try await cluster.initCluster()
            let backup = await cluster.run(["backup"], environment: ["PGCLUSTER_PROGRESS_INTERVAL": "0.2"])
            #expect(backup.status == 0, "\(backup.stderr)")
            #expect(backup.stdout.contains("(full) from node1") || backup.stdout.contains("(full) from node2"), "\(backup.stdout)")
            // Progress lines from pgBackRest's log, on stderr (off a terminal too).
            #expect(backup.stderr.contains("] backup: ") && backup.stderr.contains(" %)"), "no progress line: \(backup.stderr)")

            try cluster.insert("node0", 1...100)
            let switchover = await cluster.run(["switchover"])
            #expect(switchover.status == 0, "\(switchover.stderr)")
            let afterSwitchover = try #require(cluster.currentPrimary())
            #expect(afterSwitchover != "node0")
            let check1 = cluster.pgbackrestCheck()
            #expect(check1.status == 0, "pgbackrest check after switchover: \(check1.stdout)\(check1.stderr)")
            try cluster.insert(afterSwitchover, 101...200)

            try cluster.kill9Postmaster(afterSwitchover)
            let failover = await cluster.run(["failover"])
            #expect(failover.status == 0, "\(failover.stderr)")
            let afterFailover = try #require(cluster.currentPrimary())
            let check2 = cluster.pgbackrestCheck()
            #expect(check2.status == 0, "pgbackrest check after failover: \(check2.stdout)\(check2.stderr)")
            try cluster.insert(afterFailover, 201...300)
            let lsn = try #require(try cluster.sql(afterFailover, "SELECT pg_current_wal_lsn()").scalar)
            let time = try #require(
                try cluster.sql(
                    afterFailover, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'"
                ).scalar)
            try cluster.insert(afterFailover, 301...400)

            // The catalog: the backup, and archived WAL on the timelines after both role changes.
            let list = await cluster.run(["backups", "--json"])
            #expect(list.status == 0, "\(list.stderr)")
            let catalog = try JSONDecoder().decode(BackupCatalog.self, from: Data(list.stdout.utf8))
            #expect(catalog.backups.count == 1)
            #expect(catalog.walMin?.hasPrefix("00000001") == true)
            #expect(catalog.walMax?.hasPrefix("00000003") == true, "WAL range \(catalog.walMin ?? "-")..\(catalog.walMax ?? "-")")

            // Restored from the one backup, before both role changes: every row up to the
            // target came through the archive across timelines 1, 2 and 3.
            for target in [lsn, time] {
                let into = try TestCluster(name: "bk-into", basePort: 22480, standbys: 1)
                do {
                    let restore = await cluster.run(["restore", "--to", target, "--into", into.specPath, "--json"])
                    #expect(restore.status == 0, "restore --to \(target): \(restore.stderr)")
                    let ids = try into.ids("node0")
                    #expect(ids == Array(1...300), "restore --to \(target): \(ids.count) rows, \(ids.first ?? 0)..\(ids.last ?? 0)")
                    #expect(await into.eventually(30) { (try? into.ids("node1")) == Array(1...300) }, "the restored standby streams")
                    if target == lsn {
                        // A restored cluster is a cluster like any other: quorum, then a failover losing nothing.
                        let quorum = await into.run(["quorum", "--any", "1"])
                        #expect(quorum.status == 0, "quorum on the restored cluster: \(quorum.stderr)")
                        try into.insert("node0", 1001...1010)
                        try into.kill9Postmaster("node0")
                        // With its only standby promoted, commits wait under durability strict: exit 1, naming the fix.
                        let failover = await into.run(["failover"])
                        #expect(failover.status == 1, "failover on the restored cluster: \(failover.stdout)\(failover.stderr)")
                        #expect(failover.stdout.contains("pgcluster rejoin node0"), "\(failover.stdout)")
                        #expect(try into.ids("node1") == Array(1...300) + Array(1001...1010), "rows after the failover")
                        #expect(try into.sql("node1", "SELECT pg_is_in_recovery()").scalar == "f")
                        let rejoin = await into.run(["rejoin", "node0"])
                        #expect(rejoin.status == 0, "rejoin on the restored cluster: \(rejoin.stderr)")
                        #expect(await into.eventually(30) { (try? into.ids("node0")) == Array(1...300) + Array(1001...1010) })
                        let status = await into.run(["status"])
                        #expect(status.status == 0, "status after rejoin: \(status.stdout)")
                    }
                } catch {
                    await into.teardown()
                    throw error
                }
                await into.teardown()
            }
            #expect(try cluster.ids(afterFailover) == Array(1...400), "the live cluster keeps every row")

            // destroy keeps the backups and archives the last WAL first; the cluster, its
            // local.dir gone with its passwords, comes back from them under its own name.
            try cluster.insert(afterFailover, 401...450)
            let destroy = await cluster.run(["destroy", "--yes"])
            #expect(destroy.status == 0, "\(destroy.stderr)")
            #expect(destroy.stdout.contains("its backups stay in"), "\(destroy.stdout)")
            let listed = await cluster.run(["backups"])
            #expect(listed.status == 0, "backups of a destroyed cluster: \(listed.stderr)")
            #expect(!FileManager.default.fileExists(atPath: cluster.dataRoot), "backups made local.dir again")
            let status = await cluster.run(["status"])
            #expect(status.stderr.contains("restore -f \(cluster.specPath) --to latest --in-place --yes"), "status of the destroyed cluster: \(status.stderr)")
            let again = await cluster.run(["init"])
            #expect(again.status == 1 && again.stderr.contains("restore -f \(cluster.specPath) --to latest --in-place --yes"), "\(again.stderr)")
            // Refused, it leaves nothing (its lock and pgBackRest's files went with local.dir).
            #expect(!FileManager.default.fileExists(atPath: cluster.dataRoot), "the refused init left local.dir behind")
            let back = await cluster.run(["restore", "--to", "latest", "--in-place", "--yes"])
            #expect(back.status == 0, "restore of the destroyed cluster: \(back.stderr)")
            #expect(back.stderr.contains("the restored roles get new ones"), "\(back.stderr)")
            // The new passwords are local.dir's: the superuser's here, the replication role's for the standbys.
            #expect(try cluster.ids("node0") == Array(1...450), "rows after the restore of the destroyed cluster")
            #expect(await cluster.eventually(30) { (try? cluster.streams("node1", from: "node0")) == true && (try? cluster.streams("node2", from: "node0")) == true })
            let check3 = cluster.pgbackrestCheck()
            #expect(check3.status == 0, "pgbackrest check after the restore: \(check3.stdout)\(check3.stderr)")
        }
    }

    @Test("bad input is one clear line and touches nothing: a missing repository, a time before the first backup")
    func badInput() async throws {
        try await withCluster(name: "bk-bad", basePort: 22420, standbys: 1) { cluster in
            try cluster.enableBackup()
            try await cluster.initCluster()
            let into = try TestCluster(name: "bk-bad-into", basePort: 22430, standbys: 1)
            defer { try? FileManager.default.removeItem(atPath: into.root) }

            // No backup yet: the stanza exists (init made it) but holds nothing.
            let early = await cluster.run(["restore", "--to", "latest", "--into", into.specPath])
            #expect(early.status == 1)
            #expect(early.stderr.contains("no backup in the repository"), "\(early.stderr)")

            // A repository emptied of the stanza (the backup makes it again: a backup makes
            // it only when `info` finds none) while the archive lock is held (as an archive-push
            // holds it while it runs, which made stanza-create fail at once): the backup waits.
            for folder in ["archive", "backup"] { try FileManager.default.removeItem(atPath: "\(cluster.root)/repo/\(folder)/\(cluster.name)") }
            let user = OSUser.named("postgres")!
            let lockFile = "\(cluster.dataRoot)/pgbackrest/lock/\(cluster.name)-archive.lock"
            let holder = "flock --nonblock \(lockFile) sh -c 'touch \(lockFile).held; sleep 5'"
            async let held = Blocking.run {
                TestCluster.spawnWithFiles(
                    ["/usr/bin/setpriv", "--reuid=\(user.uid)", "--regid=\(user.gid)", "--init-groups", "--", "/bin/sh", "-c", holder], timeout: 60)
            }
            #expect(await cluster.eventually(20) { FileManager.default.fileExists(atPath: "\(lockFile).held") })
            let backup = await cluster.run(["backup"])
            #expect(backup.status == 0, "\(backup.stderr)")
            let holderResult = await held
            #expect(holderResult.status == 0, "the lock was not held: \(holderResult.stderr)")
            #expect(FileManager.default.fileExists(atPath: "\(cluster.root)/repo/backup/\(cluster.name)/backup.info"), "no stanza after the backup")

            // A standby left without restore_command (as a failover or switchover killed after
            // its freeze leaves it): status says so and names the fix; rejoin gives it back.
            _ = try cluster.sql("node1", "ALTER SYSTEM SET restore_command = ''")
            _ = try cluster.sql("node1", "SELECT pg_reload_conf()")
            #expect(await cluster.eventually { try cluster.sql("node1", "SHOW restore_command").scalar == "" })
            let left = await cluster.run(["status"])
            #expect(left.stdout.contains("node1 runs without restore_command") && left.stdout.contains("pgcluster rejoin node1"), "\(left.stdout)")
            let given = await cluster.run(["rejoin", "node1"])
            #expect(given.status == 0 && given.stdout.contains("restore_command given back"), "\(given.stdout)\(given.stderr)")
            #expect(await cluster.eventually { try cluster.sql("node1", "SHOW restore_command").scalar?.contains("archive-get") == true })
            #expect(!(await cluster.run(["status"])).stdout.contains("without restore_command"))
            #expect(await cluster.run(["rejoin", "node1"]).status == 2, "a second rejoin has nothing to do")

            // Archiving that fails (the repository's archive made unreadable to the server's
            // user): status warns, naming the file, and --json says so; once archive_command
            // works again, the warning goes.
            let archiveDir = "\(cluster.root)/repo/archive/\(cluster.name)"
            let mode = try #require(try FileManager.default.attributesOfItem(atPath: archiveDir)[.posixPermissions] as? Int)
            let archiver = { () async throws -> [String: Any]? in
                let nodes = try cluster.json(await cluster.run(["status", "--json"]))["nodes"] as? [[String: Any]]
                return nodes?.first { $0["name"] as? String == "node0" }?["archiver"] as? [String: Any]
            }
            // A write, then a new WAL file: the archiver is woken for the one just ended.
            let switchWAL = { () throws in
                _ = try cluster.sql("node0", "CREATE TABLE IF NOT EXISTS archived (at timestamptz DEFAULT now())")
                _ = try cluster.sql("node0", "INSERT INTO archived DEFAULT VALUES")
                _ = try cluster.sql("node0", "SELECT pg_switch_wal()")
            }
            #expect(try await archiver()?["failing"] as? Bool == false, "archiving fails before the test breaks it")
            #expect(chmod(archiveDir, 0) == 0)
            try switchWAL()
            #expect(await cluster.eventuallyAsync(30) { try await archiver()?["failing"] as? Bool == true }, "no failing archiver in status --json")
            let failing = await cluster.run(["status"])
            #expect(failing.stdout.contains("node0 fails to archive WAL") && failing.stdout.contains("archive: FAILING"), "\(failing.stdout)")
            #expect(failing.status == 0, "a failing archive is a warning, not a degraded cluster: \(failing.stdout)")
            // A backup then is refused in seconds (not after pgbackrest check's 60 s), with what the log says.
            let started = Date()
            let refusedBackup = await cluster.run(["backup"])
            #expect(refusedBackup.status == 1, "\(refusedBackup.stderr)")
            #expect(refusedBackup.stderr.contains("node0 fails to archive WAL"), "\(refusedBackup.stderr)")
            #expect(refusedBackup.stderr.contains("log | ") && refusedBackup.stderr.contains("Permission denied"), "\(refusedBackup.stderr)")
            #expect(Date().timeIntervalSince(started) < 50, "the refusal waited out pgbackrest check's archive timeout")
            #expect(chmod(archiveDir, mode_t(mode)) == 0)
            try switchWAL()
            #expect(await cluster.eventuallyAsync(60) { try await archiver()?["failing"] as? Bool == false }, "archiving did not recover")
            #expect(!(await cluster.run(["status"])).stdout.contains("fails to archive WAL"))
            let before = await cluster.run(["restore", "--to", "2000-01-01 00:00:00+00", "--into", into.specPath])
            #expect(before.status == 1)
            let lines = before.stderr.split(separator: "\n").filter { !$0.hasPrefix("[") }
            #expect(lines.count == 1 && lines[0].contains("before the end of the first backup"), "\(before.stderr)")

            // Into a spec of backend ssh: its primary's host could not read a repository that
            // is a folder here. Refused before any host is asked (the address answers nothing).
            let onHosts = try TestCluster(
                name: "bk-bad-hosts", basePort: 22432, standbys: 1,
                ssh: (block: "ssh: {user: root, dir: /var/lib/pgcluster-test, connectTimeout: 1}", hosts: ["192.0.2.1", "192.0.2.2"]))
            defer { try? FileManager.default.removeItem(atPath: onHosts.root) }
            let toHosts = await cluster.run(["restore", "--to", "latest", "--into", onHosts.specPath])
            #expect(toHosts.status == 64, "\(toHosts.stderr)")
            #expect(
                toHosts.stderr.split(separator: "\n").first?.contains("cannot read bk-bad's repository: it is a folder on this machine") == true,
                "\(toHosts.stderr)")
            #expect(!FileManager.default.fileExists(atPath: onHosts.dataRoot))

            // A spec whose repository does not exist.
            let missing = "\(cluster.root)/missing.yaml"
            try String(contentsOfFile: cluster.specPath, encoding: .utf8)
                .replacingOccurrences(of: "repo: ./repo", with: "repo: ./no-such-repo")
                .write(toFile: missing, atomically: true, encoding: .utf8)
            for arguments in [["backups"], ["restore", "--to", "latest", "--into", into.specPath]] {
                let result = await TestCluster.runBinary(arguments + ["-f", missing])
                #expect(result.status == 1)
                let lines = result.stderr.split(separator: "\n")
                #expect(lines.first?.contains("no backup repository at \(cluster.root)/no-such-repo") == true, "\(result.stderr)")
            }
            #expect(!FileManager.default.fileExists(atPath: "\(cluster.root)/no-such-repo"))
            // Nothing of the restore's target was made, and the live cluster is as it was.
            #expect(!FileManager.default.fileExists(atPath: "\(into.dataRoot)/node0"))

            // A stanza mismatch: `init --force` would make a new database, which could never
            // archive into the stanza its repository holds. Refused before --force erases
            // anything (it used to fail at stanza-create with every node rebuilt), naming
            // both ways out; the running cluster and its backups are untouched.
            // Without --force, existing data is what is refused (exit 2), not its backups.
            let plain = await cluster.run(["init"])
            #expect(plain.status == 2 && plain.stderr.contains("data already exists"), "\(plain.stderr)")
            let again = await cluster.run(["init", "--force"])
            #expect(again.status == 1, "\(again.stdout)\(again.stderr)")
            #expect(again.stderr.contains("already holds stanza bk-bad") && again.stderr.contains("no node was made"), "\(again.stderr)")
            #expect(again.stderr.contains("give backup.repo another folder") && again.stderr.contains("/repo/backup/bk-bad"), "\(again.stderr)")
            #expect(!again.stderr.contains("stopping the existing server"), "\(again.stderr)")
            let status = await cluster.run(["status"])
            #expect(status.status == 0, "\(status.stdout)")
        }
    }
    @Test("a standby away past maxSlotWalKeep (its slot invalidated) catches up from the archive on start and streams again, without a re-clone")
    func pastSlotLimit() async throws {
        try await withCluster(name: "bk-slot", basePort: 22425, standbys: 1) { cluster in
            try cluster.enableBackup()
            try cluster.editSpec { $0.replacingOccurrences(of: "\nreplication:\n", with: "\nreplication:\n  maxSlotWalKeep: 32MB\n") }
            try await cluster.initCluster()
            try cluster.insert("node0", 1...10)
            #expect(await cluster.run(["stop", "node1"]).status == 0)
            // About 100 MB of WAL while it is away: past the 32 MB the slot may keep.
            try cluster.sql("node0", "CREATE TABLE filler AS SELECT g, repeat(md5(g::text), 20) AS pad FROM generate_series(1, 150000) AS g")
            let lost = await cluster.eventually(60) {
                try cluster.sql("node0", "SELECT pg_switch_wal()")
                try cluster.sql("node0", "CHECKPOINT")
                return try cluster.sql("node0", "SELECT count(*) FROM pg_replication_slots WHERE wal_status = 'lost'").scalar == "1"
            }
            let slots = try cluster.sql("node0", "SELECT slot_name, wal_status FROM pg_replication_slots").rows
            try #require(lost, "the slot was not invalidated: \(slots)")
            try cluster.insert("node0", 11...20)

            let start = await cluster.run(["start", "node1"])
            #expect(start.status == 0, "\(start.stdout)\(start.stderr)")
            #expect(start.stderr.contains("was invalidated"), "\(start.stderr)")
            #expect(await cluster.eventually(60) { try cluster.streams("node1", from: "node0") }, "node1 does not stream again")
            #expect(await cluster.eventually(30) { (try? cluster.ids("node1")) == Array(1...20) })
            #expect(try cluster.sql("node1", "SELECT count(*) FROM filler").scalar == "150000")
            #expect(try cluster.sql("node0", "SELECT wal_status FROM pg_replication_slots").scalar != "lost")
        }
    }

    @Test("backup.standbysFrom: repository: with no backup yet a standby is cloned from the primary; after one, a new copy of it comes from the repository, catches up from the archive and streams")
    func standbyFromRepository() async throws {
        try await withCluster(name: "bk-from", basePort: 22436, standbys: 1) { cluster in
            try cluster.enableBackup()
            try cluster.editSpec { $0.replacingOccurrences(of: "\n  repo: ./repo\n", with: "\n  repo: ./repo\n  standbysFrom: repository\n") }
            let made = await cluster.run(["init"])
            try #require(made.status == 0, "\(made.stderr)")
            #expect(made.stderr.contains("the repository holds no backup yet"), "\(made.stderr)")
            try cluster.insert("node0", 1...10)
            let backup = await cluster.run(["backup", "--type", "full"])
            try #require(backup.status == 0, "\(backup.stderr)")
            try cluster.insert("node0", 11...20)

            let again = await cluster.run(["rejoin", "node1", "--reclone"])
            #expect(again.status == 0, "\(again.stderr)")
            #expect(again.stderr.contains("from the repository (backup.standbysFrom), not cloning node0"), "\(again.stderr)")
            #expect(await cluster.eventually(60) { try cluster.streams("node1", from: "node0") }, "node1 does not stream")
            try cluster.insert("node0", 21...30)
            #expect(await cluster.eventually(30) { (try? cluster.ids("node1")) == Array(1...30) })
            #expect(await cluster.run(["status"]).status == 0)
        }
    }

    @Test("drill --restore: every row acknowledged before the noted time comes back, none written after it")
    func restoreDrill() async throws {
        try await withCluster(name: "bk-drill", basePort: 22440, standbys: 1) { cluster in
            try cluster.enableBackup()
            try await cluster.initCluster()
            let scratch = try TestCluster(name: "bk-scratch", basePort: 22450, standbys: 1)
            let drill = await cluster.run(["drill", "--restore", "--into", scratch.specPath, "--duration", "1", "--json"])
            await scratch.teardown()
            #expect(drill.status == 0, "\(drill.stdout)\(drill.stderr)")
            struct Report: Decodable {
                var expected: Int, present: Int, missing: Int, writtenAfter: Int, presentAfter: Int
            }
            let report = try JSONDecoder().decode(Report.self, from: Data(drill.stdout.utf8))
            #expect(report.expected > 0 && report.writtenAfter > 0)
            #expect(report.present == report.expected && report.missing == 0 && report.presentAfter == 0)
            // The scratch cluster is gone; the live one is healthy.
            #expect(scratch.postmasterPID("node0") == nil)
            #expect(await cluster.run(["status"]).status == 0)
        }
    }
    @Test("backup: added to a running cluster: apply turns the archive on (rolling restart) and makes the stanza, so archiving works before any backup; then backup works")
    func addedByApply() async throws {
        try await withCluster(name: "bk-apply", basePort: 22460, standbys: 1) { cluster in
            try await cluster.initCluster()
            #expect(try cluster.sql("node0", "SHOW archive_mode").scalar == "off")
            try cluster.enableBackup()
            let apply = await cluster.run(["apply"])
            #expect(apply.status == 0, "\(apply.stdout)\(apply.stderr)")
            let primary = try #require(cluster.currentPrimary())
            #expect(try cluster.sql(primary, "SHOW archive_mode").scalar == "on")
            #expect(try cluster.sql(primary, "SHOW archive_command").scalar?.contains("archive-push") == true)
            // Archiving works from the apply on, before any backup: apply made the stanza.
            let check = cluster.pgbackrestCheck()
            #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
            #expect(await cluster.eventually(30) { !(try cluster.sql(primary, "SELECT last_failed_time > coalesce(last_archived_time, '-infinity') FROM pg_stat_archiver").scalar == "t") })
            let backup = await cluster.run(["backup", "--json"])
            #expect(backup.status == 0, "\(backup.stderr)")
        }
    }
    @Test("restore --in-place: refused without --yes and for a target it could never reach; with it, the cluster's own data goes back to an LSN, standbys cloned, archive on; a later restore takes a backup on the new timeline's history; a restore that fails before its promotion puts the cluster back")
    func inPlace() async throws {
        try await withCluster(name: "bk-place", basePort: 22490, standbys: 2) { cluster in
            try cluster.enableBackup()
            try await cluster.initCluster()
            let first = await cluster.run(["backup", "--json"])
            #expect(first.status == 0, "\(first.stderr)")
            let firstLabel = try #require((try cluster.json(first)["backup"] as? [String: Any])?["label"] as? String)
            try cluster.insert("node0", 1...100)
            let lsn = try #require(try cluster.sql("node0", "SELECT pg_current_wal_lsn()").scalar)
            try cluster.insert("node0", 101...200)
            // A newer backup, which the restore to `lsn` will leave on the old timeline.
            #expect(await cluster.run(["backup"]).status == 0)

            let refused = await cluster.run(["restore", "--to", lsn, "--in-place"])
            #expect(refused.status == 2 && refused.stderr.contains("add --yes"), "\(refused.stderr)")
            #expect(try cluster.ids("node0").count == 200, "nothing was touched")

            // Targets recovery could never reach: refused before any node stops.
            let nextYear = RestoreTarget.utcText(Int64(Date().timeIntervalSince1970) + 366 * 86_400) + "+00"
            for (target, says) in [(nextYear, "is in the future"), ("FF/0", "past the end of the WAL: the primary is at")] {
                let unreachable = await cluster.run(["restore", "--to", target, "--in-place", "--yes"])
                #expect(unreachable.status == 1, "\(target): \(unreachable.stderr)")
                let lines = unreachable.stderr.split(separator: "\n").filter { !$0.hasPrefix("[") }
                #expect(lines.count == 1 && lines[0].contains(says), "\(target): \(unreachable.stderr)")
                #expect(!unreachable.stderr.contains("stopping"), "\(target): a node was stopped: \(unreachable.stderr)")
                #expect(try cluster.ids("node0").count == 200, "nothing was touched")
            }
            #expect(await cluster.run(["status"]).status == 0)

            let restore = await cluster.run(["restore", "--to", lsn, "--in-place", "--yes"])
            #expect(restore.status == 0, "\(restore.stderr)")
            #expect(try cluster.ids("node0") == Array(1...100))
            for standby in ["node1", "node2"] {
                #expect(await cluster.eventually(30) { (try? cluster.ids(standby)) == Array(1...100) }, "\(standby) streams the restored data")
                #expect(!FileManager.default.fileExists(atPath: "\(cluster.dataRoot)/\(standby)/data.before-restore"))
            }
            #expect(await cluster.run(["status"]).status == 0)
            // The restored primary archives on its new timeline into the same stanza.
            let check = cluster.pgbackrestCheck()
            #expect(check.status == 0, "\(check.stdout)\(check.stderr)")

            // The newest backup lies on the timeline the restore left: a restore to latest
            // takes the first backup, on the new timeline's history, and gets every row.
            try cluster.insert("node0", 201...210)
            // And a time after the last commit on this now quiet cluster: reached, because the
            // restore commits on the live primary before it archives the WAL (recovery to a
            // time stops at the first commit after it, and would otherwise run out of WAL).
            try await Task.sleep(for: .seconds(1.2))
            let quiet = try #require(try cluster.sql("node0", "SELECT clock_timestamp()::text").scalar)
            try await Task.sleep(for: .seconds(0.2))
            for target in ["latest", quiet] {
                let into = try TestCluster(name: "bk-place-into", basePort: 22496, standbys: 0)
                do {
                    let restored = await cluster.run(["restore", "--to", target, "--into", into.specPath, "--json"])
                    #expect(restored.status == 0, "--to \(target): \(restored.stderr)")
                    #expect(restored.stderr.contains("--set=\(firstLabel)"), "--to \(target): \(restored.stderr)")
                    #expect(try into.ids("node0") == Array(1...100) + Array(201...210), "--to \(target)")
                } catch {
                    await into.teardown()
                    throw error
                }
                await into.teardown()
            }

            // A restore that fails before its promotion (a file of the backup gone from the
            // repository): every node's own data goes back and the nodes run again.
            let backupDir = "\(cluster.root)/repo/backup/\(cluster.name)/\(firstLabel)/pg_data"
            let version = try #require(try FileManager.default.contentsOfDirectory(atPath: backupDir).first { $0.hasPrefix("PG_VERSION") })
            try FileManager.default.removeItem(atPath: "\(backupDir)/\(version)")
            let broken = await cluster.run(["restore", "--to", "latest", "--in-place", "--yes"])
            #expect(broken.status == 1, "\(broken.stderr)")
            #expect(broken.stderr.contains("nothing was changed: every node's own data is back"), "\(broken.stderr)")
            #expect(try cluster.ids("node0") == Array(1...100) + Array(201...210))
            #expect(await cluster.eventuallyAsync(30) { await cluster.run(["status"]).status == 0 }, "the cluster streams again")
            for node in cluster.nodeNames {
                #expect(!FileManager.default.fileExists(atPath: "\(cluster.dataRoot)/\(node)/data.before-restore"))
            }
        }
    }
}
