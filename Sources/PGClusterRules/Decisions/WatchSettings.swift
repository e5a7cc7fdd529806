/// The spec's `watch:` block: how `pgcluster watch` probes and when it acts (README.md, "Automatic failover"; docs/ARCHITECTURE.md, "pgcluster watch").
public struct WatchSettings: Sendable, Equatable {
    /// What `watch` may do to the synchronous mode while no synchronous standby streams.
    public enum Durability: String, Sendable, Equatable, CaseIterable {
        /// Never lowered: commits wait until a synchronous standby streams again.
        case strict
        /// Emptied while none streams (so commits return), recorded, restored when one does.
        case available
    }

    /// What happens to a failed primary when it comes back.
    public enum RejoinPolicy: String, Sendable, Equatable, CaseIterable {
        /// pg_rewind it into a standby of the new primary.
        case auto
        /// Keep it stopped and report it: an operator runs `pgcluster rejoin`.
        case manual
    }

    /// Seconds between probes.
    public var interval: Double
    /// Seconds a primary that does not answer must stay lost before failover.
    public var failoverAfter: Double
    public var durability: Durability
    public var rejoin: RejoinPolicy
    /// With store.etcd: seconds of the watchers' leadership lease (accepted now, used with etcd).
    public var leaseTTL: Double
    /// `watch.http`: where `watch` serves the health endpoints; node i (spec order) on
    /// `port + i` (README.md, "Health endpoints and HAProxy"; docs/ARCHITECTURE.md, "pgcluster watch"). Nil: no HTTP at all.
    public var http: HTTPAddress?
    /// `watch.httpPublic: true`: the operator accepts binding a wildcard address (0.0.0.0, ::).
    public var httpPublic: Bool

    public init(
        interval: Double = 0.5, failoverAfter: Double = 2, durability: Durability = .strict, rejoin: RejoinPolicy = .auto,
        leaseTTL: Double = 5, http: HTTPAddress? = nil, httpPublic: Bool = false
    ) {
        self.interval = interval
        self.failoverAfter = failoverAfter
        self.durability = durability
        self.rejoin = rejoin
        self.leaseTTL = leaseTTL
        self.http = http
        self.httpPublic = httpPublic
    }

    /// `wal_receiver_timeout`: half of `failoverAfter`, so that a standby has given up a
    /// silent primary (its WAL receiver is gone) before the watcher may fail over, and
    /// `watch` can tell "only I lost it" from "everyone lost it".
    public var replicationTimeout: String {
        "\(max(200, Int((failoverAfter * 1000 / 2).rounded())))ms"
    }

    /// Parses a duration in seconds: a number (`0.5`, `2`) or with a unit (`500ms`, `2s`, `1min`).
    public static func seconds(_ text: String) -> Double? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        for (unit, factor) in [("ms", 0.001), ("min", 60.0), ("s", 1.0)] where trimmed.hasSuffix(unit) {
            return Double(trimmed.dropLast(unit.count).trimmingCharacters(in: .whitespaces)).map { $0 * factor }
        }
        return Double(trimmed)
    }
}

/// An IP address and the first port of `watch.http` (`127.0.0.1:8008`, `[::1]:8008`).
public struct HTTPAddress: Sendable, Equatable, CustomStringConvertible {
    /// The address to bind, without brackets.
    public var host: String
    /// Node i's endpoints answer on `port + i`.
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT` or `[IPv6]:PORT`; nil when it is not one.
    public init?(parsing text: String) {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        // An address literal: the server binds exactly it, and no name is resolved at start.
        guard CIDR.ipv4Bytes(String(host)) != nil || CIDR.ipv6Bytes(String(host)) != nil,
            let port = Int(portText), portText.allSatisfy(\.isNumber)
        else { return nil }
        self.host = String(host)
        self.port = port
    }

    /// Binds every interface: refused unless `watch.httpPublic: true`.
    public var isWildcard: Bool {
        (CIDR.ipv4Bytes(host) ?? CIDR.ipv6Bytes(host))?.allSatisfy { $0 == 0 } ?? false
    }

    public var isIPv6: Bool { CIDR.ipv6Bytes(host) != nil }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// The port that serves the node at `index` in the spec.
    public func port(forNode index: Int) -> Int { port + index }
}

/// `routing:`: the HAProxy ports `render` writes into haproxy.cfg (with `watch.http`).
public struct RoutingSettings: Sendable, Equatable {
    /// Read-write frontend: only the node whose `/primary` answers 200.
    public var rw: Int
    /// Read-only frontend: the nodes whose `/replica` answers 200.
    public var ro: Int

    public init(rw: Int = 5000, ro: Int = 5001) {
        self.rw = rw
        self.ro = ro
    }
}
