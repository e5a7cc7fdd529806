import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// The health endpoints' answers (README.md, "Health endpoints and HAProxy"; docs/ARCHITECTURE.md, "pgcluster watch") as tables: a
/// cluster as one tick saw it, a path on one node's port, the status code. No server.
@Suite("Health endpoints: Patroni's paths, 200 / 503 / 404")
struct HealthCheckTests {
    typealias Obs = NodeFixture

    /// A primary at 0/5000000 with db_1 streaming (caught up) and db_2 streaming 16 MB behind
    /// with 3 s of replay lag; db_3 in recovery but not streaming; db_4 down.
    static var cluster: [NodeObservation] {
        var lagging = NodeFixture.row("db_2")
        lagging.replayLagSeconds = 3
        let primary = Obs.primary(
            "db_0", current: "0/5000000", replication: [Obs.row("db_1"), lagging, Obs.row("db_3", state: "catchup")])
        return [
            primary,
            Obs.standby("db_1", replay: "0/5000000"),
            Obs.standby("db_2", replay: "0/4000000"),
            Obs.standby("db_3", replay: "0/5000000", receiver: "waiting"),
            Obs.down("db_4"),
        ]
    }

    /// db_1 streaming, its replay delay as it reports it, the primary measuring 0.5 s.
    static func delayed(_ seconds: Double) -> [NodeObservation] {
        var row = NodeFixture.row("db_1")
        row.replayLagSeconds = 0.5
        var standby = Obs.standby("db_1", replay: "0/4000000")
        standby.replayDelaySeconds = seconds
        return [Obs.primary("db_0", current: "0/5000000", replication: [row]), standby]
    }

    /// The primary's rows say how it counts each standby: db_1 `sync` (FIRST 1), db_2
    /// `potential`, db_3 `quorum` (ANY n), db_4 `async`, 16 MB behind.
    static var counted: [NodeObservation] {
        let primary = Obs.primary(
            "db_0", current: "0/5000000",
            replication: [Obs.row("db_1", sync: "sync"), Obs.row("db_2", sync: "potential"), Obs.row("db_3", sync: "quorum"), Obs.row("db_4")])
        return [
            primary, Obs.standby("db_1", replay: "0/5000000"), Obs.standby("db_2", replay: "0/5000000"),
            Obs.standby("db_3", replay: "0/5000000"), Obs.standby("db_4", replay: "0/4000000"),
        ]
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var path: String
        var query: String? = nil
        var node: String
        var code: Int
        var observations: [NodeObservation] = HealthCheckTests.cluster
        var sinceLastTick: Double? = 0.2
        var testDescription: String { "\(path)\(query.map { "?" + $0 } ?? "") on \(node) -> \(code)" }
    }

