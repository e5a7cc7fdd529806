import Foundation
import Testing

@testable import PGClusterKit

/// A folder pgcluster cannot make is named with the reason, not Foundation's error number.
@Suite("folder creation")
struct FolderCreationTests {
    @Test("a parent that is a file is named; a folder that can be made is made")
    func reasons() throws {
        let root = NSTemporaryDirectory() + "pgcluster-folder-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: "\(root)/file", contents: Data("x".utf8)))
        do throws(ClusterError) {
            try FolderCreation.make("\(root)/file/cluster", what: "local.dir")
            Issue.record("a folder under a file was made")
        } catch {
            #expect(error.message == "cannot create local.dir \(root)/file/cluster: \(root)/file is a file, not a folder", "\(error.message)")
        }
        try FolderCreation.make("\(root)/a/b", what: "local.dir")
        var isFolder: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: "\(root)/a/b", isDirectory: &isFolder) && isFolder.boolValue)
    }
}
