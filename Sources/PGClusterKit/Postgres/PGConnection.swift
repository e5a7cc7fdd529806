import CLibPQ
import Foundation

/// Where and as whom to connect. The password travels to libpq as a separate
/// parameter, never inside a connection string, and is never part of a description.
public struct ConnectionTarget: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var user: String
    public var password: String?
    public var database: String
    /// Seconds libpq may take to connect and authenticate (the whole startup).
    public var connectTimeout: Int
    /// The CA certificate (a path on this machine) the server's certificate must chain to,
    /// with its name matching `host` (`sslmode=verify-full`); nil: no TLS (`sslmode=disable`).
    public var rootCertificate: String?

    public init(
        host: String, port: Int, user: String, password: String?, database: String = "postgres",
        connectTimeout: Int = 2, rootCertificate: String? = nil
    ) {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.database = database
        self.connectTimeout = connectTimeout
        self.rootCertificate = rootCertificate
    }

    /// libpq's TLS settings for this target.
    var tlsParameters: [(String, String)] {
        guard let rootCertificate else { return [("sslmode", "disable")] }
        return [("sslmode", "verify-full"), ("sslrootcert", rootCertificate)]
    }

    public var description: String { "\(user)@\(host):\(port)/\(database)" }
}

/// An error from PostgreSQL or libpq, with the fields an operator needs.
public struct PGError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var sqlState: String?
    public var detail: String?
    public var hint: String?
    /// `user@host:port/db` of the server involved.
    public var target: String

    public var description: String {
        var text = "\(target): \(message)"
        if let sqlState { text += " (SQLSTATE \(sqlState))" }
        if let detail { text += "; \(detail)" }
        if let hint { text += "; hint: \(hint)" }
        return text
    }
}

/// Rows of a query, as text, with column names.
public struct QueryResult: Sendable {
    public var columns: [String]
    public var rows: [[String?]]

    public func value(_ row: Int, _ column: String) -> String? {
        guard row < rows.count, let index = columns.firstIndex(of: column) else { return nil }
        return rows[row][index]
    }

    /// The first column of the first row.
    public var scalar: String? { rows.first?.first ?? nil }
}

/// One libpq connection. Owns its `PGconn`: `deinit` calls `PQfinish`, also when the
/// connection failed; `close()` may be called any number of times.
///
/// libpq calls block the calling thread. Call them through ``Blocking`` from async code.
public final class PGConnection: @unchecked Sendable {
    private var conn: OpaquePointer?
    private let lock = NSLock()
    public let target: ConnectionTarget

    private init(conn: OpaquePointer?, target: ConnectionTarget) {
        self.conn = conn
        self.target = target
    }

    deinit { close() }

    public static func connect(_ target: ConnectionTarget) throws(PGError) -> PGConnection {
        var parameters = [
            ("host", target.host), ("port", String(target.port)), ("user", target.user), ("dbname", target.database),
            ("connect_timeout", String(target.connectTimeout)), ("application_name", "pgcluster"),
        ] + target.tlsParameters
        if let password = target.password { parameters.append(("password", password)) }
        return try open(parameters, expandDatabase: false, target: target, described: target.description)
    }

    /// Connects with a libpq connection string (multi-host and all), adding a password
    /// separately so it never has to sit in the string.
    public static func connect(conninfo: String, password: String? = nil) throws(PGError) -> PGConnection {
        var parameters = [("dbname", conninfo)]
        if let password { parameters.append(("password", password)) }
        let target = ConnectionTarget(host: "(connection string)", port: 0, user: "", password: nil)
        return try open(parameters, expandDatabase: true, target: target, described: "connection string")
    }

    /// PQconnectdbParams; on failure the PGconn is still finished (by the wrapper's deinit).
    private static func open(
        _ parameters: [(String, String)], expandDatabase: Bool, target: ConnectionTarget, described: String
    ) throws(PGError) -> PGConnection {
        let conn = withCStringArray(parameters.map(\.0)) { keys in
            withCStringArray(parameters.map(\.1)) { values in PQconnectdbParams(keys, values, expandDatabase ? 1 : 0) }
        }
        let connection = PGConnection(conn: conn, target: target)
        guard let conn, PQstatus(conn) == CONNECTION_OK else {
            let message = conn.map { String(cString: PQerrorMessage($0)) } ?? "out of memory"
            throw PGError(message: Self.clean(message), target: described)
        }
        silenceNotices(conn)
        // Opened inside work whose deadline already passed: end it now, never leave it open.
        if let scope = DeadlineScope.current, !scope.adopt(connection) {
            connection.close()
            throw PGError(message: "the deadline passed while connecting", target: described)
        }
        return connection
    }

    /// The port of the server this connection reached (useful with multi-host strings).
    public var connectedPort: Int? {
        guard let conn, let port = PQport(conn) else { return nil }
        return Int(String(cString: port))
    }

