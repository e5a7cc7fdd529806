import Foundation

/// With `backup:`, a promotion runs without `restore_command` (``ServerOps/archiveOff``:
/// every archive-get it would wait for costs 0.13–0.34 s over ssh), so it would not ask the
/// archive which timelines exist. This asks instead, beside the steps before the
/// promotion, and gives the candidate what it would have learnt (``ArchivedTimelines``).
/// Failover and switchover share it.
struct ArchivedTimelineCheck: Sendable {
    let spec: ClusterSpec
    let control: (any ServerControl)?

    /// The archive's timelines, or why they are unknown; [] without `backup:`. Waited for
    /// 1 s at most (a healthy repository host answers in a few ms, 0.3 s for a new ssh
    /// connection): a repository host that is down does not hold the promotion up.
    func timelines() async -> Result<[Int], ClusterError> {
        guard spec.backup != nil, let control else { return .success([]) }
        let listed = await within(1.0) { await outcome { () async throws(ClusterError) in try await control.archivedTimelines() } }
        return listed ?? .failure(ClusterError("no answer within 1 s"))
    }

    /// Before a promotion that does not ask the archive: the history files of the archive's
    /// timelines newer than the candidate's go into its pg_wal, so that it takes a timeline
    /// past all of them (never one the archive already holds). An archive that cannot be
    /// read is said and passed over: PostgreSQL asking it would have found nothing either.
    /// Returns whether anything was fetched.
    func learn(_ archived: Result<[Int], ClusterError>, candidate: NodeSpec, timeline: Int) async throws(ClusterError)
        -> Bool
    {
        switch archived {
        case .failure(let error):
            Console.warn("the WAL archive could not be read (\(error.message)): \(candidate.name) takes its next timeline from what it knows")
            return false
        case .success(let timelines):
            let newer = ArchivedTimelines.toFetch(candidateTimeline: timeline, archived: timelines)
            guard !newer.isEmpty, let control else { return false }
            try await control.fetchHistory(newer, into: candidate)
            return true
        }
    }
}
