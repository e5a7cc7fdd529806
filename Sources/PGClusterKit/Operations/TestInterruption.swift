import Foundation

/// Deterministic interruption for the tests: with `PGCLUSTER_TEST_STOP_AFTER=STEP`, the
/// process stops dead (no clean-up, no lock release but the kernel's) right after the named
/// step, as a `kill -9` there would. Steps: failover's `freeze`, `synchronous`, `promote`,
/// `re-point`; switchover's `switchover-ready` (before the old primary stops), `switchover-stop`, `switchover-promote`; rejoin's `pg_rewind` (before the node is set to follow) and `rejoin-streams` (streaming, not yet listed); a clone's `pg_basebackup` (copied, not yet set to follow). Never set in normal use.
public enum TestInterruption {
    static let stopAfter = ProcessInfo.processInfo.environment["PGCLUSTER_TEST_STOP_AFTER"]
    /// `PGCLUSTER_TEST_PAUSE_AFTER=STEP`: the process stops itself (SIGSTOP) after the step,
    /// as a suspended laptop or a long GC pause would, until the test sends SIGCONT.
    static let pauseAfter = ProcessInfo.processInfo.environment["PGCLUSTER_TEST_PAUSE_AFTER"]

    public static func point(_ step: String) {
        if pauseAfter == step {
            FileHandle.standardError.write(Data("pausing after step '\(step)' (PGCLUSTER_TEST_PAUSE_AFTER)\n".utf8))
            raise(SIGSTOP)
        }
        guard stopAfter == step else { return }
        FileHandle.standardError.write(Data("stopping dead after step '\(step)' (PGCLUSTER_TEST_STOP_AFTER)\n".utf8))
        _exit(86)
    }
}
