import Foundation
import Testing

@testable import PGClusterKit

/// A subprocess deadline ends the program and everything it started in its process group,
/// whether its output is piped (as every step's is) or not.
@Suite("subprocess deadlines")
struct DeadlineTests {
    /// The shell prints its background child's PID, then waits on it: at the deadline both go.
    static let script = "sleep 30 & echo $!; wait"

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
        #expect(took >= 0.9 && took < 5, "took \(took) s")
        let output = piped ? outcome.output : ((try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "")
        let child = try #require(pid_t(output.trimmingCharacters(in: .whitespacesAndNewlines)), "no PID in '\(output)'")
        // SIGKILLed with its group; reaped by init (or a zombie until then: gone for us).
        var gone = false
        for _ in 0..<200 {
            if !LocalHost.isAlive(child) {
                gone = true
                break
            }
            usleep(10_000)
        }
        #expect(gone, "sleep \(child) still runs after the deadline")
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

    @Test("a program that ends before its deadline is not touched")
    func endsInTime() throws {
        let outcome = try Spawn.run(
            ["/bin/sh", "-c", "echo hello; exit 3"], environment: [], stdout: .pipe, stderr: .pipe, timeout: 10
        ).get()
        #expect(outcome.status == 3)
        #expect(outcome.output == "hello\n")
    }
}
