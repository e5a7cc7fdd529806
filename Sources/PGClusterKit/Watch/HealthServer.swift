import FlyingFox
import FlyingSocks
import Foundation
import Logging
import ServiceLifecycle

/// `watch.http`: node i's health endpoints on port + i, beside the watcher in its service
/// group (README.md, "Health endpoints and HAProxy"; docs/ARCHITECTURE.md, "pgcluster watch"). Each port answers GET, HEAD and
/// OPTIONS from the last tick in ``HealthState``; what each path means is ``HealthCheck``.
/// HEAD and OPTIONS (what HAProxy's `option httpchk` sends) get the status line only.
/// Served by FlyingFox: Swift concurrency over non-blocking sockets, no SwiftNIO.
public struct HealthServer: Service {
    public let state: HealthState
    public let address: HTTPAddress
    /// Where a port that cannot be served after a reload is said (the watcher goes on).
    public let logger: Logger?

    public init(state: HealthState, address: HTTPAddress, logger: Logger? = nil) {
        self.state = state
        self.address = address
        self.logger = logger
    }

    /// Which node answers on which port: node i of the spec on port + i.
    struct Layout: Equatable {
        var address: HTTPAddress?
        var nodes: [String]

        init(address: HTTPAddress?, nodes: [String]) {
            self.address = address
            self.nodes = nodes
        }

        /// What a reloaded spec asks for.
        init(_ spec: ClusterSpec) { self.init(address: spec.watch.http, nodes: spec.nodes.map(\.name)) }
    }

    /// Serves the spec's layout; when a reload changes it (nodes added, removed or
    /// reordered, another `watch.http`), the ports are let go and served again by the new
    /// order, so that the rendered haproxy.cfg of the new spec asks the right node. A port
    /// that fails at the start ends the watcher (``checkPorts()`` said why first); one that
    /// cannot be served after a reload is logged, and the others go on.
    public func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                var spec = state.spec
                var layout = Layout(address: address, nodes: spec.nodes.map(\.name))
                var first = true
                while !Task.isCancelled {
                    guard let next = try await serve(layout, spec: spec, strict: first) else { return }
                    first = false
                    let nextLayout = Layout(next)
                    let ports = nextLayout.address.map { at in
                        nextLayout.nodes.enumerated().map { "\($1) \(at.port(forNode: $0))" }.joined(separator: ", ")
                    }
                    logger?.event("http", ports.map { "health endpoints now on \(nextLayout.address!.host): \($0)" } ?? "health endpoints stopped: watch.http is gone from the spec")
                    (spec, layout) = (next, nextLayout)
                }
            }
        } catch where Task.isShuttingDownGracefully || Task.isCancelled {}
    }

    /// The servers of one layout by port (a retry's server takes its port's place), to stop
    /// when the layout changes.
    final class Servers: @unchecked Sendable {
        private let lock = NSLock()
        private var servers: [Int: HTTPServer] = [:]
        func add(_ server: HTTPServer, port: Int) { lock.withLock { servers[port] = server } }
        var all: [HTTPServer] { lock.withLock { Array(servers.values) } }
    }

    enum Outcome: Sendable {
        case ended
        case reloaded(ClusterSpec)
    }

    /// Serves `layout` until a reload changes it (returns the new spec) or the watcher stops
    /// (nil). A reload that keeps the layout is taken in place: the endpoints read the spec
    /// from ``HealthState``.
    func serve(_ layout: Layout, spec: ClusterSpec, strict: Bool) async throws -> ClusterSpec? {
        let metrics = WatchMetrics(spec: spec)
        let servers = Servers()
        let reloads = state.reloads
        let host = layout.address?.host ?? ""
        return try await withThrowingTaskGroup(of: Outcome.self) { group in
            for (index, name) in layout.nodes.enumerated() {
                guard let address = layout.address else { break }
                let port = address.port(forNode: index)
                let socket = try socketAddress(address, port: port)
                let handler = NodeHandler(node: name, state: state, metrics: metrics)
                group.addTask {
                    // After a reload a port that is taken is tried again every second (said
                    // once, and again when it is served): HAProxy's check of that node would
                    // otherwise fail until the next reload or restart.
                    var said = false
                    while !Task.isCancelled {
                        let server = HTTPServer(address: socket, timeout: 5, logger: .disabled, handler: handler)
                        servers.add(server, port: port)
                        do {
                            if said {
                                Task {
                                    try? await server.waitUntilListening(timeout: 5)
                                    if await server.isListening {
                                        logger?.event("http", "\(name)'s health endpoints served on \(HTTPAddress(host: host, port: port)) again")
                                    }
                                }
                            }
                            try await server.run()
                        } catch is CancellationError {
                        } catch {
                            let failure = ClusterError(
                                "cannot serve \(name)'s health endpoints on \(HTTPAddress(host: host, port: port)): \(error)",
                                details: ["free the port (is another `pgcluster watch` of this spec running?), or choose another watch.http (node i answers on its port + i)"])
                            if strict { throw failure }
                            if Task.isCancelled { break }
                            if !said { logger?.event("http", failure.message + "; the other ports are served, this one is tried every second", level: .error) }
                            said = true
                            try? await Task.sleep(for: .seconds(1))
                            continue
                        }
                        break
                    }
                    return .ended
                }
            }
            group.addTask {
                for await next in reloads where Layout(next) != layout {
                    return .reloaded(next)
                }
                return .ended
            }
            for try await outcome in group {
                guard case .reloaded(let next) = outcome else { continue }
                // The listening sockets closed before the new order binds the same ports
                // (cancelled first: a server stopped under its run is no failure to log).
                group.cancelAll()
                for server in servers.all { await server.stop() }
                return next
            }
            return nil
        }
    }

    /// Binds every port once and lets it go, so that `watch` refuses to start, before the
    /// watcher may act, when a port is taken (another watcher of the same spec, say).
    public func checkPorts() throws(ClusterError) {
        for (index, node) in state.spec.nodes.enumerated() {
            let port = address.port(forNode: index)
            do {
                let socket = try Socket(domain: address.isIPv6 ? AF_INET6 : AF_INET)
                defer { try? socket.close() }
                try socket.setValue(true, for: .localAddressReuse)
                try socket.bind(to: try socketAddress(address, port: port))
            } catch {
                throw ClusterError(
                    "cannot serve \(node.name)'s health endpoints on \(HTTPAddress(host: address.host, port: port)): \(error)",
                    details: ["free the port (is another `pgcluster watch` of this spec running?), or choose another watch.http (node i answers on its port + i)"])
            }
        }
    }

    func socketAddress(_ address: HTTPAddress, port: Int) throws -> any SocketAddress {
        address.isIPv6
            ? try sockaddr_in6.inet6(ip6: address.host, port: UInt16(port))
            : try sockaddr_in.inet(ip4: address.host, port: UInt16(port))
    }
}