    /// True when the connection is closed or libpq found it broken (the server went away).
    public var isBroken: Bool {
        lock.withLock { conn.map { PQstatus($0) != CONNECTION_OK } ?? true }
    }

    public func close() {
        lock.withLock {
            if let conn { PQfinish(conn) }
            conn = nil
        }
    }

    /// Runs one statement with text parameters (`$1`, `$2`, ...), returning its rows.
    @discardableResult
    public func query(_ sql: String, _ parameters: [String?] = []) throws(PGError) -> QueryResult {
        guard let conn else { throw PGError(message: "connection is closed", target: target.description) }
        let result: OpaquePointer? = withOptionalCStringArray(parameters) { params in
            PQexecParams(conn, sql, Int32(parameters.count), nil, params, nil, nil, 0)
        }
        defer { PQclear(result) }
        guard let result else {
            throw PGError(message: Self.clean(String(cString: PQerrorMessage(conn))), target: target.description)
        }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            break
        default:
            func field(_ code: Character) -> String? {
                PQresultErrorField(result, Int32(code.asciiValue!)).map { String(cString: $0) }
            }
            let primary = field("M") ?? Self.clean(String(cString: PQresultErrorMessage(result)))
            throw PGError(
                message: primary, sqlState: field("C"), detail: field("D"), hint: field("H"),
                target: target.description)
        }
        let columnCount = PQnfields(result)
        let rowCount = PQntuples(result)
        let columns = (0..<columnCount).map { String(cString: PQfname(result, $0)) }
        var rows: [[String?]] = []
        rows.reserveCapacity(Int(rowCount))
        for r in 0..<rowCount {
            rows.append(
                (0..<columnCount).map { c in
                    PQgetisnull(result, r, c) == 1 ? nil : String(cString: PQgetvalue(result, r, c))
                })
        }
        return QueryResult(columns: columns, rows: rows)
    }

    /// Blocks up to `timeout` seconds on the idle connection's socket; true when the server
    /// closed it or it broke (a crash, kill -9, a reset), false when nothing happened. An
    /// idle PostgreSQL connection receives nothing, so readable means gone (or a notice,
    /// which is consumed). For the watcher's drop detection; no query may run meanwhile.
    public func waitForClose(timeout: Double) -> Bool {
        guard let conn else { return true }
        let socket = PQsocket(conn)
        guard socket >= 0 else { return true }
        var entry = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        let ready = poll(&entry, 1, Int32((timeout * 1000).rounded()))
        if ready == 0 { return false }
        if ready < 0 { return errno != EINTR }
        if entry.revents & Int16(POLLHUP | POLLERR | POLLNVAL) != 0 { return true }
        // Readable: either an async message (consumed) or end of stream / error.
        if PQconsumeInput(conn) == 0 { return true }
        return PQstatus(conn) != CONNECTION_OK
    }

    /// Asks the server to cancel the statement running on this connection. Safe to call
    /// from another thread while `query` blocks.
    public func cancel() {
        lock.withLock {
            guard let conn, let handle = PQgetCancel(conn) else { return }
            var buffer = [CChar](repeating: 0, count: 256)
            _ = PQcancel(handle, &buffer, Int32(buffer.count))
            PQfreeCancel(handle)
        }
    }

    /// Ends whatever this connection is doing, from another thread, when its deadline passed:
    /// the socket is shut down (a `query` blocked on it returns at once with an error, and its
    /// caller closes the connection), then the server is asked to cancel the statement
    /// (PQcancel, on a connection of its own), so it does not run on for nobody.
    func abort() {
        let handle: OpaquePointer? = lock.withLock {
            guard let conn else { return nil }
            let handle = PQgetCancel(conn)
            let socket = PQsocket(conn)
            if socket >= 0 { shutdown(socket, Int32(SHUT_RDWR)) }
            return handle
        }
        guard let handle else { return }
        var buffer = [CChar](repeating: 0, count: 256)
        _ = PQcancel(handle, &buffer, Int32(buffer.count))
        PQfreeCancel(handle)
    }

    /// The SCRAM-SHA-256 verifier of a login's password, computed here so that the clear
    /// password never reaches the server (or its logs) in a CREATE/ALTER ROLE: for a
    /// password pgcluster generated, with few iterations (``SCRAMSecret``); for any other,
    /// libpq's, with PostgreSQL's default.
    public func scramVerifier(for login: Credentials.Login) throws(PGError) -> String {
        if login.generated, let secret = SCRAMSecret.make(password: login.password) { return secret }
        return try scramVerifier(user: login.user, password: login.password)
    }

    /// libpq's SCRAM-SHA-256 verifier (SASLprep, PostgreSQL's default iterations) made with
    /// no server: PQencryptPasswordConn given the algorithm asks none, but wants a PGconn,
    /// so it gets one that was never connected. nil when libpq cannot make it.
    public static func offlineScramVerifier(user: String, password: String) -> String? {
        guard let conn = PQconnectStart("host=/nonexistent-pgcluster-socket-dir connect_timeout=1") else { return nil }
        defer { PQfinish(conn) }
        guard let encrypted = PQencryptPasswordConn(conn, password, user, "scram-sha-256") else { return nil }
        defer { PQfreemem(encrypted) }
        return String(cString: encrypted)
    }

    /// libpq's SCRAM-SHA-256 verifier of a password.
    public func scramVerifier(user: String, password: String) throws(PGError) -> String {
        guard let conn, let encrypted = PQencryptPasswordConn(conn, password, user, "scram-sha-256") else {
            throw PGError(message: "cannot compute the SCRAM verifier", target: target.description)
        }
        defer { PQfreemem(encrypted) }
        return String(cString: encrypted)
    }

    /// The server's major version number, such as 15.
    public var serverMajorVersion: Int {
        guard let conn else { return 0 }
        return Int(PQserverVersion(conn)) / 10000
    }

    private static func clean(_ message: String) -> String {
        message.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            .joined(separator: " ")
    }
}

