import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// Issue 25: the application's own role and database, and psql with verify-full. Ports 22540-22549.
@Suite("application role", .serialized, .clusterLimit)
struct AppRoleTests {
    @Test("init makes app.user (SCRAM, not a superuser) owning app.database; dsn --app gives its string without a password; psql verifies TLS")
    func appRole() async throws {
        let cluster = try TestCluster(
            name: "app-role", basePort: 22540, standbys: 1, extraNodeYAML: "app: {user: shop, database: orders}\n")
        do {
            try await cluster.initCluster()
            let credentialsPath = "\(cluster.dataRoot)/credentials.json"
            var info = stat()
            #expect(stat(credentialsPath, &info) == 0 && info.st_mode & 0o777 == 0o600)
            let app = try #require(try cluster.credentials().app, "no app login in credentials.json")
            #expect(app.user == "shop" && app.password.count == 32)

            let dsn = await cluster.run(["dsn", "--app"])
            #expect(dsn.status == 0, "\(dsn.stderr)")
            let string = dsn.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(string.contains("user=shop") && string.contains("dbname=orders"), "\(string)")
            #expect(string.contains("sslmode=verify-full") && string.contains("sslrootcert="), "\(string)")
            #expect(!string.contains("password") && !string.contains(app.password), "\(string)")
            #expect(string.contains("target_session_attrs=read-write"))
            let ro = await cluster.run(["dsn", "--app", "--ro"])
            #expect(ro.stdout.contains("target_session_attrs=prefer-standby") && ro.stdout.contains("user=shop"), "\(ro.stdout)")

            // The application connects with its own password, owns its database, is no superuser.
            let connection = try PGConnection.connect(conninfo: string, password: app.password)
            defer { connection.close() }
            try connection.query("CREATE TABLE items (id int)")
            try connection.query("INSERT INTO items VALUES (1)")
            #expect(try connection.query("SELECT current_user, current_database(), (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)").rows.first == ["shop", "orders", "f"])
            #expect(try connection.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").scalar == "t")
            #expect(try cluster.sql("node0", "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'shop'").scalar == "t")

            // psql verifies the server's certificate against the cluster CA.
            let psql = await TestCluster.runBinary(["psql", "-f", cluster.specPath, "node0", "--", "-tAc", "SELECT sslmode FROM (SELECT current_setting('ssl') AS sslmode) s"])
            #expect(psql.status == 0, "\(psql.stderr)")
            #expect(psql.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "on", "\(psql.stdout)")
            // ... and runs with SIGHUP, SIGINT, SIGQUIT and SIGTERM not blocked, so Ctrl-C cancels
            // a query (they were blocked, inherited from the runtime's thread, through execv).
            // psql replaces pgcluster in its process: the PID started is psql's.
            let errPath = "\(Scratch.folder)/pgc-test-\(UUID().uuidString).err"
            _ = FileManager.default.createFile(atPath: errPath, contents: nil)
            defer { unlink(errPath) }
            let psqlProcess = Process()
            psqlProcess.executableURL = URL(fileURLWithPath: TestCluster.binary)
            psqlProcess.arguments = ["psql", "-f", cluster.specPath, "node0", "--", "-c", "SELECT pg_sleep(120)"]
            psqlProcess.standardOutput = FileHandle.nullDevice
            psqlProcess.standardError = FileHandle(forWritingAtPath: errPath)
            try psqlProcess.run()
            defer { if psqlProcess.isRunning { kill(psqlProcess.processIdentifier, SIGKILL) } }
            let running = await cluster.eventually(60) {
                (try? cluster.sql("node0", "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(120)'").scalar) == "1"
            }
            #expect(running, "psql's query never ran: \((try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")")
            let status = (try? String(contentsOfFile: "/proc/\(psqlProcess.processIdentifier)/status", encoding: .utf8)) ?? ""
            let maskLine = status.split(separator: "\n").first { $0.hasPrefix("SigBlk:") }
            let blocked = maskLine?.split(separator: ":").last.flatMap { UInt64($0.trimmingCharacters(in: .whitespaces), radix: 16) }
            let shellSignals: UInt64 = (1 << (UInt64(SIGHUP) - 1)) | (1 << (UInt64(SIGINT) - 1)) | (1 << (UInt64(SIGQUIT) - 1)) | (1 << (UInt64(SIGTERM) - 1))
            #expect(blocked.map { $0 & shellSignals == 0 } == true, "psql's blocked signals: \(maskLine ?? "none read")")
            // Ctrl-C: psql cancels the query and, run with -c, exits with 1.
            kill(psqlProcess.processIdentifier, SIGINT)
            let ended = await pollUntil(60) { !psqlProcess.isRunning }
            #expect(ended, "psql still runs 60 s after SIGINT")
            if ended {
                let stderr = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
                #expect(psqlProcess.terminationStatus == 1 && stderr.contains("canceling statement due to user request"), "\(psqlProcess.terminationStatus): \(stderr)")
            }
        } catch {
            await cluster.teardown()
            throw error
        }
        await cluster.teardown()
    }
}
