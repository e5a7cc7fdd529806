import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

extension TestCluster {
    /// A cluster of backend ssh on test hosts h1, h2, h3 (node0 on h1, ...), reached as `user`.
    static func onHosts(
        name: String, basePort: Int, synchronous: String = "{mode: any, count: 1}", user: String = "root",
        identityFile: String = TestHosts.keyFile
    ) throws -> TestCluster {
        try TestCluster(
            name: name, basePort: basePort, synchronous: synchronous,
            ssh: (
                block: "ssh: {user: \(user), identityFile: \(identityFile), dir: \(TestHosts.sshDir), connectTimeout: 2}",
                hosts: (1...3).map(TestHosts.address)
            ))
    }

    /// The node's folder on its host, as backend ssh lays it out.
    func remoteDataDir(_ node: String) -> String { "\(TestHosts.sshDir)/\(name)/\(node)/data" }
}

extension TestHosts {
    /// Whether `path` exists on `host`, asked through nsenter (works while it is cut off).
    func exists(_ host: Int, _ path: String) async -> Bool {
        await exec(host, ["/usr/bin/test", "-e", path]).status == 0
    }

    /// kill -9 of the postmaster of `dataDir` on `host`, as a crash there would.
    func kill9Postmaster(_ host: Int, dataDir: String) async throws {
        let result = await exec(host, ["/bin/sh", "-c", "kill -9 $(head -n 1 \(dataDir)/postmaster.pid)"])
        try #require(result.status == 0, "kill on h\(host): \(result.stderr)")
    }

    /// The postgres processes running on `host` (by its mount namespace's view of /proc).
    func postmasters(_ host: Int) async -> Int {
        let result = await exec(host, ["/bin/sh", "-c", "ls /var/lib/pgcluster-test/*/*/data/postmaster.pid 2>/dev/null | wc -l"])
        return Int(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }
}

/// Backend ssh on three test hosts (network namespaces with their own sshd, ssh.dir, /tmp):
/// every command as on local, each node's files on its own host only. Ports 21600-21699.
@Suite("backend ssh on three test hosts", .serialized, .clusterLimitOnTestHosts)
struct SSHBackendTests {
    @Test("init, quorum, kill -9 on its host, failover losing nothing, rejoin with pg_rewind, switchover back, destroy")
    func lifecycle() async throws {
        try await withTestHosts(count: 3) { hosts in
            let cluster = try TestCluster.onHosts(name: "sshlc", basePort: 21600)
            defer { try? FileManager.default.removeItem(atPath: cluster.root) }
            let initialised = await cluster.run(["init"])
            try #require(initialised.status == 0, "init: \(initialised.stderr)")

            // Each node's data is on its own host, and on no other (nor on this machine).
            for (i, node) in cluster.nodeNames.enumerated() {
                for host in hosts.hosts {
                    #expect(await hosts.exists(host, "\(cluster.remoteDataDir(node))/PG_VERSION") == (host == i + 1), "\(node) on h\(host)")
                }
                #expect(!FileManager.default.fileExists(atPath: cluster.remoteDataDir(node)))
            }
            #expect(try cluster.sql("node0", "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'").scalar == "2")
            #expect(await cluster.run(["status"]).status == 0)
            #expect(try cluster.sql("node0", "SHOW synchronous_standby_names").scalar == "ANY 1 (\"node1\", \"node2\")")

            let load = try await cluster.startLoad(clients: 4)
            #expect(await cluster.waitForAcks(load, atLeast: 200))
            try await hosts.kill9Postmaster(1, dataDir: cluster.remoteDataDir("node0"))
            let failover = await cluster.run(["failover", "--json"])
            #expect(failover.status == 0, "failover: \(failover.stderr)")
            let report = try cluster.json(failover)
            let primary = try #require(report["candidate"] as? String)
            let other = primary == "node1" ? "node2" : "node1"
            #expect(report["timeline"] as? Int == 2)
            #expect(await cluster.eventually { try cluster.upstreamPort(of: other) == cluster.port(primary) })
            let before = load.counts.acknowledged
            #expect(await cluster.waitForAcks(load, atLeast: before + 100), "no writes acknowledged after failover")
            let summary = await load.stop()
            let present = try cluster.presentIds(primary, summary.acknowledged)
            #expect(present.count == summary.acknowledged.count, "lost \(summary.acknowledged.count - present.count)")

            let rejoin = await cluster.run(["rejoin", "node0"])
            #expect(rejoin.status == 0, "rejoin: \(rejoin.stderr)")
            #expect(rejoin.stdout.contains("pg_rewind") || rejoin.stdout.contains("no rewind"), "\(rejoin.stdout)")
            #expect(try cluster.upstreamPort(of: "node0") == cluster.port(primary))

            let back = await cluster.run(["switchover", "--candidate", "node0"])
            #expect(back.status == 0, "switchover: \(back.stderr)")
            #expect(cluster.primaries() == ["node0"])
            #expect(await cluster.eventually { try cluster.upstreamPort(of: primary) == cluster.port("node0") })
            #expect(await cluster.run(["history"]).stdout.contains("switchover"))

            // The rest of the commands, as on local.
            #expect(await cluster.run(["quorum", "--any", "1"]).status == 0)
            #expect(await cluster.run(["stop", primary]).status == 0)
            #expect(await hosts.postmasters(primary == "node1" ? 2 : 3) == 0)
            let start = await cluster.run(["start", primary])
            #expect(start.status == 0, "start: \(start.stderr)")
            #expect(await cluster.eventually { try cluster.upstreamPort(of: primary) == cluster.port("node0") })
            let drill = await cluster.run(["drill", "--duration", "2", "--mode", "any", "--json"])
            #expect(drill.status == 0, "drill: \(drill.stderr)")
            #expect(try cluster.json(drill)["totalLost"] as? Int == 0, "\(drill.stdout)")

            // A hung primary (SIGSTOP) is fenced on its host before anything is promoted.
            let current = try #require(cluster.primaries().first)
            let index = Int(current.dropFirst(4))! + 1
            let stopped = await hosts.exec(index, ["/bin/sh", "-c", "kill -STOP $(head -n 1 \(cluster.remoteDataDir(current))/postmaster.pid)"])
            #expect(stopped.status == 0)
            let fenced = await cluster.run(["failover", "--json"])
            #expect(fenced.status == 0, "failover of a hung primary: \(fenced.stderr)")
            #expect((try cluster.json(fenced)["fenced"] as? String)?.contains("\(current): killed postmaster") == true, "\(fenced.stdout)")
            #expect(!cluster.primaries().contains(current), "the hung primary answers as a primary again")

            let destroy = await cluster.run(["destroy", "--yes"])
            #expect(destroy.status == 0, "destroy: \(destroy.stderr)")
            for host in hosts.hosts {
                #expect(await hosts.postmasters(host) == 0, "a postmaster is left on h\(host)")
                #expect(!(await hosts.exists(host, "\(TestHosts.sshDir)/\(cluster.name)")), "files left on h\(host)")
            }
        }
    }

