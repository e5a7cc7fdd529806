import Foundation

/// Connections kept open for the length of one operation (a failover, a switchover), so
/// that its steps on one server share a session: with TLS, a handshake and a backend fork
/// cost more than the statements, and a failover's critical path is a chain of such steps
/// (freeze, read the frozen positions, wait for replay, set the synchronous names,
/// promote). Inside ``keep(_:)``, every libpq step of ``ServerOps`` and ``Observer``
/// takes the kept connection to its server when there is one, and gives it back when it
/// succeeded. A connection whose step failed is closed, never given back; one that the
/// server closed meanwhile is replaced by a new one before anything runs on it. Outside
/// `keep`, each step opens and closes its own connection, as before.
///
/// The watcher keeps one across its ticks (``holding(_:_:)``): its probes then cost a query,
/// not a handshake and a backend, and the failover it carries out finds the standbys'
/// connections open (a `keep` inside an operation that keeps already uses the outer one).
public final class ServerSessions: @unchecked Sendable {
    /// The sessions of the operation running in this task (and the tasks it starts).
    @TaskLocal static var current: ServerSessions?

    private let lock = NSLock()
    private var idle: [String: PGConnection] = [:]
    private var ended = false

    /// Runs `body` with connections kept per server, and closes them all when it ends; inside
    /// an outer `keep` or ``holding(_:_:)``, with the outer connections (left open).
    public static func keep<T>(_ body: () async throws(ClusterError) -> T) async throws(ClusterError) -> T {
        if current != nil { return try await body() }
        let sessions = ServerSessions()
        defer { sessions.end() }
        let result: Result<T, ClusterError> = await $current.withValue(sessions) {
            do throws(ClusterError) { return .success(try await body()) } catch { return .failure(error) }
        }
        return try result.get()
    }

    /// Runs `body` with `sessions` kept across it; the caller ends them (``end()``).
    static func holding<T>(_ sessions: ServerSessions, _ body: () async -> T) async -> T {
        await $current.withValue(sessions, operation: body)
    }

    static func key(_ target: ConnectionTarget) -> String {
        "\(target.user)@\(target.host):\(target.port)/\(target.database)"
    }

    /// A kept connection to `target`, taken out (no other step can use it meanwhile).
    func take(_ target: ConnectionTarget) -> PGConnection? {
        lock.withLock { idle.removeValue(forKey: Self.key(target)) }
    }

    /// Keeps `connection` for the next step on its server; closes it when one is kept
    /// already or the operation has ended.
    func give(_ connection: PGConnection) {
        let extra: PGConnection? = lock.withLock {
            let key = Self.key(connection.target)
            if ended || idle[key] != nil { return connection }
            idle[key] = connection
            return nil
        }
        extra?.close()
    }

    /// Closes the connections kept now; later steps open new ones (and keep those). The
    /// watcher's, when the spec was reloaded: hosts, credentials or the CA may have changed.
    func closeIdle() {
        let open = lock.withLock {
            defer { idle = [:] }
            return Array(idle.values)
        }
        for connection in open { connection.close() }
    }

    func end() {
        let open = lock.withLock {
            ended = true
            defer { idle = [:] }
            return Array(idle.values)
        }
        for connection in open { connection.close() }
    }

    /// Runs `work` on a connection to `target`: the kept one of `sessions` when there is one
    /// and the server has not closed it, else a new one; given back to `sessions` when
    /// `work` succeeded, closed otherwise (and always without `sessions`). Blocking: call it
    /// from ``Blocking``'s threads.
    static func with<T>(
        _ target: ConnectionTarget, _ sessions: ServerSessions?, _ work: (PGConnection) throws(PGError) -> T
    ) throws(PGError) -> T {
        // A kept connection the server closed since its last step (it restarted) is
        // replaced before anything runs on it: nothing is ever run twice.
        var kept = sessions?.take(target)
        if let closed = kept, closed.waitForClose(timeout: 0) {
            closed.close()
            kept = nil
        }
        if let kept {
            // The deadline of the work now running ends it too.
            if let scope = DeadlineScope.current, !scope.adopt(kept) {
                kept.close()
                throw PGError(message: "the deadline passed before the statement", target: target.description)
            }
            do throws(PGError) {
                let value = try work(kept)
                sessions?.give(kept)
                return value
            } catch {
                kept.close()
                throw error
            }
        }
        let connection = try PGConnection.connect(target)
        do throws(PGError) {
            let value = try work(connection)
            if let sessions { sessions.give(connection) } else { connection.close() }
            return value
        } catch {
            connection.close()
            throw error
        }
    }
}
