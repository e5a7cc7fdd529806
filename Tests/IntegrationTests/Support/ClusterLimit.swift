import Foundation
import Testing

/// How many integration tests that run clusters may run at once, across every suite.
///
/// Suites are `.serialized` inside but run beside each other, and each cluster is three
/// or more servers, a pgcluster process and its children: sixteen suites at once put a
/// load of 13 on two cores, and then a healthy server misses a 2 s probe. Every suite
/// that starts servers carries `.clusterLimit`, so each of its tests waits for a slot.
/// The number follows the cores (two per core, at least two), or
/// `PGCLUSTER_TEST_CLUSTERS` when set.
actor ClusterSlots {
    static let shared = ClusterSlots(
        limit: ProcessInfo.processInfo.environment["PGCLUSTER_TEST_CLUSTERS"].flatMap { Int($0) }
            ?? max(2, ProcessInfo.processInfo.activeProcessorCount * 2))

    let limit: Int
    /// Tests of suites off the test hosts that hold a slot.
    private var running = 0
    private var waiting: [CheckedContinuation<Void, Never>] = []
    /// One of the slots is kept for the test hosts' chain while it goes on: its suites are one
    /// chain (one set of hosts per machine), the longest of the run, so a test of it never
    /// waits for a slot. At the start, when the other suites took every slot before the
    /// chain's first test asked, that test runs beside them and no other starts until one
    /// slot is free again for the chain; the slot is given back a few seconds after the
    /// chain's last test ends (the next one asks within milliseconds).
    private var hostsTestRunning = false
    private var keptForHosts = false
    private var hostsTurn = 0

    init(limit: Int) { self.limit = max(1, limit) }

    private var capacity: Int { keptForHosts ? max(1, limit - 1) : limit }

    /// `hosts`: a test of the test hosts' chain (it holds their lock).
    func acquire(hosts: Bool = false) async {
        if hosts {
            keptForHosts = true
            hostsTestRunning = true
            hostsTurn += 1
            return
        }
        if running < capacity {
            running += 1
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    func release(hosts: Bool = false) {
        if hosts {
            hostsTestRunning = false
            let turn = hostsTurn
            Task {
                try? await Task.sleep(for: .seconds(5))
                self.giveBackHostsSlot(after: turn)
            }
            return
        }
        running -= 1
        wake()
    }

    private func giveBackHostsSlot(after turn: Int) {
        guard turn == hostsTurn, !hostsTestRunning else { return }
        keptForHosts = false
        wake()
    }

    private func wake() {
        while running < capacity, !waiting.isEmpty {
            running += 1
            waiting.removeFirst().resume()
        }
    }
}

/// The trait: each test of a suite that has it holds one of ``ClusterSlots`` while it runs.
struct ClusterLimitTrait: SuiteTrait, TestTrait, TestScoping {
    var isRecursive: Bool { true }

    /// The suite's tests make test hosts (``withTestHosts``), of which there is one set per
    /// machine: each test takes their lock first and a slot only then. The other way round,
    /// a test waiting for the hosts held a slot no other suite could use (CI logs showed
    /// tests "running" for 30 s that did 2 s of work: the rest was the wait for the hosts).
    /// Holding the hosts, it runs at once in the slot kept for their chain.
    var testHosts = false

    /// A scope for each test function as a whole (all its cases), none for the suite: the
    /// suite's tests hold the slots, one at a time.
    func scopeProvider(for test: Test, testCase: Test.Case?) -> Self? {
        test.isSuite || testCase != nil ? nil : self
    }

    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        let clock = ContinuousClock()
        let asked = clock.now
        var hostsLock: TestHostsLock?
        if testHosts { hostsLock = try await TestHostsLock.acquire() }
        defer { hostsLock?.release() }
        await ClusterSlots.shared.acquire(hosts: testHosts)
        let began = clock.now
        // One line per test, which scripts/run-tests.sh adds up per suite: Swift Testing's
        // own durations include the wait for a slot.
        func said() {
            let file = (test.sourceLocation.fileID as NSString).lastPathComponent
            let suite = (file as NSString).deletingPathExtension
            let seconds = { (d: Duration) in String(format: "%.2f", Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18) }
            print("cluster slot: \(suite) \(test.name): waited \(seconds(began - asked)) s, ran \(seconds(clock.now - began)) s")
        }
        do {
            try await TestHostsLock.$held.withValue(testHosts) { try await function() }
        } catch {
            said()
            await ClusterSlots.shared.release(hosts: testHosts)
            throw error
        }
        said()
        await ClusterSlots.shared.release(hosts: testHosts)
    }
}

extension Trait where Self == ClusterLimitTrait {
    /// Runs each test of the suite in one of a few shared cluster slots (``ClusterSlots``).
    static var clusterLimit: Self { Self() }

    /// The same for suites on the test hosts: the hosts' lock first, then a slot.
    static var clusterLimitOnTestHosts: Self { Self(testHosts: true) }
}
