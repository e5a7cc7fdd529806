import Foundation

/// The value of `work`, or nil when it has not come within `seconds`. The work is not
/// waited for past that: it finishes (or fails) on its own and its value is dropped. For a
/// step that must not hold up what follows it (a failover's look at the WAL archive on a
/// host that may be down), unlike a task group, which waits for every child.
func within<T: Sendable>(_ seconds: Double, _ work: @escaping @Sendable () async -> T) async -> T? {
    await withCheckedContinuation { continuation in
        let once = ResumeOnce(continuation)
        Task { once.resume(await work()) }
        Task {
            try? await Task.sleep(for: .seconds(seconds))
            once.resume(nil)
        }
    }
}

/// A continuation resumed by whichever caller comes first; later ones are ignored.
private final class ResumeOnce<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T?, Never>?

    init(_ continuation: CheckedContinuation<T?, Never>) { self.continuation = continuation }

    func resume(_ value: T?) {
        lock.lock()
        let waiting = continuation
        continuation = nil
        lock.unlock()
        waiting?.resume(returning: value)
    }
}
