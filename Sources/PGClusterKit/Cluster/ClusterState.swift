import Foundation

/// What pgcluster remembers between commands: the synchronous mode the operator
/// chose and the node it last made primary. Everything else is read from the servers.
public struct ClusterState: Sendable, Equatable, Codable {
    public struct Synchronous: Sendable, Equatable, Codable {
        public var mode: String
        public var count: Int
        /// The standbys the operator restricted the quorum to; nil means all standbys.
        public var standbys: [String]?

        public var synchronousMode: SynchronousMode { SynchronousMode(mode: mode, count: count) ?? .async }

        public init(_ mode: SynchronousMode, standbys: [String]? = nil) {
            self.mode = mode.modeName
            self.count = mode.count
            self.standbys = standbys
        }
    }

    public var primary: String
    /// The mode the operator chose (`quorum`, or the spec's): failover, switchover and
    /// rejoin restore it as far as the standbys that remain allow.
    public var synchronous: Synchronous
    /// What the primary was last given: the mode and the exact standbys listed. The
    /// failover quorum guard reasons on this, since the dead primary cannot be asked.
    public var applied: Synchronous?

    public init(primary: String, synchronous: Synchronous, applied: Synchronous? = nil) {
        self.primary = primary
        self.synchronous = synchronous
        self.applied = applied
    }

    public static func load(_ path: String) -> ClusterState? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return try? JSONDecoder().decode(ClusterState.self, from: data)
    }

    public func save(to path: String) throws(ClusterError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try FileWriter.writeAtomically((try? encoder.encode(self)) ?? Data(), to: path, mode: 0o600)
    }
}