    static let cases: [Case] = [
        // The primary.
        Case(path: "/primary", node: "db_0", code: 200),
        Case(path: "/master", node: "db_0", code: 200),
        Case(path: "/read-write", node: "db_0", code: 200),
        Case(path: "/", node: "db_0", code: 200),
        Case(path: "/replica", node: "db_0", code: 503),
        Case(path: "/read-only", node: "db_0", code: 200),
        Case(path: "/health", node: "db_0", code: 200),
        Case(path: "/readiness", node: "db_0", code: 200),
        // A streaming standby that has replayed everything.
        Case(path: "/primary", node: "db_1", code: 503),
        Case(path: "/replica", node: "db_1", code: 200),
        Case(path: "/replica", query: "lag=0", node: "db_1", code: 200),
        Case(path: "/replica", query: "lag=1s", node: "db_1", code: 200),
        Case(path: "/read-only", node: "db_1", code: 200),
        Case(path: "/health", node: "db_1", code: 200),
        Case(path: "/readiness", node: "db_1", code: 200),
        // A streaming standby 16 MB (16777216 bytes) and 3 s behind in replay.
        Case(path: "/replica", node: "db_2", code: 200),
        Case(path: "/replica", query: "lag=16MB", node: "db_2", code: 200),
        Case(path: "/replica", query: "lag=16777216", node: "db_2", code: 200),
        Case(path: "/replica", query: "lag=16777215", node: "db_2", code: 503),
        Case(path: "/replica", query: "lag=1MB", node: "db_2", code: 503),
        Case(path: "/replica", query: "lag=1048576", node: "db_2", code: 503),
        Case(path: "/replica", query: "lag=1gb", node: "db_2", code: 200),
        Case(path: "/replica", query: "lag=5s", node: "db_2", code: 200),
        Case(path: "/replica", query: "lag=2s", node: "db_2", code: 503),
        Case(path: "/replica", query: "lag=2500ms", node: "db_2", code: 503),
        Case(path: "/read-only", query: "lag=1MB", node: "db_2", code: 503),
        Case(path: "/read-only", query: "lag=1MB", node: "db_0", code: 200),
        Case(path: "/replica", query: "other=1&lag=16MB", node: "db_2", code: 200),
        Case(path: "/replica", query: "lag=soon", node: "db_2", code: 400),
        // In recovery, but not streaming: healthy, not a replica, not ready.
        Case(path: "/replica", node: "db_3", code: 503),
        Case(path: "/read-only", node: "db_3", code: 503),
        Case(path: "/health", node: "db_3", code: 200),
        Case(path: "/readiness", node: "db_3", code: 503),
        // Down: nothing but the process-wide liveness.
        Case(path: "/primary", node: "db_4", code: 503),
        Case(path: "/replica", node: "db_4", code: 503),
        Case(path: "/read-only", node: "db_4", code: 503),
        Case(path: "/health", node: "db_4", code: 503),
        Case(path: "/readiness", node: "db_4", code: 503),
        Case(path: "/liveness", node: "db_4", code: 200),
        // Liveness: the loop probed within 3 intervals (0.5 s here).
        Case(path: "/liveness", node: "db_0", code: 200, sinceLastTick: 1.5),
        Case(path: "/liveness", node: "db_0", code: 503, sinceLastTick: 1.6),
        Case(path: "/liveness", node: "db_0", code: 503, sinceLastTick: nil),
        // Always 200, and 404 for what is not a path here.
        Case(path: "/cluster", node: "db_4", code: 200),
        Case(path: "/metrics", node: "db_4", code: 200),
        Case(path: "/sync/", node: "db_0", code: 404),
        Case(path: "/primary/", node: "db_0", code: 404),
        Case(path: "/etc/passwd", node: "db_0", code: 404),
        // The standby's own replay delay (replay paused: WAL waits, 10 s since the last
        // replayed commit) goes before what the primary measured.
        Case(path: "/replica", query: "lag=5s", node: "db_1", code: 503, observations: HealthCheckTests.delayed(10)),
        Case(path: "/replica", query: "lag=1min", node: "db_1", code: 200, observations: HealthCheckTests.delayed(10)),
        Case(path: "/replica", query: "lag=1s", node: "db_1", code: 200, observations: HealthCheckTests.delayed(0)),
        // /leader is the primary (no standby leader here); /sync, /quorum and /async by the
        // primary's sync_state; the read-only variants take the primary too.
        Case(path: "/leader", node: "db_0", code: 200),
        Case(path: "/leader", node: "db_1", code: 503),
        Case(path: "/sync", node: "db_1", code: 200, observations: HealthCheckTests.counted),
        Case(path: "/synchronous", node: "db_1", code: 200, observations: HealthCheckTests.counted),
        Case(path: "/sync", node: "db_2", code: 503, observations: HealthCheckTests.counted),
        Case(path: "/sync", node: "db_3", code: 503, observations: HealthCheckTests.counted),
        Case(path: "/sync", node: "db_0", code: 503, observations: HealthCheckTests.counted),
        Case(path: "/read-only-sync", node: "db_0", code: 200, observations: HealthCheckTests.counted),
        Case(path: "/read-only-sync", node: "db_1", code: 200, observations: HealthCheckTests.counted),
        Case(path: "/read-only-sync", node: "db_4", code: 503, observations: HealthCheckTests.counted),
        Case(path: "/quorum", node: "db_3", code: 200, observations: HealthCheckTests.counted),
        Case(path: "/quorum", node: "db_1", code: 503, observations: HealthCheckTests.counted),
        Case(path: "/read-only-quorum", node: "db_0", code: 200, observations: HealthCheckTests.counted),
        Case(path: "/read-only-quorum", node: "db_3", code: 200, observations: HealthCheckTests.counted),
        Case(path: "/async", node: "db_2", code: 200, observations: HealthCheckTests.counted),
        Case(path: "/asynchronous", node: "db_4", code: 200, observations: HealthCheckTests.counted),
        Case(path: "/async", query: "lag=1MB", node: "db_4", code: 503, observations: HealthCheckTests.counted),
        Case(path: "/async", query: "lag=16MB", node: "db_4", code: 200, observations: HealthCheckTests.counted),
        Case(path: "/async", node: "db_1", code: 503, observations: HealthCheckTests.counted),
        Case(path: "/async", node: "db_3", code: 503, observations: HealthCheckTests.counted),
        Case(path: "/async", node: "db_0", code: 503, observations: HealthCheckTests.counted),
        // Not streaming (db_3 of the first cluster): no /async either.
        Case(path: "/async", node: "db_3", code: 503),
        // A standby that streams from somewhere the primary does not list is no replica of it.
        Case(
            path: "/replica", node: "db_1", code: 503,
            observations: [Obs.primary("db_0", current: "0/5000000"), Obs.standby("db_1", replay: "0/5000000")]),
        // No primary answers: no replica either, and no /primary anywhere.
        Case(path: "/replica", node: "db_1", code: 503, observations: [Obs.down("db_0", role: .primary), Obs.standby("db_1", replay: "0/5000000")]),
        Case(path: "/primary", node: "db_1", code: 503, observations: [Obs.down("db_0", role: .primary), Obs.standby("db_1", replay: "0/5000000")]),
        // A deposed primary back on an older timeline is not /primary; the newest one is.
        Case(
            path: "/primary", node: "db_0", code: 503,
            observations: [Obs.primary("db_0", current: "0/9000000", timeline: 1), Obs.primary("db_1", current: "0/5000000", timeline: 2)]),
        Case(
            path: "/primary", node: "db_1", code: 200,
            observations: [Obs.primary("db_0", current: "0/9000000", timeline: 1), Obs.primary("db_1", current: "0/5000000", timeline: 2)]),
        // Two primaries level on timeline and position: neither is /primary.
        Case(
            path: "/primary", node: "db_0", code: 503,
            observations: [Obs.primary("db_0", current: "0/5000000", timeline: 2), Obs.primary("db_1", current: "0/5000000", timeline: 2)]),
    ]

