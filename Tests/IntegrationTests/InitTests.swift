import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// `pgcluster init`, `status`, `stop`, `start` and `destroy` on real PostgreSQL 15 servers.
@Suite("init and status on real servers", .serialized, .clusterLimit)
struct InitTests {
    @Test("a primary and two standbys stream, replicate rows, and report their state")
    func primaryAndTwoStandbys() async throws {
        try await withCluster(name: "init3", basePort: 21010) { cluster in
            try await cluster.initCluster()

            // The primary streams to both standbys, named by their node names.
            let replication = try cluster.sql(
                "node0", "SELECT application_name, state FROM pg_stat_replication ORDER BY application_name")
            #expect(replication.rows.map { $0[0] } == ["node1", "node2"])
            #expect(replication.rows.allSatisfy { $0[1] == "streaming" })

            // Slots, SCRAM, files: what the operator relies on.
            let slots = try cluster.sql("node0", "SELECT slot_name, active FROM pg_replication_slots ORDER BY 1")
            #expect(slots.rows.map { $0[0] } == ["pgcluster_node1", "pgcluster_node2"])
            // initdb made 4 MB WAL segments (postgres.walSegmentSize's default), and the clones have them.
            #expect(try cluster.sql("node0", "SHOW wal_segment_size").scalar == "4MB")
            #expect(try cluster.sql("node2", "SHOW wal_segment_size").scalar == "4MB")
            // Generated passwords are stored with pgcluster's cheap SCRAM secret (SCRAMSecret),
            // and every connection of this test logs in with them.
            let secrets = try cluster.sql("node0", "SELECT rolname, split_part(rolpassword, ':', 1) FROM pg_authid WHERE rolname IN ('postgres', 'replicator') ORDER BY 1")
            let cheap = "SCRAM-SHA-256$\(SCRAMSecret.generatedIterations)"
            #expect(secrets.rows.map { $0.compactMap { $0 } } == [["postgres", cheap], ["replicator", cheap]])
            let credentialMode = try FileManager.default.attributesOfItem(atPath: "\(cluster.dataRoot)/credentials.json")[.posixPermissions] as? Int
            #expect(credentialMode == 0o600)
            let dataMode = try FileManager.default.attributesOfItem(atPath: "\(cluster.dataRoot)/node1/data")[.posixPermissions] as? Int
            #expect(dataMode == 0o700)
            if OSUser.isRoot {
                let owner = try FileManager.default.attributesOfItem(atPath: "\(cluster.dataRoot)/node0/data")[.ownerAccountName] as? String
                #expect(owner == "postgres")
            }

            // A row written on the primary is read on both standbys.
            try cluster.sql("node0", "CREATE TABLE demo (id int PRIMARY KEY, note text)")
            try cluster.sql("node0", "INSERT INTO demo VALUES (1, 'written on the primary')")
            for standby in ["node1", "node2"] {
                let seen = await cluster.eventually {
                    try cluster.sql(standby, "SELECT note FROM demo WHERE id = 1").scalar == "written on the primary"
                }
                #expect(seen, "\(standby) never showed the row")
                #expect(try cluster.sql(standby, "SELECT pg_is_in_recovery()").scalar == "t")
            }

            // status --json matches what the servers say.
            let status = await cluster.run(["status", "--json"])
            #expect(status.status == 0, "status: \(status.stderr)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])
            #expect(json["name"] as? String == "init3")
            #expect(json["primary"] as? String == "node0")
            #expect(json["timeline"] as? Int == 1)
            let nodes = try #require(json["nodes"] as? [[String: Any]])
            #expect(nodes.map { $0["name"] as? String } == ["node0", "node1", "node2"])
            #expect(nodes.map { $0["role"] as? String } == ["primary", "standby", "standby"])
            let primaryLsn = try cluster.sql("node0", "SELECT pg_current_wal_lsn()::text").scalar
            for node in nodes.dropFirst() {
                #expect(node["upstream"] as? String == "node0")
                #expect(node["streaming"] as? Bool == true)
                #expect(node["syncState"] as? String == "async")
                #expect(node["port"] as? Int == cluster.port(node["name"] as! String))
                let replay = try cluster.sql(node["name"] as! String, "SELECT pg_last_wal_replay_lsn()::text").scalar
                // The standby had replayed at least what status reported (it only moves forward).
                let reported = try #require(LSN(node["replayLsn"] as? String ?? ""))
                #expect(reported <= LSN(replay ?? "")!)
                #expect(reported <= LSN(primaryLsn ?? "")!)
                for key in ["timeline", "lsn", "receiveLsn", "lagBytes"] { #expect(node[key] != nil, "missing \(key)") }
            }
            let sync = try #require(json["synchronous"] as? [String: Any])
            #expect(sync["mode"] as? String == "async")

            // A second init refuses and leaves the running cluster alone.
            let again = await cluster.run(["init"])
            #expect(again.status == 2)
            #expect(again.stderr.contains("data already exists"))
            #expect(again.stderr.contains("--force"))
            #expect(try cluster.sql("node0", "SELECT count(*) FROM demo").scalar == "1")

            // A standby that does not answer (SIGSTOPped: its port takes the connection, nothing
            // more) is "no answer", never "down": it is not proven stopped.
            let frozenPid = try #require(cluster.postmasterPID("node1"))
            kill(frozenPid, SIGSTOP)
            let silent = await cluster.run(["status"])
            let silentJSON = await cluster.run(["status", "--json"])
            kill(frozenPid, SIGCONT)
            #expect(silent.status == 1)
            let silentRow = silent.stdout.split(separator: "\n").first { $0.hasPrefix("node1") } ?? ""
            #expect(silentRow.contains("no answer") && !silentRow.contains("down"), "row: \(silentRow)")
            #expect(silentJSON.status == 1)
            let silentNodes = try #require(
                (try JSONSerialization.jsonObject(with: Data(silentJSON.stdout.utf8)) as? [String: Any])?["nodes"] as? [[String: Any]])
            let node1 = try #require(silentNodes.first { $0["name"] as? String == "node1" })
            #expect(node1["role"] as? String == "no answer")
            #expect((node1["waitedSeconds"] as? Double ?? 0) > 0)
            #expect(silentNodes.first { $0["name"] as? String == "node0" }?["role"] as? String == "primary")

            // One standby down: status says so and exits non-zero.
            let stop = await cluster.run(["stop", "node2"])
            #expect(stop.status == 0, "stop: \(stop.stderr)")
            #expect(cluster.postmasterPID("node2") == nil)
            let degraded = await cluster.run(["status"])
            #expect(degraded.status == 1)
            #expect(degraded.stdout.contains("DEGRADED"))
            let row = degraded.stdout.split(separator: "\n").first { $0.hasPrefix("node2") } ?? ""
            #expect(row.contains("down"), "row: \(row)")
            let degradedJSON = await cluster.run(["status", "--json"])
            #expect(degradedJSON.status == 1)
            #expect(degradedJSON.stdout.contains("\"role\" : \"down\""))
            // Killed outright: refused, so proven down too.
            let killedPid = try #require(cluster.postmasterPID("node1"))
            kill(killedPid, SIGKILL)
            let killed = await cluster.eventuallyAsync {
                let json = try JSONSerialization.jsonObject(with: Data(await cluster.run(["status", "--json"]).stdout.utf8))
                let nodes = (json as? [String: Any])?["nodes"] as? [[String: Any]] ?? []
                return nodes.first { $0["name"] as? String == "node1" }?["role"] as? String == "down"
            }
            #expect(killed, "a killed standby never showed as down")
            let restart1 = await cluster.run(["start", "node1"])
            #expect(restart1.status == 0, "start node1: \(restart1.stderr)")

            // Start it again: healthy, and it caught up on what it missed.
            try cluster.sql("node0", "INSERT INTO demo VALUES (2, 'while node2 was down')")
            let start = await cluster.run(["start", "node2"])
            #expect(start.status == 0, "start: \(start.stderr)")
            let caughtUp = await cluster.eventually {
                try cluster.sql("node2", "SELECT count(*) FROM demo").scalar == "2"
            }
            #expect(caughtUp)
            var healthy = false
            for _ in 0..<100 where !healthy {
                healthy = await cluster.run(["status"]).status == 0
                if !healthy { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(healthy, "status never became healthy after node2 started")

            // destroy: no process and no data left.
            let destroy = await cluster.run(["destroy", "--yes"])
            #expect(destroy.status == 0, "destroy: \(destroy.stderr)")
            #expect(cluster.runningServers().isEmpty)
            #expect(!FileManager.default.fileExists(atPath: cluster.dataRoot))
        }
    }

    @Test("render's logrotate.conf, run by logrotate itself: each node's log is rotated, and the running server writes on into the emptied file")
    func logRotation() async throws {
        let logrotate = "/usr/sbin/logrotate"
        try #require(FileManager.default.isExecutableFile(atPath: logrotate), "logrotate is not installed: run scripts/ensure-deps.sh")
        try await withCluster(name: "logrotate", basePort: 21048, standbys: 1) { cluster in
            try await cluster.initCluster()
            let out = "\(cluster.root)/rendered"
            let render = await cluster.run(["render", "--out", out])
            try #require(render.status == 0, "\(render.stderr)")
            let config = try String(contentsOfFile: "\(out)/logrotate.conf", encoding: .utf8)
            let logs = ["node0", "node1"].map { "\(cluster.dataRoot)/\($0)/postgres.log" }
            for log in logs { #expect(config.contains("\n\(log)\n"), "\(config)") }
            #expect(config.contains("copytruncate"))

            // -f: rotate now, whatever the day; its own state file.
            let rotated = TestCluster.spawnWithFiles(
                [logrotate, "-f", "-s", "\(cluster.root)/logrotate.state", "\(out)/logrotate.conf"], timeout: 60)
            #expect(rotated.status == 0, "logrotate refused the rendered config:\n\(rotated.stdout)\(rotated.stderr)")
            for log in logs {
                // The old lines went to .1 (compressed from the next rotation on: delaycompress).
                let old = (try? String(contentsOfFile: log + ".1", encoding: .utf8)) ?? ""
                #expect(old.contains("database system is ready"), "\(log).1: \(old.suffix(300))")
            }
            // The servers still write into the emptied files.
            for node in ["node0", "node1"] { try cluster.sql(node, "SELECT pg_reload_conf()") }
            for log in logs {
                let writes = await cluster.eventually {
                    try String(contentsOfFile: log, encoding: .utf8).contains("received SIGHUP")
                }
                #expect(writes, "\(log) after the rotation: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            }
        }
    }

    @Test("a clone reports its progress from the upstream's pg_stat_progress_basebackup: bytes, total, rate, an estimate; a replication password from the spec keeps PostgreSQL's SCRAM secret")
    func cloneProgress() async throws {
        // The replication password is the spec's here (a person's): PostgreSQL's own secret.
        try await withCluster(name: "progress", basePort: 21043, standbys: 1, replicationPassword: "Chosen-by-4-person") { cluster in
            try await cluster.initCluster()
            let secret = try cluster.sql("node0", "SELECT split_part(rolpassword, ':', 1) FROM pg_authid WHERE rolname = 'replicator'")
            #expect(secret.scalar == "SCRAM-SHA-256$4096")
            // About 150 MB, so that the clone lasts several of the test's 0.1 s intervals.
            try cluster.sql("node0", "CREATE TABLE filler AS SELECT g, repeat(md5(g::text), 30) AS pad FROM generate_series(1, 150000) AS g")
            let again = await cluster.run(["rejoin", "node1", "--reclone"], environment: ["PGCLUSTER_PROGRESS_INTERVAL": "0.1"])
            #expect(again.status == 0, "\(again.stderr)")
            let lines = again.stderr.split(separator: "\n").filter { $0.contains("[node1] cloning from node0: ") }
            #expect(!lines.isEmpty, "no progress line:\n\(again.stderr)")
            // Bytes of a total, a percentage and a rate.
            #expect(lines.contains { $0.contains(" MB of ") && $0.contains(" %)") && $0.contains(" MB/s") }, "\(lines)")
            #expect(try cluster.sql("node1", "SELECT count(*) FROM filler").scalar == "150000")
        }
    }

    @Test("four standbys on one host: one pg_basebackup, three copies of it; each streams through its own slot with its own settings")
    func fourStandbys() async throws {
        try await withCluster(name: "init5", basePort: 21020, standbys: 4) { cluster in
            let result = await cluster.run(["init"])
            try #require(result.status == 0, "init failed:\n\(result.stderr)")
            let lines = result.stderr.split(separator: "\n")
            #expect(lines.filter { $0.contains("pg_basebackup from node0") }.count == 1, "\(result.stderr)")
            #expect(lines.filter { $0.contains("copying node1's fresh clone (same host)") }.count == 3, "\(result.stderr)")
            let rows = try cluster.sql("node0", "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming' ORDER BY 1")
            #expect(rows.rows.map { $0[0] } == ["node1", "node2", "node3", "node4"])
            let slots = try cluster.sql("node0", "SELECT slot_name FROM pg_replication_slots WHERE active ORDER BY 1")
            #expect(slots.rows.map { $0[0] } == ["pgcluster_node1", "pgcluster_node2", "pgcluster_node3", "pgcluster_node4"])
            try cluster.sql("node0", "CREATE TABLE after_init AS SELECT 42 AS answer")
            for standby in ["node1", "node2", "node3", "node4"] {
                // Its own port and slot, not the copied node1's.
                #expect(try cluster.sql(standby, "SHOW port").scalar == String(cluster.port(standby)))
                #expect(try cluster.sql(standby, "SHOW primary_slot_name").scalar == "pgcluster_\(standby)")
                let seen = await cluster.eventually { try cluster.sql(standby, "SELECT answer FROM after_init").scalar == "42" }
                #expect(seen, "\(standby) never replayed the row written after init")
            }
            let status = await cluster.run(["status"])
            #expect(status.status == 0)
            #expect(status.stdout.split(separator: "\n").filter { $0.contains("streaming") }.count == 4)
        }
    }

    @Test("missing PostgreSQL binaries and a missing OS user: one clear line, nothing created")
    func missingBinariesAndUser() async throws {
        let root = "\(Scratch.folder)/pgcluster-it-missing-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        func spec(postgres: String = "{version: 15}", osUser: String = "postgres") throws -> String {
            let path = "\(root)/spec-\(UUID().uuidString.prefix(6)).yaml"
            try """
                name: missing
                postgres: \(postgres)
                local: {dir: ./data, osUser: \(osUser)}
                nodes:
                  - {name: node0, port: 21039, role: primary}
                """.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        let noBinaries = await TestCluster.runBinary(["init", "-f", try spec(postgres: "{bindir: /nonexistent/bin}")])
        #expect(noBinaries.status == 1)
        #expect(noBinaries.stderr.contains("PostgreSQL 15 binaries not found in /nonexistent/bin"))
        #expect(noBinaries.stderr.contains("postgres.bindir"))
        if OSUser.isRoot {
            let noUser = await TestCluster.runBinary(["init", "-f", try spec(osUser: "pgc-no-such-user")])
            #expect(noUser.status == 1)
            #expect(noUser.stderr.contains("local.osUser 'pgc-no-such-user' does not exist"))
            #expect(noUser.stderr.contains("useradd"))
        }
        #expect(!FileManager.default.fileExists(atPath: "\(root)/data"))
    }

    @Test("a busy port is refused before anything is created")
    func busyPort() async throws {
        try await withCluster(name: "busy", basePort: 21030, standbys: 1) { cluster in
            let socket = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(socket) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(21031).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            try #require(bound == 0)
            listen(socket, 1)
            let result = await cluster.run(["init"])
            #expect(result.status == 1)
            #expect(result.stderr.contains("port 21031"))
            #expect(result.stderr.contains("already in use"))
            #expect(!FileManager.default.fileExists(atPath: "\(cluster.dataRoot)/node0/data/PG_VERSION"))
        }
    }
}
