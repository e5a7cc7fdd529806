import Testing

@testable import PGClusterRules

/// What a promotion without `restore_command` must be given from the archive (ArchivedTimelines).
@Suite("Archived timelines")
struct ArchivedTimelinesTests {
    @Test("a repository listing: history files only, uppercase hex, each timeline once")
    func parse() {
        let listing = """
            0000000100000000
            00000002.history
            0000000A.history
            0000000a.history
            00000002.history
            000000010000000000000003-cc818d630e311abbe111a846f132c46a683ff61f.lz4
            00000003.history.tmp
            archive.info

            """
        #expect(ArchivedTimelines.parse(listing) == [2, 10])
        #expect(ArchivedTimelines.parse("") == [])
    }

    @Test("only the timelines newer than the candidate's are fetched")
    func toFetch() {
        #expect(ArchivedTimelines.toFetch(candidateTimeline: 2, archived: [2]) == [])
        #expect(ArchivedTimelines.toFetch(candidateTimeline: 2, archived: [2, 3, 5]) == [3, 5])
        #expect(ArchivedTimelines.toFetch(candidateTimeline: 7, archived: []) == [])
    }

    @Test("history file names as PostgreSQL writes them", arguments: [(1, "00000001.history"), (10, "0000000A.history"), (255, "000000FF.history")])
    func names(_ timeline: Int, _ name: String) {
        #expect(ArchivedTimelines.historyFile(timeline) == name)
        #expect(ArchivedTimelines.parse(name) == [timeline])
    }
}