/// libpq prints notices and warnings (NOTICE, "terminating connection") to stderr by
/// default; pgcluster reports what matters itself, so they are dropped.
private func silenceNotices(_ conn: OpaquePointer) {
    PQsetNoticeProcessor(conn, { _, _ in }, nil)
}

private func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let pointers = strings.map { strdup($0) }
    defer { pointers.forEach { free($0) } }
    var array: [UnsafePointer<CChar>?] = pointers.map { UnsafePointer($0) }
    array.append(nil)
    return array.withUnsafeBufferPointer { body($0.baseAddress!) }
}

private func withOptionalCStringArray<R>(_ strings: [String?], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R {
    if strings.isEmpty { return body(nil) }
    let pointers = strings.map { $0.map { strdup($0) } ?? nil }
    defer { pointers.forEach { free($0) } }
    let array: [UnsafePointer<CChar>?] = pointers.map { $0.map { UnsafePointer($0) } }
    return array.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// Runs blocking work (libpq calls) on a thread of its own, off Swift's cooperative
/// pool, with a deadline: when the deadline passes first, the caller gets `nil` at once,
/// and every libpq connection the work opened is ended (``PGConnection/abort()``: its socket
/// shut down, its statement cancelled on the server), so the thread returns soon and closes
/// it rather than holding a connection and a server backend open.
public enum Blocking {
    public static func run<T: Sendable>(timeout: Double, _ work: @escaping @Sendable () -> T) async -> T? {
        let scope = DeadlineScope()
        return await withCheckedContinuation { (continuation: CheckedContinuation<T?, Never>) in
            let once = Once()
            Thread.detachNewThread {
                Thread.current.threadDictionary[DeadlineScope.key] = scope
                let value = work()
                Thread.current.threadDictionary[DeadlineScope.key] = nil
                if once.claim() { continuation.resume(returning: value) }
            }
            DispatchQueue.global().asyncAfter(deadline: .now() + timeout) {
                if once.claim() {
                    continuation.resume(returning: nil)
                    // PQcancel may wait on a host that does not answer: never on this queue.
                    Thread.detachNewThread { scope.abort() }
                }
            }
        }
    }

    /// Runs blocking work without a deadline.
    public static func run<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
            Thread.detachNewThread { continuation.resume(returning: work()) }
        }
    }
}

/// The libpq connections opened by one ``Blocking/run(timeout:_:)`` work, found through its
/// thread (so every caller of libpq gets the deadline without passing anything down).
final class DeadlineScope: NSObject, @unchecked Sendable {
    static let key = "pgcluster.deadline-scope"
    private let lock = NSLock()
    private var connections: [Weak] = []
    private var aborted = false

    private struct Weak { weak var connection: PGConnection? }

    /// The scope of the work running on this thread, if any.
    static var current: DeadlineScope? { Thread.current.threadDictionary[key] as? DeadlineScope }

    /// Keeps `connection` to end at the deadline; false when the deadline already passed.
    func adopt(_ connection: PGConnection) -> Bool {
        lock.withLock {
            guard !aborted else { return false }
            connections.removeAll { $0.connection == nil }
            connections.append(Weak(connection: connection))
            return true
        }
    }

    func abort() {
        let open = lock.withLock {
            aborted = true
            return connections.compactMap(\.connection)
        }
        for connection in open { connection.abort() }
    }
}

/// A flag that can be claimed once, from any thread.
final class Once: @unchecked Sendable {
    private let lock = NSLock()
    private var claimed = false

    func claim() -> Bool {
        lock.withLock {
            defer { claimed = true }
            return !claimed
        }
    }
}
