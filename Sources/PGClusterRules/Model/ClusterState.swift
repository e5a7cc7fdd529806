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
    /// The timeline `primary` was on when it was recorded (nil in states of an older
    /// pgcluster): a node on an older timeline is a deposed primary (``PrimaryRules``).
    public var timeline: Int?
    /// The mode the operator chose (`quorum`, or the spec's): failover, switchover and
    /// rejoin restore it as far as the standbys that remain allow.
    public var synchronous: Synchronous
    /// What the primary was last given: the mode and the exact standbys listed. The
    /// failover quorum guard reasons on this, since the dead primary cannot be asked.
    public var applied: Synchronous?
    /// `pgcluster pause`: `watch` observes and reports, and changes nothing.
    public var paused: Bool?
    /// `watch` with `durability: available` emptied synchronous_standby_names because no
    /// synchronous standby streamed: what was applied before, to restore when one does.
    /// While set, `applied` is async: a failover's guard knows commits were not replicated.
    public var lowered: Synchronous?
    /// The nodes the cluster has, and where each lives: `apply` must still reach a node
    /// after it was taken out of the spec. Nil in states written before `apply` existed.
    public var nodes: [Member]?
    /// Intent before action: a synchronous setting about to be given to `primary`, recorded
    /// before any server sees it. Until a writer records what the primary has (``applied``),
    /// the failover guard must prove the quorum under both: the change may or may not have
    /// reached the server (docs/ARCHITECTURE.md, "Intent before action").
    public var pending: Pending?

    public struct Pending: Sendable, Equatable, Codable {
        public var primary: String
        public var synchronous: Synchronous
        /// With a failover or switchover: the timeline `primary` is about to be promoted to.
        /// Until the new primary is recorded, a node on an older timeline may be a deposed
        /// primary (``PrimaryRules/isStale(_:among:record:)``), and `primary`, silent, may be a
        /// primary that nobody recorded.
        public var promotesTo: Int?

        public init(primary: String, synchronous: Synchronous, promotesTo: Int? = nil) {
            self.primary = primary
            self.synchronous = synchronous
            self.promotesTo = promotesTo
        }
    }

    /// A node of the cluster as `apply` last left it: enough to find its server and files.
    public struct Member: Sendable, Equatable, Codable {
        public var name: String
        public var host: String
        public var port: Int
        public var sshHost: String?

        public init(_ node: NodeSpec) {
            name = node.name
            host = node.host
            port = node.port
            sshHost = node.sshHost
        }

        /// The node as a standby of the cluster (its role in a spec no longer matters).
        public var node: NodeSpec { NodeSpec(name: name, host: host, port: port, role: .standby, sshHost: sshHost) }
    }

    public init(
        primary: String, synchronous: Synchronous, applied: Synchronous? = nil, paused: Bool? = nil,
        lowered: Synchronous? = nil, nodes: [Member]? = nil, pending: Pending? = nil
    ) {
        self.pending = pending
        self.primary = primary
        self.synchronous = synchronous
        self.applied = applied
        self.paused = paused
        self.lowered = lowered
        self.nodes = nodes
    }
}
