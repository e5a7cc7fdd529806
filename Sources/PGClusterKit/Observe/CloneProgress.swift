import Foundation

/// A clone's progress, read from the upstream's `pg_stat_progress_basebackup` while
/// pg_basebackup runs on the new node's host: one progress line every few seconds (2 s on a
/// terminal, 10 s otherwise, such as the watcher's log), with bytes, rate and an estimate.
/// A clone that ends before the first interval prints nothing. Works the same on every
/// backend whose clone is a pg_basebackup from a server pgcluster reaches; the statistics
/// row is found by the clone's `application_name` (``applicationName(_:)``), so clones in
/// parallel are told apart.
public struct CloneProgress: Sendable {
    public var node: String
    public var upstream: String
    public var target: ConnectionTarget

    /// Seconds between lines: `PGCLUSTER_PROGRESS_INTERVAL` when set (the tests), else by terminal.
    static var interval: Double {
        if let text = ProcessInfo.processInfo.environment["PGCLUSTER_PROGRESS_INTERVAL"], let seconds = Double(text), seconds > 0 {
            return seconds
        }
        return Console.stderrIsTTY ? 2 : 10
    }

    /// The `application_name` a clone of `node` connects with: never a node's name, or the
    /// clone's WAL stream could count toward `synchronous_standby_names`.
    public static func applicationName(_ node: String) -> String { "pgcluster-clone-\(node)" }

    /// One line of progress; nil before the backup has a size (it is still starting).
    static func line(node: String, upstream: String, phase: String, total: Int64?, streamed: Int64, seconds: Double) -> String {
        func size(_ bytes: Int64) -> String {
            bytes >= 1 << 30 ? String(format: "%.2f GB", Double(bytes) / Double(1 << 30)) : String(format: "%.0f MB", Double(bytes) / Double(1 << 20))
        }
        let rate = seconds > 0 ? Double(streamed) / seconds : 0
        var text = "[\(node)] cloning from \(upstream): \(size(streamed))"
        if let total, total > 0 {
            let percent = min(100, Int(Double(streamed) * 100 / Double(total)))
            text += " of \(size(total)) (\(percent) %)"
            if rate > 0, streamed < total {
                text += String(format: ", %.0f MB/s, about %.0f s left", rate / Double(1 << 20), Double(total - streamed) / rate)
            } else if rate > 0 {
                text += String(format: ", %.0f MB/s", rate / Double(1 << 20))
            }
        } else if rate > 0 {
            text += String(format: ", %.0f MB/s", rate / Double(1 << 20))
        }
        return text + (phase == "streaming database files" ? "" : "; \(phase)")
    }

    /// Runs `body` (the clone), printing progress meanwhile.
    public func reporting<T>(_ body: () async throws(ClusterError) -> T) async throws(ClusterError) -> T {
        let interval = Self.interval
        let (node, upstream, target) = (self.node, self.upstream, self.target)
        let reporter = Task {
            let began = ContinuousClock.now
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(interval))
                if Task.isCancelled { break }
                let row = await Blocking.run(timeout: 5) { () -> [String?]? in
                    guard let connection = try? PGConnection.connect(target) else { return nil }
                    defer { connection.close() }
                    return try? connection.query(
                        """
                        SELECT p.phase, p.backup_total, p.backup_streamed
                        FROM pg_stat_progress_basebackup AS p JOIN pg_stat_activity AS a USING (pid)
                        WHERE a.application_name = $1
                        """, [Self.applicationName(node)]
                    ).rows.first
                }
                guard let row = row ?? nil, row.count == 3, let phase = row[0], let streamed = row[2].flatMap({ Int64($0) }) else { continue }
                let seconds = (ContinuousClock.now - began).seconds
                Console.progress(
                    Self.line(node: node, upstream: upstream, phase: phase, total: row[1].flatMap { Int64($0) }, streamed: streamed, seconds: seconds))
            }
        }
        defer { reporter.cancel() }
        return try await body()
    }
}
