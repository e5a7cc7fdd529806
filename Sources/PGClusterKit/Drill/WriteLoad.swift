import Foundation

/// Concurrent writers that insert one row per transaction through the read-write
/// connection string and remember every id whose COMMIT returned: the client-side
/// truth against which a failover's losses are counted. Used by `pgcluster drill` and
/// by the tests.
public final class WriteLoad: @unchecked Sendable {
    public static let table = "pgcluster_drill"

    public struct Summary: Sendable {
        /// Ids whose INSERT (autocommit) returned success.
        public var acknowledged: [Int64]
        /// Statements that failed (connection lost, read-only, refused).
        public var failures: Int
        /// Wall-clock time of every acknowledgement, for gaps.
        public var ackTimes: [Date]
        /// The server port each acknowledgement came from, in the same order.
        public var ackPorts: [Int]
    }

    private let conninfo: String
    private let password: String
    private let clients: Int
    /// Added to each writer's number, so that a second load on the same table writes ids of its own.
    private let firstWriter: Int
    private let lock = NSLock()
    private var acknowledged: [Int64] = []
    private var ackTimes: [Date] = []
    private var ackPorts: [Int] = []
    private var failures = 0
    private var stopping = false
    /// Set once `stop` cancels statements: a cancelled wait for synchronous replication
    /// still reports success (committed locally only), so nothing after it counts.
    private var cancelled = false
    private var threads = 0
    private let done = DispatchGroup()
    /// Each writer's current connection, so `stop` can cancel statements stuck waiting.
    private var connections: [Int: PGConnection] = [:]

    public init(conninfo: String, password: String, clients: Int, firstWriter: Int = 0) {
        self.conninfo = conninfo
        self.password = password
        self.clients = clients
        self.firstWriter = firstWriter
    }

    /// Creates the table the writers fill (through the same connection string).
    public static func prepare(conninfo: String, password: String) throws(PGError) {
        let connection = try PGConnection.connect(conninfo: conninfo, password: password)
        defer { connection.close() }
        try connection.query(
            "CREATE TABLE IF NOT EXISTS \(table) (id bigint PRIMARY KEY, writer int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())")
    }

    public func start() {
        for writer in firstWriter..<(firstWriter + clients) {
            done.enter()
            Thread.detachNewThread { [self] in
                self.write(as: writer)
                done.leave()
            }
        }
    }

    public var counts: (acknowledged: Int, failures: Int) {
        lock.withLock { (acknowledged.count, failures) }
    }

    /// Stops the writers and returns what they recorded. A statement still waiting (for
    /// a quorum, say) is cancelled; it was never acknowledged.
    public func stop() async -> Summary {
        lock.withLock { stopping = true }
        let group = done
        let finished = await Blocking.run(timeout: 5) { group.wait(); return true }
        if finished == nil {
            lock.withLock {
                cancelled = true
                connections.values.forEach { $0.cancel() }
            }
            _ = await Blocking.run(timeout: 10) { group.wait(); return true }
        }
        return lock.withLock { Summary(acknowledged: acknowledged, failures: failures, ackTimes: ackTimes, ackPorts: ackPorts) }
    }

    private var isStopping: Bool { lock.withLock { stopping } }

    private func write(as writer: Int) {
        var connection: PGConnection?
        var sequence: Int64 = 0
        var port = 0
        while !isStopping {
            if connection == nil {
                do {
                    let fresh = try PGConnection.connect(conninfo: conninfo, password: password)
                    connection = fresh
                    port = fresh.connectedPort ?? 0
                    lock.withLock { connections[writer] = fresh }
                } catch {
                    lock.withLock { failures += 1 }
                    usleep(20_000)
                    continue
                }
            }
            sequence += 1
            let id = Int64(writer) << 32 | sequence
            do {
                try connection!.query("INSERT INTO \(Self.table) (id, writer) VALUES ($1, $2)", [String(id), String(writer)])
                let now = Date()
                lock.withLock {
                    if !cancelled {
                        acknowledged.append(id)
                        ackTimes.append(now)
                        ackPorts.append(port)
                    }
                }
            } catch {
                lock.withLock {
                    failures += 1
                    connections[writer] = nil
                }
                connection?.close()
                connection = nil
                usleep(10_000)
            }
        }
        connection?.close()
    }
}
