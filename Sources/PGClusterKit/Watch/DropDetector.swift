import Foundation

/// Wakes the watcher the moment its primary's connection drops, instead of at the next
/// probe (issue 23: a crash or kill -9 closes every connection to the server at once).
///
/// On a thread of its own it holds one idle connection to the node the last tick found
/// primary and blocks on its socket (``PGConnection/waitForClose(timeout:)``). A close, a
/// reset or an error calls `onDrop` once; the watcher then probes at once and proves the
/// stop (no postmaster for the data directory) before its at-once path: a dropped
/// connection alone proves nothing. The interval probe stays the safety net for failures
/// that close nothing (a hung server, a cut network).
final class DropDetector: @unchecked Sendable {
    private let credentials: Credentials
    private let onDrop: @Sendable (String) -> Void
    private let lock = NSLock()
    private var node: NodeSpec?
    private var generation = 0
    private var stopped = false

    init(credentials: Credentials, onDrop: @escaping @Sendable (String) -> Void) {
        self.credentials = credentials
        self.onDrop = onDrop
        Thread.detachNewThread { [self] in loop() }
    }

    /// The node to hold a connection to from now on (nil: none answers as primary).
    func follow(_ node: NodeSpec?) {
        lock.withLock {
            guard self.node != node else { return }
            self.node = node
            generation += 1
        }
    }

    func stop() { lock.withLock { stopped = true } }

    private func current() -> (node: NodeSpec?, generation: Int, stopped: Bool) {
        lock.withLock { (node, generation, stopped) }
    }

    private func loop() {
        while true {
            let (node, generation, stopped) = current()
            if stopped { return }
            guard let node else {
                Thread.sleep(forTimeInterval: 0.1)
                continue
            }
            let target = Observer(credentials: credentials).target(node, connectTimeout: 2)
            guard let connection = try? PGConnection.connect(target) else {
                // Not reachable now: the probes decide; try again shortly.
                Thread.sleep(forTimeInterval: 0.2)
                continue
            }
            var dropped = false
            while !dropped {
                let now = current()
                if now.stopped || now.generation != generation { break }
                dropped = connection.waitForClose(timeout: 0.5)
            }
            connection.close()
            if dropped {
                onDrop(node.name)
                // Wait for the watcher to move on (a new primary) before connecting again.
                for _ in 0..<20 where current().generation == generation && !current().stopped {
                    Thread.sleep(forTimeInterval: 0.05)
                }
            }
        }
    }
}

/// A sleep that a signal ends early: the watcher's pause between probes, cut short by the
/// ``DropDetector``.
final class WakeSignal: @unchecked Sendable {
    private let lock = NSLock()
    private var pending = false
    private var waiter: CheckedContinuation<Void, Never>?
    private var cancelled = false

    func signal() {
        let resumed: CheckedContinuation<Void, Never>? = lock.withLock {
            if let waiter {
                self.waiter = nil
                return waiter
            }
            pending = true
            return nil
        }
        resumed?.resume()
    }

    /// Sleeps `seconds`, or less when signalled (a signal that came while awake counts).
    func sleep(_ seconds: Double) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: .seconds(seconds)) }
            group.addTask { await self.waitForSignal() }
            await group.next()
            group.cancelAll()
        }
    }

    private func waitForSignal() async {
        lock.withLock { cancelled = false }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now: Bool = lock.withLock {
                    if pending || cancelled {
                        pending = false
                        return true
                    }
                    waiter = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            let resumed: CheckedContinuation<Void, Never>? = lock.withLock {
                cancelled = true
                defer { waiter = nil }
                return waiter
            }
            resumed?.resume()
        }
    }
}
