import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

@Suite("history file")
struct HistoryTests {
    @Test("a damaged history is set aside, never written over; the new event starts a new one")
    func damagedHistory() throws {
        let folder = try TestSupport.makeTempDir("history")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let spec = try SpecLoader.parse(
            "name: h\nlocal: {dir: \(folder)}\nnodes:\n  - {name: db_0, port: 15432, role: primary}\n  - {name: db_1, port: 15433}\n",
            file: "\(folder)/pgcluster.yaml")
        let path = LocalLayout(spec: spec).historyFile
        try "[{\"kind\": \"failover\", trunc".write(toFile: path, atomically: true, encoding: .utf8)

        try History.append(HistoryEvent(kind: "switchover", from: "db_0", to: "db_1", timeline: 2, lsn: nil, durationSeconds: 0.5, rePointed: [], needsRejoin: [], steps: []), spec: spec)

        #expect(try History.load(spec: spec).map(\.kind) == ["switchover"])
        let kept = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasPrefix("history.json.damaged-") }
        #expect(kept.count == 1)
        #expect(try String(contentsOfFile: "\(folder)/\(kept[0])", encoding: .utf8) == "[{\"kind\": \"failover\", trunc")
    }

    @Test("etcd history keys from one process keep their order within one millisecond, and follow the clock otherwise")
    func historyKeysInOrder() {
        let clock = EtcdStore.HistoryClock()
        let instant = Date(timeIntervalSince1970: 1_800_000_000.123_4)
        let same = (0..<5).map { _ in clock.next(now: instant) }
        #expect(same == [1_800_000_000_123, 1_800_000_000_124, 1_800_000_000_125, 1_800_000_000_126, 1_800_000_000_127])
        // A later clock takes over again; an earlier one (a step back) never reorders.
        #expect(clock.next(now: instant.addingTimeInterval(1)) == 1_800_000_001_123)
        #expect(clock.next(now: instant) == 1_800_000_001_124)
    }
}
