import Foundation
import Testing

@testable import PGClusterKit

/// `HostCluster.start` and `stop` wait on the host in a shell of their own (one round
/// trip): these run those scripts against a stand-in for `postgres` that writes its
/// postmaster.pid as the real one does, so that each way a start can go is shown in a
/// second, without a server.
@Suite("the start and stop waits on the host")
struct StartWaitTests {
    /// The stand-in for `postgres` (Tests/Fixtures/postgres-stand-in, see there). A file of
    /// the repository, not one written here: exec of a file just written races with any
    /// thread forking meanwhile (ETXTBSY), and the unit tests run side by side.
    static let standIn = fixture("postgres-stand-in")

    /// A file of Tests/Fixtures.
    static func fixture(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/\(name)").path
    }

    /// A scratch folder with a data folder in it.
    static func folder() throws -> String {
        let folder = "/tmp/pgcluster-startwait-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: "\(folder)/data", withIntermediateDirectories: true)
        return folder
    }

    /// startAndWait with the stand-in; `behaviour`: its STANDIN_* variables.
    static func start(_ folder: String, limit: Int = 10, _ behaviour: [String: String]) throws -> TestSupport.ProcessOutcome {
        try TestSupport.run(
            "/bin/sh", ["-c", HostCluster.startAndWait, "sh", standIn, "\(folder)/data", "\(folder)/log", String(limit)],
            in: folder, environment: ["STANDIN_STATUS": ""].merging(behaviour) { $1 })
    }

    /// A stop script (`HostCluster.stopAndWait` or `stopAndControlData`) on a running
    /// stand-in, with the pg_ctl stand-in (or `pgCtl`) and any further arguments.
    static func stop(_ script: String, _ folder: String, pgCtl: String = fixture("pg_ctl-stand-in"), _ more: [String] = []) throws
        -> TestSupport.ProcessOutcome
    {
        try TestSupport.run("/bin/sh", ["-c", script, "sh", pgCtl, "\(folder)/data", "fast"] + more, in: folder)
    }

    /// The stand-in's PID from its postmaster.pid.
    static func pid(_ folder: String) -> pid_t? {
        let text = (try? String(contentsOfFile: "\(folder)/data/postmaster.pid", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").first.flatMap { pid_t($0) }
    }

    /// The stand-in's PID from its postmaster.pid, ended (SIGKILL) after the test.
    static func end(_ folder: String) -> pid_t? {
        let text = (try? String(contentsOfFile: "\(folder)/data/postmaster.pid", encoding: .utf8)) ?? ""
        guard let pid = text.split(separator: "\n").first.flatMap({ pid_t($0) }) else { return nil }
        kill(pid, SIGKILL)
        return pid
    }

    /// `standby`: a standby without hot_standby, which pg_ctl takes for ready too.
    @Test(
        "ready or standby: exit 0 once postmaster.pid names the started process and says so; it runs in a session of its own, its output in the log",
        arguments: ["ready", "standby"])
    func ready(status: String) throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let outcome = try Self.start(folder, ["STANDIN_STATUS": status])
        let pid = Self.end(folder)
        #expect(outcome.status == 0, "\(outcome)")
        let sid = pid.map { getsid($0) }
        #expect(sid == pid, "not a session of its own: sid \(String(describing: sid)), pid \(String(describing: pid))")
        let log = try String(contentsOfFile: "\(folder)/log", encoding: .utf8)
        #expect(log.contains("started"), "\(log)")
    }

    @Test("a postmaster that exits during its start is told at once, not after the limit")
    func exits() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let began = Date()
        let outcome = try Self.start(folder, limit: 60, [:])
        #expect(outcome.status == 1)
        #expect(outcome.stderr.contains("exited during its start"), "\(outcome)")
        #expect(Date().timeIntervalSince(began) < 30, "waited for the limit")
        let log = (try? String(contentsOfFile: "\(folder)/log", encoding: .utf8)) ?? "(no log)"
        #expect(log.contains("FATAL"), "log: \(log); \(outcome)")
    }

