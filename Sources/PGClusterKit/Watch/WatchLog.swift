import Foundation
import Logging

/// The watcher's one logger writes one line per event on stderr: for people
/// (`time event [node] details`) or, with `--json`, one JSON object per line
/// (`{"time", "event", "node", "details"}`). The event and node travel as metadata.
public struct WatchLogHandler: LogHandler {
    public enum Format: Sendable { case text, json }

    public var format: Format
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    /// Where lines go; stderr unless a test says otherwise.
    let write: @Sendable (String) -> Void

    public init(format: Format, write: @escaping @Sendable (String) -> Void = WatchLogHandler.standardError) {
        self.format = format
        self.write = write
    }

    public static let standardError: @Sendable (String) -> Void = { line in
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    /// A logger for `watch`.
    public static func logger(format: Format) -> Logger {
        Logger(label: "pgcluster.watch") { _ in WatchLogHandler(format: format) }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        write(Self.line(event: event, metadata: metadata, format: format, at: Date()))
    }

    /// The line for one event. Pure apart from the time given.
    static func line(event: LogEvent, metadata own: Logger.Metadata, format: Format, at time: Date) -> String {
        var all = own
        all.merge(event.metadata ?? [:]) { _, new in new }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let stamp = formatter.string(from: time)
        let name = all.removeValue(forKey: "event").map { "\($0)" } ?? (event.level >= .warning ? "\(event.level)" : "log")
        let node = all.removeValue(forKey: "node").map { "\($0)" }
        let details = event.message.description
        switch format {
        case .text:
            return [stamp, name, node.map { "[\($0)]" }, details].compactMap { $0 }.joined(separator: " ")
        case .json:
            var object: [String: String] = ["time": stamp, "event": name, "details": details]
            if let node { object["node"] = node }
            for (key, value) in all where object[key] == nil { object[key] = "\(value)" }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return (try? encoder.encode(object)).map { String(decoding: $0, as: UTF8.self) } ?? details
        }
    }
}

extension Logger {
    /// One watcher event.
    func event(_ name: String, node: String? = nil, _ details: String, level: Logger.Level = .info) {
        var metadata: Logger.Metadata = ["event": .string(name)]
        if let node { metadata["node"] = .string(node) }
        log(level: level, "\(details)", metadata: metadata)
    }
}
