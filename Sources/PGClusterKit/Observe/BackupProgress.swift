import Foundation

/// A running `pgbackrest backup`'s progress, read from pgBackRest's own log on the host the
/// backup runs on (`log-level-file=detail` names every file copied, with its size and the
/// share of the backup done so far): bytes so far, the share, the rate and an estimate.
/// pgBackRest 2.45's `info` says only that a backup runs. Every 2 s on a terminal, 10 s
/// otherwise (a log line a person or a journal reads), on stderr: `--json` stays clean.
public struct BackupProgress: Sendable {
    /// The node the files come from (for the line).
    public var source: String
    /// Where the backup runs: the repository's host, or this machine.
    public var host: any Host
    /// pgBackRest's log of the stanza's backups there.
    public var logFile: String

    /// Sums, since the log's last `backup command begin`, the sizes of the files done, and
    /// keeps the last share: `BYTES PERCENT` on one line, or nothing before the first file.
    /// awk on the host (any POSIX awk: mawk has no capture groups), so only that line
    /// crosses ssh however many files there are.
    static let summary = #"""
        function bytes(t,    n, u) {
          n = t + 0; u = t; sub(/^[0-9.]+/, "", u)
          if (u == "KB") n *= 1024; else if (u == "MB") n *= 1048576
          else if (u == "GB") n *= 1073741824; else if (u == "TB") n *= 1099511627776
          return n
        }
        /backup command begin/ { total = 0; share = ""; next }
        / DETAIL: / && match($0, /\([0-9.]+[KMGT]?B, [0-9.]+%\)/) {
          field = substr($0, RSTART + 1, RLENGTH - 3)
          split(field, part, ", ")
          total += bytes(part[1]); share = part[2]
        }
        END { if (share != "") printf "%.0f %s\n", total, share }
        """#

    /// `BYTES PERCENT` as awk printed it.
    static func parse(_ output: String) -> (bytes: Int64, percent: Double)? {
        let fields = output.split(whereSeparator: \.isWhitespace)
        guard fields.count == 2, let bytes = Double(fields[0]), let percent = Double(fields[1]) else { return nil }
        return (Int64(bytes), percent)
    }

    /// One line: `[db_1] backup: 212 MB of about 470 MB (45 %), 30 MB/s, about 8 s left`.
    static func line(source: String, bytes: Int64, percent: Double, seconds: Double) -> String {
        func size(_ bytes: Double) -> String {
            bytes >= Double(1 << 30) ? String(format: "%.2f GB", bytes / Double(1 << 30)) : String(format: "%.0f MB", bytes / Double(1 << 20))
        }
        var text = "[\(source)] backup: \(size(Double(bytes)))"
        if percent > 0 {
            let total = Double(bytes) * 100 / percent
            text += " of about \(size(total)) (\(Int(percent)) %)"
            let rate = seconds > 0 ? Double(bytes) / seconds : 0
            if rate > 0 {
                text += String(format: ", %.0f MB/s", rate / Double(1 << 20))
                if percent < 100 { text += String(format: ", about %.0f s left", (total - Double(bytes)) / rate) }
            }
        }
        return text
    }

    /// Runs `body` (the backup), printing a line whenever the share has moved since the last.
    public func reporting<T>(_ body: () async throws(ClusterError) -> T) async throws(ClusterError) -> T {
        let interval = CloneProgress.interval
        let (source, host, logFile) = (self.source, self.host, self.logFile)
        let reporter = Task {
            let began = ContinuousClock.now
            var last: Double?
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(interval))
                if Task.isCancelled { break }
                guard let result = try? await host.run(["/usr/bin/awk", Self.summary, logFile]), result.succeeded,
                    let progress = Self.parse(result.output), progress.percent != last
                else { continue }
                last = progress.percent
                Console.progress(
                    Self.line(source: source, bytes: progress.bytes, percent: progress.percent, seconds: (ContinuousClock.now - began).seconds))
            }
        }
        defer { reporter.cancel() }
        return try await body()
    }
}
