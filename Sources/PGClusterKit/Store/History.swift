import Foundation

/// One failover, switchover or rejoin, as `pgcluster history` shows it.
public struct HistoryEvent: Sendable, Codable, Equatable {
    public var kind: String
    /// ISO 8601, UTC.
    public var at: String
    public var from: String?
    public var to: String
    public var timeline: Int?
    public var lsn: String?
    public var durationSeconds: Double
    public var rePointed: [String]
    public var needsRejoin: [String]
    public var steps: [StepTimer.Step]
    /// Who acted when not a person's command: `watch`.
    public var by: String?

    public init(
        kind: String, from: String?, to: String, timeline: Int?, lsn: LSN?, durationSeconds: Double,
        rePointed: [String], needsRejoin: [String], steps: [StepTimer.Step], at: Date = Date(), by: String? = nil
    ) {
        self.by = by
        self.kind = kind
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        self.at = formatter.string(from: at)
        self.from = from
        self.to = to
        self.timeline = timeline
        self.lsn = lsn?.description
        self.durationSeconds = durationSeconds
        self.rePointed = rePointed
        self.needsRejoin = needsRejoin
        self.steps = steps
    }
}

/// The cluster's history file, local.dir/history.json: a JSON array, appended to atomically.
public enum History {
    public static func load(spec: ClusterSpec) throws(ClusterError) -> [HistoryEvent] {
        let path = LocalLayout(spec: spec).historyFile
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        do {
            return try JSONDecoder().decode([HistoryEvent].self, from: data)
        } catch {
            throw ClusterError("the history file \(path) is damaged: \(error)")
        }
    }

    public static func append(_ event: HistoryEvent, spec: ClusterSpec) throws(ClusterError) {
        let path = LocalLayout(spec: spec).historyFile
        var events: [HistoryEvent]
        do {
            events = try load(spec: spec)
        } catch {
            // Never write over what cannot be read: set it aside for a person, start afresh.
            let kept = "\(path).damaged-\(Int(Date().timeIntervalSince1970))"
            guard rename(path, kept) == 0 else { throw error }
            Console.warn("\(error.message); kept as \(kept), and a new history begins with this event")
            events = []
        }
        events.append(event)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = (try? encoder.encode(events)) ?? Data()
        try FileWriter.writeAtomically(data, to: path, mode: 0o600)
    }

    public static func table(_ events: [HistoryEvent]) -> String {
        guard !events.isEmpty else { return "no failover, switchover or rejoin yet" }
        var rows = [["WHEN", "KIND", "FROM", "TO", "TL", "LSN", "TOOK", "RE-POINTED", "NEEDS REJOIN"]]
        for event in events {
            rows.append([
                event.at, event.kind, event.from ?? "-", event.to, event.timeline.map(String.init) ?? "-",
                event.lsn ?? "-", String(format: "%.3f s", event.durationSeconds),
                event.rePointed.isEmpty ? "-" : event.rePointed.joined(separator: ","),
                event.needsRejoin.isEmpty ? "-" : event.needsRejoin.joined(separator: ","),
            ])
        }
        return TextTable.render(rows)
    }
}
