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
        let began = ContinuousClock.now
        let value = await within(0.05) { () async -> Int in
            try? await Task.sleep(for: .seconds(20))
            return 1
        }
        #expect(value == nil)
        // The work sleeps 20 s: returning well before that shows it was not waited for.
        #expect(ContinuousClock.now - began < .seconds(10))
    }
}
