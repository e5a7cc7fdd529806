import Foundation

/// Polls `condition` every `interval` until it holds or `timeout` seconds pass; true when it
/// held. For conditions that are cheap to ask (counters, an HTTP code, a file).
func pollUntil(_ timeout: Double, every interval: Duration = .milliseconds(50), _ condition: () -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return condition()
}

/// ``pollUntil(_:every:_:)`` for a condition that awaits (a request, a pgcluster run); one
/// that throws counts as not holding.
func pollUntil(_ timeout: Double, every interval: Duration = .milliseconds(50), _ condition: () async throws -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if (try? await condition()) == true { return true }
        try? await Task.sleep(for: interval)
    }
    return (try? await condition()) == true
}
