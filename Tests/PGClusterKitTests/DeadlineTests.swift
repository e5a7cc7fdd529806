import Foundation
import Testing

@testable import PGClusterKit

/// A subprocess deadline ends the program and everything it started in its process group,
/// whether its output is piped (as every step's is) or not.
@Suite("subprocess deadlines")
struct DeadlineTests {
    /// The shell prints its background child's PID, then waits on it: at the deadline both go.
    static let script = "sleep 30 & echo $!; wait"

    /// Whether `pid` is gone (or a zombie) within ten seconds (it polls: a quick end returns
    /// at once; the bound only has to tell "killed" from the 30 s and 60 s sleeps).
    static func ends(_ pid: pid_t) -> Bool {
        for _ in 0..<1_000 {
            if !LocalHost.isAlive(pid) { return true }
            usleep(10_000)
        }
        return !LocalHost.isAlive(pid)
    }

    @Test("a piped program and its children end at the deadline", arguments: [true, false])
    func pipedOrNot(piped: Bool) throws {
        let outPath = "/tmp/pgc-deadline-\(UUID().uuidString).out"
        defer { unlink(outPath) }
        let started = Date()
        let outcome = try Spawn.run(
            ["/bin/sh", "-c", Self.script], environment: ["PATH=/usr/bin:/bin"],
            stdout: piped ? .pipe : .file(outPath), stderr: piped ? .pipe : .file(outPath), timeout: 1
        ).get()
        let took = Date().timeIntervalSince(started)
        #expect(outcome.status == -1)
        // Ended by the deadline, not by the 30 s sleep (the upper bound is loose on purpose:
        // a busy machine delays the kill, and this test is not a benchmark).
        #expect(took >= 0.9 && took < 20, "took \(took) s")
        let output = piped ? outcome.output : ((try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "")
        let child = try #require(pid_t(output.trimmingCharacters(in: .whitespacesAndNewlines)), "no PID in '\(output)'")
        // SIGKILLed with its group; reaped by init (or a zombie until then: gone for us).
        #expect(Self.ends(child), "sleep \(child) still runs after the deadline")
    }

    @Test("LocalRunner: a command past its deadline is a failure naming it")
    func runnerFails() async {
        do {
            _ = try await LocalRunner().run(Command("/bin/sleep", ["30"], timeout: 0.5))
            Issue.record("sleep 30 returned before its deadline")
        } catch {
            #expect(error.message.contains("/bin/sleep 30 did not end within"), "\(error.message)")
        }
    }

    /// A cancelled task (the watcher stopping a rejoin for a failover) ends the program it
    /// runs at once, without waiting for a deadline. With a process group of its own (a
    /// deadline, or every child of `watch`), what the program started ends with it.
    @Test("LocalRunner: a cancelled task ends its program, and with its own group what it started", arguments: [false, true])
    func cancelled(ownGroup: Bool) async throws {
        let pidFile = "/tmp/pgc-cancel-\(UUID().uuidString).pids"
        defer { unlink(pidFile) }
        // The shell writes its PID (and, with a group, its background child's), then sleeps.
        let script = ownGroup ? "echo $$ > \(pidFile); sleep 60 & echo $! >> \(pidFile); wait" : "echo $$ > \(pidFile); exec sleep 60"
        let command = Command("/bin/sh", ["-c", script], timeout: ownGroup ? 120 : nil)
        let task = Task { () -> ClusterError? in
            do throws(ClusterError) {
                _ = try await LocalRunner().run(command)
                return nil
            } catch {
                return error
            }
        }
        func pids() -> [pid_t] {
            ((try? String(contentsOfFile: pidFile, encoding: .utf8)) ?? "").split(separator: "\n").compactMap { pid_t($0) }
        }
        let deadline = Date().addingTimeInterval(30)
        while pids().count < (ownGroup ? 2 : 1) && Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
        let started = try #require(pids().count == (ownGroup ? 2 : 1) ? pids() : nil, "the program did not start")
        task.cancel()
        let error = await task.value
        #expect(error?.message.contains("was stopped (its task was cancelled)") == true, "\(String(describing: error))")
        for pid in started {
            #expect(Self.ends(pid), "\(pid) still runs after the cancel")
        }
    }

    @Test("a task cancelled before its program starts never starts it")
    func cancelledBefore() async {
        let task = Task { () -> ClusterError? in
            while !Task.isCancelled { await Task.yield() }
            do throws(ClusterError) {
                _ = try await LocalRunner().run(Command("/bin/sleep", ["60"]))
                return nil
            } catch {
                return error
            }
        }
        task.cancel()
        let error = await task.value
        #expect(error?.message == "cancelled before running /bin/sleep", "\(String(describing: error))")
    }

    @Test("a program that ends before its deadline is not touched")
    func endsInTime() throws {
        let outcome = try Spawn.run(
            ["/bin/sh", "-c", "echo hello; exit 3"], environment: [], stdout: .pipe, stderr: .pipe, timeout: 10
        ).get()
        #expect(outcome.status == 3)
        #expect(outcome.output == "hello\n")
    }

    @Test(
        "a program that leaves a daemon holding its output has ended when it exits, with and without a deadline",
        .timeLimit(.minutes(1)), arguments: [10.0, nil])
    func daemonKeepsOutput(timeout: Double?) throws {
        // The shell starts a sleep that keeps stdout open, prints its PID and exits 0: the
        // run was held until the deadline (then "did not end") or, without one, the sleep's
        // end ten minutes later (past the time limit).
        let outcome = try Spawn.run(
            ["/bin/sh", "-c", "sleep 600 & echo $!; exit 0"], environment: [], stdout: .pipe, stderr: .pipe, timeout: timeout
        ).get()
        let daemon = pid_t(outcome.output.trimmingCharacters(in: .whitespacesAndNewlines))
        if let daemon { kill(daemon, SIGKILL) }
        #expect(outcome.status == 0, "\(outcome.output)")
        #expect(daemon != nil, "\(outcome.output)")
    }
}
