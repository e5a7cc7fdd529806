import Foundation
import Testing

@testable import PGClusterKit

/// `within`: a step's value in time, or nil without waiting for it (a failover's look at an
/// archive whose host may be down).
@Suite("within")
struct WithinTests {
    @Test("a value that comes in time is returned")
    func inTime() async {
        #expect(await within(30) { 42 } == 42)
    }

    @Test("work that does not end in time gives nil, and is not waited for")
    func late() async {
        // The work ends only once `within` has returned (or after 60 s, as a cap): had
        // `within` waited for it, it would have ended by the cap, never released. No clock
        // is compared, so a busy machine cannot fail this.
        let released = Flag(), releasedSeen = Flag(), ended = Flag()
        let value = await within(0.05) { () async -> Int in
            let cap = ContinuousClock.now + .seconds(60)
            while !released.isSet && ContinuousClock.now < cap { try? await Task.sleep(for: .milliseconds(10)) }
            if released.isSet { releasedSeen.set() }
            ended.set()
            return 1
        }
        released.set()
        #expect(value == nil)
        while !ended.isSet { try? await Task.sleep(for: .milliseconds(10)) }
        #expect(releasedSeen.isSet, "the work ended before within returned: within waited for it")
    }
}

/// A flag set once, read from any task.
private final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
