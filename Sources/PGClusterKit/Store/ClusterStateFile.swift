import Foundation

/// The state as a file in local.dir (the files store).
extension ClusterState {
    /// The remembered state, or nil when none was recorded yet. A file that exists but
    /// cannot be read is an error naming it and the repair: pgcluster never acts on a
    /// memory it cannot read, nor on a guess in its place.
    public static func load(_ path: String) throws(ClusterError) -> ClusterState? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let problem: String
        if let data = FileManager.default.contents(atPath: path) {
            do {
                return try JSONDecoder().decode(ClusterState.self, from: data)
            } catch {
                problem = "it is not a state pgcluster wrote (\(Self.decodingProblem(error)))"
            }
        } else {
            problem = "it cannot be read (\(String(cString: strerror(errno))))"
        }
        throw ClusterError(
            "the state file \(path) is damaged: \(problem)",
            details: [
                "it remembers which node pgcluster made primary and the synchronous mode last applied; the servers stay the truth",
                "repair: check which node is the primary (pgcluster status --json), then move the file aside "
                    + "(mv \(path) \(path).damaged); the next quorum, failover or switchover writes it anew",
            ])
    }

    static func decodingProblem(_ error: Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let context): return context.debugDescription
        case DecodingError.keyNotFound(let key, _): return "no \(key.stringValue)"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            return "\(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)"
        default: return "\(error)"
        }
    }

    public func save(to path: String) throws(ClusterError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try FileWriter.writeAtomically((try? encoder.encode(self)) ?? Data(), to: path, mode: 0o600)
    }
}