/// The endpoints of one node's port.
struct NodeHandler: HTTPHandler {
    let node: String
    let state: HealthState
    let metrics: WatchMetrics

    func handleRequest(_ request: HTTPRequest) async throws -> HTTPResponse {
        let statusOnly = request.method == .HEAD || request.method == .OPTIONS
        guard statusOnly || request.method == .GET else {
            return HTTPResponse(version: request.version, statusCode: .methodNotAllowed, headers: [HTTPHeader("Allow"): "GET, HEAD, OPTIONS"])
        }
        let query = request.query.map { "\($0.name)=\($0.value)" }.joined(separator: "&")
        let route = HealthCheck.route(path: request.path, query: query)
        let (snapshot, tick) = state.snapshot()
        let code = HealthCheck.status(route, node: node, in: snapshot)
        let status = HTTPStatusCode(code, phrase: Self.phrases[code] ?? "")
        if statusOnly { return HTTPResponse(version: request.version, statusCode: status) }
        let (type, body): (String, Data)
        switch route {
        case .cluster: (type, body) = ("application/json", state.clusterDocument(tick))
        case .metrics: (type, body) = ("text/plain; version=0.0.4", Data(metrics.render(snapshot, tick).utf8))
        case .badRequest(let reason): (type, body) = ("text/plain", Data((reason + "\n").utf8))
        case .notFound:
            (type, body) = (
                "text/plain",
                Data("no such path: /primary /leader /replica[?lag=16MB|5s] /read-only /sync /read-only-sync /quorum /read-only-quorum /async /health /liveness /readiness /cluster /metrics\n".utf8)
            )
        default: (type, body) = ("text/plain", Data("\(code == 200 ? "yes" : "no"): \(node) \(request.path)\n".utf8))
        }
        return HTTPResponse(version: request.version, statusCode: status, headers: [.contentType: type], body: body)
    }

    static let phrases = [200: "OK", 400: "Bad Request", 404: "Not Found", 503: "Service Unavailable"]
}
