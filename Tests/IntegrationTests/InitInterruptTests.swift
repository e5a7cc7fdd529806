import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

extension TestCluster {
    /// PIDs of processes whose command line contains every one of `parts`.
    func processes(matching parts: [String]) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> pid_t? in
            guard let pid = pid_t(entry), let cmdline = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline")
            else { return nil }
            let text = String(decoding: cmdline, as: UTF8.self).replacingOccurrences(of: "\0", with: " ")
            return parts.allSatisfy(text.contains) ? pid : nil
        }
    }
}

/// initdb's password file never outlives the `init` that wrote it (issue 10).
@Suite("init interrupted on real servers", .serialized, .clusterLimit)
struct InitInterruptTests {
    @Test("pgcluster killed while initdb runs: no .initdb-pw is left, on disk at any time")
    func killedDuringInitdb() async throws {
        try await withCluster(name: "initkill", basePort: 21710, standbys: 1) { cluster in
            let pwfile = "\(cluster.dataRoot)/node0/.initdb-pw"
            // A stale one from an earlier, interrupted version is removed too.
            try FileManager.default.createDirectory(atPath: "\(cluster.dataRoot)/node0", withIntermediateDirectories: true)
            try "stale-password\n".write(toFile: pwfile, atomically: true, encoding: .utf8)

            let initRun = Task { await cluster.run(["init"]) }
            // Wait until initdb runs for this cluster's primary: by a deadline, not a count of
            // looks (each look reads all of /proc, slow on a busy machine), and not past the
            // end of `init` itself.
            var initdb: [pid_t] = []
            let deadline = Date().addingTimeInterval(120)
            while initdb.isEmpty && Date() < deadline {
                initdb = cluster.processes(matching: ["initdb", "\(cluster.dataRoot)/node0/data"])
                if initdb.isEmpty {
                    if cluster.processes(matching: [TestCluster.binary, "init", cluster.specPath]).isEmpty, Date() > deadline - 110 {
                        break
                    }
                    try await Task.sleep(for: .milliseconds(10))
                }
            }
            if initdb.isEmpty {
                let result = await initRun.value
                Issue.record("initdb never ran; init exited \(result.status): \(result.stderr)")
                return
            }
            #expect(!FileManager.default.fileExists(atPath: pwfile), "the password file is on disk while initdb runs")
            // Kill pgcluster itself (found by its spec path), as an operator's kill -9 or a crash would.
            let pgcluster = cluster.processes(matching: [TestCluster.binary, "init", cluster.specPath])
            try #require(pgcluster.count == 1, "pgcluster init not found: \(pgcluster)")
            kill(pgcluster[0], SIGKILL)
            let result = await initRun.value
            #expect(result.status != 0)
            // initdb, orphaned, runs on or is stopped; either way nothing holds the password on disk.
            for pid in initdb { kill(pid, SIGKILL) }
            for _ in 0..<200 where !cluster.processes(matching: ["initdb", cluster.dataRoot]).isEmpty {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(!FileManager.default.fileExists(atPath: pwfile), ".initdb-pw survived an interrupted init")
            let left = (try? FileManager.default.contentsOfDirectory(atPath: "\(cluster.dataRoot)/node0")) ?? []
            #expect(!left.contains(".initdb-pw"), "\(left)")
        }
    }
}
