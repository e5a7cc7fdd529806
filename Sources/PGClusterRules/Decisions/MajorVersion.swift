import Foundation

/// The major version of a node's data against the spec's `postgres.version`. PostgreSQL's
/// binaries of one major version cannot run another's data directory, and erasing or
/// re-cloning it would lose that data: `init`, `start` and `apply` refuse (exit 2) before
/// touching anything, naming both versions. An upgrade (pg_upgrade) is not built here.
public enum MajorVersion {
    /// One node's data directory as its host reported it.
    public struct Found: Sendable, Equatable {
        public var node: String
        public var dataDir: String
        /// The text of `PG_VERSION`; nil when the node has no data (or it could not be read).
        public var pgVersion: String?

        public init(node: String, dataDir: String, pgVersion: String?) {
            self.node = node
            self.dataDir = dataDir
            self.pgVersion = pgVersion
        }
    }

    /// Refuses when any node's PG_VERSION differs from the spec's version. Pure.
    public static func check(spec: ClusterSpec, found: [Found]) throws(ClusterError) {
        let wanted = String(spec.postgres.version)
        let mismatched = found.compactMap { entry -> (Found, String)? in
            guard let text = entry.pgVersion?.trimmingCharacters(in: .whitespacesAndNewlines), !text.isEmpty, text != wanted
            else { return nil }
            return (entry, text)
        }
        guard let (first, version) = mismatched.first else { return }
        let others = mismatched.dropFirst().map { "\($0.0.node) is PostgreSQL \($0.1) too (\($0.0.dataDir))" }
        throw ClusterError(
            "\(first.node): its data directory \(first.dataDir) is PostgreSQL \(version) (PG_VERSION), "
                + "but \(spec.file) says postgres.version \(wanted): nothing was changed",
            exitCode: .refused,
            details: others + [
                "to run this data as it is: set postgres.version: \(version) in \(spec.file)",
                "to move it to PostgreSQL \(wanted): pg_upgrade (pgcluster does not upgrade major versions yet)",
                "to start afresh, losing the data: pgcluster destroy --yes, then pgcluster init",
            ])
    }
}
