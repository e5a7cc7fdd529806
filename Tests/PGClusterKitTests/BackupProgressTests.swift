import Foundation
import Testing

@testable import PGClusterKit

/// `pgcluster backup`'s progress from pgBackRest's log (BackupProgress), with the awk the
/// hosts run (Debian's /usr/bin/awk, mawk).
@Suite("Backup progress")
struct BackupProgressTests {
    static let log = """
        2026-12-06 11:40:00.000 P00   INFO: backup command begin 2.45: --type=full
        2026-12-06 11:40:01.000 P01 DETAIL: backup file /d/base/5/16400 (100MB, 40.00%) checksum aa
        2026-12-06 11:40:01.100 P00   INFO: backup command end: completed successfully
        2026-12-06 11:51:35.000 P00   INFO: backup command begin 2.45: --type=incr
        2026-12-06 11:51:35.444 P01 DETAIL: backup file /d/global/pg_control (8KB, 0.00%) checksum 31
        2026-12-06 11:51:35.613 P03 DETAIL: backup file /d/base/5/16397 (1.5GB, 60.00%) checksum 2c
        2026-12-06 11:51:35.700 P02 DETAIL: match file from prior backup /d/base/1/2602 (512MB, 80.00%)
        2026-12-06 11:51:35.701 P02 DETAIL: backup file /d/base/1/2603 (0B, 80.00%) checksum 00
        2026-12-06 11:51:35.800 P00   INFO: new backup label = 20261206-115119F

        """

    func summarize(_ text: String) throws -> String {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("pgbackrest-\(UUID().uuidString).log").path
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/awk")
        process.arguments = [BackupProgress.summary, file]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        process.waitUntilExit()
        return String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    @Test("the files since the last backup command begin: their sizes summed, the last share")
    func summary() throws {
        let output = try summarize(Self.log)
        let progress = try #require(BackupProgress.parse(output), "awk printed '\(output)'")
        #expect(progress.bytes == 8 * 1024 + 1_610_612_736 + 512 * 1_048_576)
        #expect(progress.percent == 80)
    }

    @Test("nothing before the first file of the running backup")
    func nothingYet() throws {
        #expect(try summarize("2026-12-06 11:40:00.000 P00   INFO: backup command begin 2.45: --type=full\n") == "")
        #expect(BackupProgress.parse("") == nil)
    }

    @Test("the line a person reads")
    func line() {
        let half = BackupProgress.line(source: "db_1", bytes: 200 << 20, percent: 50, seconds: 10)
        #expect(half == "[db_1] backup: 200 MB of about 400 MB (50 %), 20 MB/s, about 10 s left")
        #expect(BackupProgress.line(source: "db_1", bytes: 400 << 20, percent: 100, seconds: 20) == "[db_1] backup: 400 MB of about 400 MB (100 %), 20 MB/s")
    }

    @Test("pgBackRest's error lines: each ERROR with the indented lines that continue it, without its hints")
    func errorLines() {
        let output = [
            "WARN: a warning",
            "ERROR: [055]: unable to load info file '/r/archive/c/archive.info' or '/r/archive/c/archive.info.copy':",
            "       FileMissingError: unable to open missing file '/r/archive/c/archive.info' for read",
            "       HINT: archive.info cannot be opened but is required to push/get WAL segments.",
            "       HINT: has a stanza-create been performed?",
            "INFO: check command end: aborted with exception [055]",
        ]
        #expect(
            BackupRepository.errorLines(output) == [
                "ERROR: [055]: unable to load info file '/r/archive/c/archive.info' or '/r/archive/c/archive.info.copy': "
                    + "FileMissingError: unable to open missing file '/r/archive/c/archive.info' for read"
            ])
    }
}
