import Foundation

/// The value of `work`, or nil when it has not come within `seconds`. The work is not
/// waited for past that: it finishes (or fails) on its own and its value is dropped. For a
/// step that must not hold up what follows it (a failover's look at the WAL archive on a
/// host that may be down), unlike a task group, which waits for every child.
func within<T: Sendable>(_ seconds: Double, _ work: @escaping @Sendable () async -> T) async -> T? {
    let once = ResumeOnce<T?>()
    return await withCheckedContinuation { continuation in
        once.set(continuation)
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
    private var continuation: CheckedContinuation<T, Never>?
    private var early: T??

    func set(_ continuation: CheckedContinuation<T, Never>) {
        lock.lock()
        if let value = early {
            lock.unlock()
            continuation.resume(returning: value!)
            return
        }
        self.continuation = continuation
        lock.unlock()
    }

    func resume(_ value: T) {
        lock.lock()
        guard let continuation else {
            if early == nil { early = .some(value) }
            lock.unlock()
            return
        }
        self.continuation = nil
        early = .some(value)
        lock.unlock()
        continuation.resume(returning: value)
    }
}
