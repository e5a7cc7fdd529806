import FlyingFox
import FlyingSocks
import Foundation
import ServiceLifecycle

/// `watch.http`: node i's health endpoints on port + i, beside the watcher in its service
/// group (README.md, "Health endpoints and HAProxy"; docs/ARCHITECTURE.md, "pgcluster watch"). Each port answers GET, HEAD and
/// OPTIONS from the last tick in ``HealthState``; what each path means is ``HealthCheck``.
/// HEAD and OPTIONS (what HAProxy's `option httpchk` sends) get the status line only.
/// Served by FlyingFox: Swift concurrency over non-blocking sockets, no SwiftNIO.
public struct HealthServer: Service {
    public let state: HealthState
    public let metrics: WatchMetrics
    public let address: HTTPAddress

    public init(state: HealthState, address: HTTPAddress) {
        self.state = state
        self.address = address
        metrics = WatchMetrics(spec: state.spec)
    }

    public func run() async throws {
        let servers = try state.spec.nodes.enumerated().map { index, node in
            let port = address.port(forNode: index)
            return HTTPServer(
                address: try socketAddress(port: port), timeout: 5, logger: .disabled,
                handler: NodeHandler(node: node.name, state: state, metrics: metrics))
        }
        do {
            try await cancelWhenGracefulShutdown {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for (index, server) in servers.enumerated() {
                        let port = address.port(forNode: index)
                        let name = state.spec.nodes[index].name
                        group.addTask {
                            do {
                                try await server.run()
                            } catch is CancellationError {
                            } catch {
                                throw ClusterError(
                                    "cannot serve \(name)'s health endpoints on \(HTTPAddress(host: address.host, port: port)): \(error)",
                                    details: ["free the port (is another `pgcluster watch` of this spec running?), or choose another watch.http (node i answers on its port + i)"])
                            }
                        }
                    }
                    try await group.waitForAll()
                }
            }
        } catch where Task.isShuttingDownGracefully || Task.isCancelled {}
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
                try socket.bind(to: try socketAddress(port: port))
            } catch {
                throw ClusterError(
                    "cannot serve \(node.name)'s health endpoints on \(HTTPAddress(host: address.host, port: port)): \(error)",
                    details: ["free the port (is another `pgcluster watch` of this spec running?), or choose another watch.http (node i answers on its port + i)"])
            }
        }
    }

    func socketAddress(port: Int) throws -> any SocketAddress {
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
                Data("no such path: /primary /replica[?lag=16MB|5s] /read-only /health /liveness /readiness /cluster /metrics\n".utf8)
            )
        default: (type, body) = ("text/plain", Data("\(code == 200 ? "yes" : "no"): \(node) \(request.path)\n".utf8))
        }
        return HTTPResponse(version: request.version, statusCode: status, headers: [.contentType: type], body: body)
    }

    static let phrases = [200: "OK", 400: "Bad Request", 404: "Not Found", 503: "Service Unavailable"]
}
