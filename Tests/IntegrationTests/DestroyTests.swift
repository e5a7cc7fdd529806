import Foundation
import Testing

@testable import PGClusterKit
@testable import PGClusterRules

/// `destroy --yes` removes what pgcluster created and nothing else (issue 10, defect 9).
@Suite("destroy on real servers", .serialized, .clusterLimit)
struct DestroyTests {
    @Test("destroy stops every server, removes pgcluster's files, keeps and names foreign ones")
    func keepsForeignFiles() async throws {
        try await withCluster(name: "destroy", basePort: 21700, standbys: 1) { cluster in
            try await cluster.initCluster()
            let root = cluster.dataRoot
            // Files pgcluster never created: beside a node's data, in local.dir, and a folder there.
            let foreign = ["\(root)/node0/notes.txt", "\(root)/keep-me.txt", "\(root)/other-app/config.ini"]
            try FileManager.default.createDirectory(atPath: "\(root)/other-app", withIntermediateDirectories: true)
            for path in foreign { try "not pgcluster's\n".write(toFile: path, atomically: true, encoding: .utf8) }
            #expect(!cluster.runningServers().isEmpty)

            let destroy = await cluster.run(["destroy", "--yes"])
            #expect(destroy.status == 0, "\(destroy.stderr)")
            #expect(cluster.runningServers().isEmpty, "a postmaster survived destroy")
            for path in foreign {
                #expect(FileManager.default.fileExists(atPath: path), "foreign \(path) was removed")
            }
            // Each kept file is named in the output.
            for path in ["\(root)/node0/notes.txt", "\(root)/keep-me.txt", "\(root)/other-app"] {
                #expect(destroy.stdout.contains(path), "\(path) not named in: \(destroy.stdout)")
            }
            // Nothing of pgcluster's remains.
            let owned = [
                "\(root)/node0/data", "\(root)/node0/postgres.log", "\(root)/node0/run", "\(root)/node0/.initdb-pw",
                "\(root)/node1", "\(root)/credentials.json", "\(root)/state.json", "\(root)/history.json",
                "\(root)/pgpass",
            ]
            for path in owned {
                #expect(!FileManager.default.fileExists(atPath: path), "\(path) survived destroy")
            }
            let left = Set((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [])
            #expect(left == ["node0", "keep-me.txt", "other-app"], "\(left)")
            let nodeLeft = (try? FileManager.default.contentsOfDirectory(atPath: "\(root)/node0")) ?? []
            #expect(nodeLeft == ["notes.txt"], "\(nodeLeft)")
        }
    }

    @Test("destroy of a cluster with no foreign file leaves no local.dir")
    func removesEverything() async throws {
        try await withCluster(name: "destroy2", basePort: 21705, standbys: 1) { cluster in
            try await cluster.initCluster()
            let destroy = await cluster.run(["destroy", "--yes"])
            #expect(destroy.status == 0, "\(destroy.stderr)")
            #expect(cluster.runningServers().isEmpty)
            #expect(!FileManager.default.fileExists(atPath: cluster.dataRoot), "local.dir was left behind")
            #expect(!destroy.stdout.contains("kept"), "\(destroy.stdout)")
        }
    }
}