    @Test("the status code of a path on a node's port", arguments: cases)
    func code(_ c: Case) {
        let snapshot = HealthCheck.Snapshot(observations: c.observations, sinceLastTick: c.sinceLastTick, interval: 0.5)
        let route = HealthCheck.route(path: c.path, query: c.query)
        #expect(HealthCheck.status(route, node: c.node, in: snapshot) == c.code)
    }

    @Test(
        "lag limits: sizes in PostgreSQL's units, plain bytes, durations",
        arguments: [
            ("16MB", HealthCheck.LagLimit.bytes(16 << 20)), ("1048576", .bytes(1_048_576)), ("64kB", .bytes(65536)),
            ("1GB", .bytes(1 << 30)), ("0", .bytes(0)), ("100B", .bytes(100)), ("5s", .seconds(5)), ("500ms", .seconds(0.5)),
            ("1min", .seconds(60)), ("1h", .seconds(3600)), ("1.5s", .seconds(1.5)),
        ])
    func lag(_ text: String, _ expected: HealthCheck.LagLimit) {
        #expect(HealthCheck.LagLimit(parsing: text) == expected)
    }

    @Test("lag values that are refused", arguments: ["", "MB", "-1", "5 parsecs", "1e30", "16M", "five"])
    func badLag(_ text: String) {
        #expect(HealthCheck.LagLimit(parsing: text) == nil)
        if case .badRequest(let reason) = HealthCheck.route(path: "/replica", query: "lag=\(text)") {
            #expect(reason.contains("not a size"))
        } else {
            Issue.record("lag=\(text) was accepted")
        }
    }
}