    @Test("backups on a repository host: archive from every primary across a failover, backup from a standby, restore in place, into a cluster here and into one on other hosts to an LSN, destroy forgets the key")
    func backupsOnARepositoryHost() async throws {
        try await withTestHosts(count: 4) { hosts in
            // node0..node2 on h1..h3; the repository on h4, a host of its own.
            let cluster = try TestCluster.onHosts(name: "sshbk", basePort: 21630)
            defer { try? FileManager.default.removeItem(atPath: cluster.root) }
            let repo = "\(TestHosts.sshDir)/repo-sshbk"
            let yaml = try String(contentsOfFile: cluster.specPath, encoding: .utf8)
            try yaml.replacingOccurrences(of: "\nnodes:\n", with: "\nbackup: {repoHost: \(TestHosts.address(4)), repo: \(repo)}\nnodes:\n")
                .write(toFile: cluster.specPath, atomically: true, encoding: .utf8)
            try await cluster.initCluster()
            // The repository is on h4 only: the nodes' hosts reach it by ssh, not by a shared folder.
            #expect(await hosts.exists(4, "\(repo)/archive/sshbk"), "no stanza on h4")
            for host in 1...3 { #expect(!(await hosts.exists(host, repo)), "a repository folder on h\(host)") }
            // The WAL file a clone ends before the stanza exists failed its archive-push; init
            // woke the archiver and reset its counters once it got past it: status starts clean.
            let fresh = await cluster.run(["status", "--json"])
            let archiver = try #require(try cluster.json(fresh)["nodes"].flatMap { ($0 as? [[String: Any]])?.first }?["archiver"] as? [String: Any])
            #expect(archiver["failing"] as? Bool == false && archiver["failedCount"] as? Int == 0, "\(archiver)")
            #expect(!fresh.stderr.contains("fails to archive"), "\(fresh.stderr)")

            let full = await cluster.run(["backup"])
            #expect(full.status == 0, "backup: \(full.stderr)")
            #expect(full.stdout.contains("(full) from node1") || full.stdout.contains("(full) from node2"), "\(full.stdout)")
            try cluster.insert("node0", 1...100)

            // A failover: the new primary archives into the same stanza, on its timeline.
            try await hosts.kill9Postmaster(1, dataDir: cluster.remoteDataDir("node0"))
            let failover = await cluster.run(["failover", "--json"])
            #expect(failover.status == 0, "failover: \(failover.stderr)")
            let primary = try #require(try cluster.json(failover)["candidate"] as? String)
            // The freeze emptied restore_command on the standbys; the failover gives it back.
            for node in ["node1", "node2"] {
                #expect(try cluster.sql(node, "SHOW restore_command").scalar?.contains("archive-get") == true, "\(node): restore_command")
            }
            try cluster.insert(primary, 101...200)
            let lsn = try #require(try cluster.sql(primary, "SELECT pg_current_wal_lsn()").scalar)
            try cluster.insert(primary, 201...300)
            // The repository host cut off: the nodes carry on (the old primary is rejoined,
            // saying so), and the list of backups refuses in one line.
            try await hosts.partition(4)
            let rejoin = await cluster.run(["rejoin", "node0"])
            #expect(rejoin.status == 0, "rejoin while the repository host is cut off: \(rejoin.stderr)")
            #expect(rejoin.stderr.contains("archives into it once it answers"), "\(rejoin.stderr)")
            // It starts without restore_command (each archive-get would wait out ssh's connect
            // timeout before PostgreSQL looked in pg_wal), and has it back once it streams.
            #expect(rejoin.stderr.contains("starting without restore_command: the WAL archive does not answer"), "\(rejoin.stderr)")
            #expect(try cluster.sql("node0", "SHOW restore_command").scalar?.contains("archive-get") == true, "node0: restore_command after the rejoin")
            let cutOff = await cluster.run(["backups"])
            #expect(cutOff.status != 0 && cutOff.stderr.contains(TestHosts.address(4)), "\(cutOff.stderr)")
            try await hosts.heal(4)
            // `backup` runs `pgbackrest check` first: archive_command works on the new primary.
            let incremental = await cluster.run(["backup", "--type", "incr"])
            #expect(incremental.status == 0, "incremental backup after the failover: \(incremental.stderr)")
            let list = await cluster.run(["backups", "--json"])
            #expect(list.status == 0, "backups: \(list.stderr)")
            let backups = try #require(try cluster.json(list)["backups"] as? [[String: Any]])
            #expect(backups.map { $0["type"] as? String } == ["full", "incr"], "\(list.stdout)")
            #expect((backups.last?["walStart"] as? String)?.hasPrefix("00000002") == true, "\(list.stdout)")

            // A switchover back: its candidate, too, is promoted without waiting on the archive,
            // and reads it again afterwards.
            let back = await cluster.run(["switchover", "--candidate", "node0"])
            #expect(back.status == 0, "switchover: \(back.stderr)")
            for node in ["node0", primary] {
                #expect(try cluster.sql(node, "SHOW restore_command").scalar?.contains("archive-get") == true, "\(node): restore_command after the switchover")
            }

            // Restored in place to the LSN noted on the new timeline: the rows before it, exactly.
            let restore = await cluster.run(["restore", "--to", lsn, "--in-place", "--yes"])
            #expect(restore.status == 0, "restore: \(restore.stderr)")
            let restored = try #require(cluster.currentPrimary())
            #expect(try cluster.ids(restored) == Array(1...200))
            for standby in cluster.nodeNames where standby != restored {
                #expect(await cluster.eventually(30) { (try? cluster.ids(standby)) == Array(1...200) }, "\(standby) streams the restored data")
            }
            #expect(await cluster.run(["backup", "--type", "incr"]).status == 0, "the restored primary archives")

            // Into a cluster on this machine, to the same LSN: pgBackRest here reads h4 by ssh
            // with the cluster's key, which is gone from here once the restored primary is promoted.
            let into = try TestCluster(name: "sshbk-into", basePort: 21636, standbys: 1)
            do {
                let restoreInto = await cluster.run(["restore", "--to", lsn, "--into", into.specPath])
                #expect(restoreInto.status == 0, "restore --into from backend ssh: \(restoreInto.stderr)")
                #expect(try into.ids("node0") == Array(1...200))
                #expect(await into.eventually(30) { (try? into.ids("node1")) == Array(1...200) }, "the restored standby streams")
                #expect(!FileManager.default.fileExists(atPath: "\(into.dataRoot)/pgbackrest-reader"), "the cluster's key is left here")
                #expect(try into.sql("node0", "SHOW restore_command").scalar?.contains("pgbackrest-reader") != true)
            } catch {
                await into.teardown()
                throw error
            }
            await into.teardown()

            // Into a cluster on other hosts (backend ssh; h2 and h3, under its own name): h2's
            // pgBackRest reads h4 with the live cluster's key, removed from h2 once the restored
            // primary is promoted. The live node on h2 keeps its own connection to h4.
            let keptBefore = await hosts.exec(2, ["/bin/sh", "-c", "ls /var/lib/postgresql/.ssh/ | grep '^pgcluster-' || true"])
            let onHosts = try TestCluster(
                name: "sshbk-hosts", basePort: 21640, standbys: 1,
                ssh: (
                    block: "ssh: {user: root, identityFile: \(TestHosts.keyFile), dir: \(TestHosts.sshDir), connectTimeout: 2}",
                    hosts: [TestHosts.address(2), TestHosts.address(3)]
                ))
            do {
                let restoreOnHosts = await cluster.run(["restore", "--to", lsn, "--into", onHosts.specPath])
                #expect(restoreOnHosts.status == 0, "restore --into a spec of backend ssh: \(restoreOnHosts.stderr)")
                #expect(try onHosts.ids("node0") == Array(1...200))
                #expect(await onHosts.eventually(30) { (try? onHosts.ids("node1")) == Array(1...200) }, "the restored standby on h3 streams")
                #expect(try onHosts.sql("node0", "SHOW restore_command").scalar?.contains("pgbackrest-reader") != true)
                #expect(!(await hosts.exists(2, "\(TestHosts.sshDir)/sshbk-hosts/pgbackrest-reader")), "the cluster's key is left on h2")
                let keptAfter = await hosts.exec(2, ["/bin/sh", "-c", "ls /var/lib/postgresql/.ssh/ | grep '^pgcluster-' || true"])
                let (before, after) = (Set(keptBefore.stdout.split(separator: "\n")), Set(keptAfter.stdout.split(separator: "\n")))
                #expect(before.isSubset(of: after), "h2's kept connections to h4: \(before) before, \(after) after")
                #expect(!after.contains { $0.hasPrefix("pgcluster-reader-") }, "the reader's connection is left on h2: \(after)")
            } catch {
                await onHosts.teardown()
                throw error
            }
            await onHosts.teardown()

            let destroy = await cluster.run(["destroy", "--yes"])
            #expect(destroy.status == 0, "destroy: \(destroy.stderr)")
            for host in 1...4 {
                let keys = await hosts.exec(host, ["/bin/cat", "/var/lib/postgresql/.ssh/authorized_keys"])
                #expect(!keys.stdout.contains("pgcluster-backup@sshbk"), "the cluster's key is still admitted on h\(host)")
                // The kept ssh connection to the repository host ended with it (its socket is gone).
                let sockets = await hosts.exec(host, ["/bin/sh", "-c", "ls /var/lib/postgresql/.ssh/ | grep -c '^pgcluster-' || true"])
                #expect(sockets.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "an ssh connection is left on h\(host)")
                #expect(!(await hosts.exists(host, "\(TestHosts.sshDir)/sshbk")), "files left on h\(host)")
            }
            #expect(await hosts.exists(4, "\(repo)/backup/sshbk"), "destroy removed the backups")
        }
    }

    @Test("the primary's host cut off: failover proceeds by the quorum, says it cannot fence; healed, the old primary is rejoined")
    func partitionedPrimary() async throws {
        try await withTestHosts(count: 3) { hosts in
            let cluster = try TestCluster.onHosts(name: "sshpart", basePort: 21610)
            defer { try? FileManager.default.removeItem(atPath: cluster.root) }
            try await cluster.initCluster()
            let load = try await cluster.startLoad(clients: 4)
            #expect(await cluster.waitForAcks(load, atLeast: 200))

            // An application's connection through `pgcluster dsn`, busy on the primary when
            // its host is cut off: the reply can never come back.
            let dsn = await cluster.run(["dsn"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            let password = try cluster.credentials().superuser.password
            let application = try PGConnection.connect(conninfo: dsn, password: password)
            defer { application.close() }
            #expect(try application.query("SELECT inet_server_port()").scalar == String(cluster.port("node0")))
            let busy = Task {
                await Blocking.run(timeout: 45) { () -> String in
                    do {
                        _ = try application.query("SELECT pg_sleep(40)")
                        return "answered"
                    } catch {
                        return "\(error)"
                    }
                }
            }
            try await Task.sleep(for: .milliseconds(300))

            try await hosts.partition(1)
            let cutOff = ContinuousClock.now
            let failover = await cluster.run(["failover", "--json"])
            #expect(failover.status == 0, "failover: \(failover.stderr)")
            let report = try cluster.json(failover)
            let primary = try #require(report["candidate"] as? String)
            #expect((report["fenced"] as? String)?.contains("cannot fence") == true, "\(report["fenced"] ?? "nil")")
            try cluster.sql(primary, "INSERT INTO \(WriteLoad.table) (id, writer) VALUES (-1, -1)")

            // The dsn's TCP keepalives end that connection within about 11 s (not the kernel's
            // two hours), and the same string then lands on the new primary.
            let outcome = await busy.value
            let waited = ContinuousClock.now - cutOff
            #expect(outcome != nil && outcome != "answered", "the application's query: \(outcome ?? "still waiting after 45 s")")
            #expect(waited < .seconds(25), "the application learned of the cut-off host after \(waited)")
            let reconnected = try PGConnection.connect(conninfo: dsn, password: password)
            defer { reconnected.close() }
            #expect(try reconnected.query("SELECT inet_server_port()").scalar == String(cluster.port(primary)))

            // Healed: the old primary runs again without its standbys, which follow the new
            // one: it cannot acknowledge a commit (ANY 1). The writers' commits that hung on it
            // are cancelled by stop: they were never acknowledged.
            try await hosts.heal(1)
            let summary = await load.stop()
            let present = try cluster.presentIds(primary, summary.acknowledged)
            #expect(present.count == summary.acknowledged.count, "lost \(summary.acknowledged.count - present.count)")
            #expect(await cluster.eventually(10) { Set(cluster.primaries()) == Set(["node0", primary]) })
            let refused = await cluster.run(["rejoin", "node0"])
            #expect(refused.status == 2, "\(refused.stderr)")
            let rejoin = await cluster.run(["rejoin", "node0", "--force"])
            #expect(rejoin.status == 0, "rejoin: \(rejoin.stderr)")
            #expect(cluster.primaries() == [primary])
            #expect(try cluster.upstreamPort(of: "node0") == cluster.port(primary))
            _ = await cluster.run(["destroy", "--yes"])
        }
    }

    @Test("an unreachable host, a refused key, a missing bindir, an ssh.dir the login cannot write: one line each, nothing done")
    func unreadyHosts() async throws {
        try await withTestHosts(count: 3) { hosts in
            func refusedInit(_ cluster: TestCluster, _ expected: String, _ label: String) async {
                let result = await cluster.run(["init"])
                #expect(result.status == 1, "\(label): \(result.status) \(result.stderr)")
                #expect(result.stderr.contains(expected), "\(label): \(result.stderr)")
                for host in hosts.hosts {
                    #expect(!(await hosts.exists(host, "\(TestHosts.sshDir)/\(cluster.name)")), "\(label): h\(host) was touched")
                }
            }

            let cut = try TestCluster.onHosts(name: "sshcut", basePort: 21620)
            try await hosts.partition(3)
            await refusedInit(cut, "host 10.213.7.13 is unreachable by ssh", "unreachable")
            try await hosts.heal(3)

            let otherKey = "\(cut.root)/other_key"
            _ = TestCluster.spawnWithFiles(["/usr/bin/ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", otherKey], timeout: 30)
            let wrongKey = try TestCluster.onHosts(name: "sshkey", basePort: 21620, identityFile: otherKey)
            await refusedInit(wrongKey, "refused the key \(otherKey)", "refused key")

            _ = await hosts.exec(2, ["/bin/sh", "-c", "mkdir -p /tmp/empty && mount --bind /tmp/empty /usr/lib/postgresql/15/bin"])
            let noBin = try TestCluster.onHosts(name: "sshbin", basePort: 21620)
            await refusedInit(noBin, "host 10.213.7.12: PostgreSQL's programs are not in /usr/lib/postgresql/15/bin", "bindir")
            _ = await hosts.exec(2, ["/bin/umount", "/usr/lib/postgresql/15/bin"])

            _ = await hosts.exec(1, ["/bin/sh", "-c", "chown root:root \(TestHosts.sshDir) && chmod 0755 \(TestHosts.sshDir)"])
            let readOnly = try TestCluster.onHosts(name: "sshro", basePort: 21620, user: "postgres")
            await refusedInit(readOnly, "host 10.213.7.11: postgres cannot create \(TestHosts.sshDir)/sshro", "ssh.dir")
            for cluster in [cut, wrongKey, noBin, readOnly] { try? FileManager.default.removeItem(atPath: cluster.root) }
        }
    }
}