    @Test("a slow start (starting for 2.5 s) is waited for while its postmaster lives")
    func slow() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let outcome = try Self.start(folder, ["STANDIN_STATUS": "starting", "STANDIN_THEN": "ready", "STANDIN_AFTER": "2.5"])
        _ = Self.end(folder)
        #expect(outcome.status == 0, "\(outcome)")
    }

    @Test("a start still going at the limit: exit 1, saying the postmaster still runs")
    func limit() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let outcome = try Self.start(folder, limit: 1, ["STANDIN_STATUS": "starting"])
        _ = Self.end(folder)
        #expect(outcome.status == 1)
        #expect(outcome.stderr.contains("did not start within 1 s") && outcome.stderr.contains("still runs"), "\(outcome)")
    }

    @Test("the stop wait ends when the postmaster named in postmaster.pid is gone, the file left behind")
    func stop() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        #expect(try Self.start(folder, ["STANDIN_STATUS": "ready", "STANDIN_DELAY": "0"]).status == 0)
        let outcome = try Self.stop(HostCluster.stopAndWait, folder)
        #expect(outcome.status == 0, "\(outcome)")
        // Gone, or a zombie nobody has reaped yet: either way no longer running.
        let pid = try #require(Self.end(folder))
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        let state = stat.split(separator: ")").last?.split(separator: " ").first
        #expect(state == nil || state == "Z" || state == "X", "the stand-in still runs: \(stat)")
    }

    @Test("a switchover's stop: pg_controldata's output once the server is gone when it never says shut down, and nothing when the stop fails")
    func stopAndControlData() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        #expect(try Self.start(folder, ["STANDIN_STATUS": "ready", "STANDIN_DELAY": "0"]).status == 0)
        let stopped = try Self.stop(HostCluster.stopAndControlData, folder, ["/bin/echo"])
        #expect(stopped.status == 0, "\(stopped)")
        #expect(stopped.stdout == "-D \(folder)/data\n", "\(stopped)")
        _ = Self.end(folder)
        let failed = try Self.stop(HostCluster.stopAndControlData, folder, pgCtl: "/bin/false", ["/bin/echo"])
        #expect(failed.status == 1 && failed.stdout.isEmpty, "\(failed)")
    }

    @Test("a switchover's stop ends once the control file says shut down, while the postmaster still exits; the old primary's next start waits for that exit")
    func stopAtShutdownCheckpoint() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        #expect(try Self.start(folder, ["STANDIN_STATUS": "ready", "STANDIN_DELAY": "0"]).status == 0)
        let running = try #require(Self.pid(folder))
        // pg_controldata says "in production" twice (a torn read between), then "shut down";
        // the stop request (true) leaves the stand-in running, as a postmaster still exiting.
        let controlData = "\(folder)/pg_controldata"
        try """
            #!/bin/sh
            n=$(cat "\(folder)/reads" 2>/dev/null || echo 0); echo $((n + 1)) >"\(folder)/reads"
            case $n in
              0) printf 'pg_control version number:            1300\nDatabase cluster state:               in production\n' ;;
              1) printf 'WARNING: calculated CRC checksum does not match value stored in file.\nDatabase cluster state:               shut down\n' ;;
              *) printf 'pg_control version number:            1300\nDatabase cluster state:               shut down\nLatest checkpoint location:           0/3000028\n' ;;
            esac
            """.write(toFile: controlData, atomically: true, encoding: .utf8)
        chmod(controlData, 0o755)
        let stopped = try Self.stop(HostCluster.stopAndControlData, folder, pgCtl: "/bin/true", [controlData])
        #expect(stopped.status == 0, "\(stopped)")
        #expect(stopped.stdout.contains("Latest checkpoint location:           0/3000028"), "\(stopped)")
        #expect(try String(contentsOfFile: "\(folder)/reads", encoding: .utf8) == "3\n", "not read until it said shut down")
        #expect(kill(running, 0) == 0, "the stop waited for the postmaster")

        // The start of the old primary waits while the old postmaster lives: ended after 1 s,
        // the new one then starts.
        let data = "\(folder)/data"
        DispatchQueue.global().asyncAfter(deadline: .now() + 1) { kill(running, SIGKILL) }
        let began = Date()
        let started = try TestSupport.run(
            "/bin/sh", ["-c", HostCluster.startFollowingScript, "sh", Self.standIn, data, "\(folder)/log", "10", "\(folder)/lock", ""],
            in: folder, environment: ["STANDIN_STATUS": "standby"])
        let new = Self.end(folder)
        #expect(started.status == 0, "\(started)")
        #expect(new != nil && new != running, "the old postmaster's pid file is still there")
        #expect(Date().timeIntervalSince(began) >= 0.9, "did not wait for the old postmaster")
    }

    @Test("a switchover's old primary: its files written 0600, postgresql.auto.conf without whom to follow and with restore_command emptied, then started; a write that fails starts nothing")
    func startFollowing() throws {
        let folder = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let data = "\(folder)/data"
        try "primary_conninfo = 'host=old'\nwork_mem = '4MB'\nrestore_command = 'pgbackrest archive-get %f %p'\n"
            .write(toFile: "\(data)/postgresql.auto.conf", atomically: true, encoding: .utf8)
        func run(_ data: String) throws -> TestSupport.ProcessOutcome {
            try TestSupport.run(
                "/bin/sh",
                ["-c", HostCluster.startFollowingScript, "sh", Self.standIn, data, "\(folder)/log", "10", "\(folder)/lock", "restore_command = ''",
                 "\(data)/postgresql.conf", "600", "port = 5432\nssl = 'on' # it's\n", "\(data)/standby.signal", "600", ""],
                in: folder, environment: ["STANDIN_STATUS": "standby"])
        }
        let outcome = try run(data)
        _ = Self.end(folder)
        #expect(outcome.status == 0, "\(outcome)")
        #expect(try String(contentsOfFile: "\(data)/postgresql.conf", encoding: .utf8) == "port = 5432\nssl = 'on' # it's\n")
        let signal = try FileManager.default.attributesOfItem(atPath: "\(data)/standby.signal")
        #expect((signal[.posixPermissions] as? Int) == 0o600 && (signal[.size] as? Int) == 0)
        #expect(try String(contentsOfFile: "\(data)/postgresql.auto.conf", encoding: .utf8) == "work_mem = '4MB'\nrestore_command = ''\n")
        #expect(try String(contentsOfFile: "\(folder)/log", encoding: .utf8).contains("started"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: data).filter { $0.contains(".tmp.") }.isEmpty)

        let missing = try run("\(folder)/no-such-data")
        #expect(missing.status == 1 && missing.stderr.contains("cannot write the configuration"), "\(missing)")
        #expect(try String(contentsOfFile: "\(folder)/log", encoding: .utf8).components(separatedBy: "started").count == 2, "started again")
    }
}
