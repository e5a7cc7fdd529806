import Foundation

/// Writes rendered files: only those whose contents differ, each atomically (a
/// temporary file in the same folder, then rename), so a reader never sees half a file.
public struct FileWriter: Sendable {
    public enum Change: String, Sendable, Equatable {
        case created, updated, unchanged
    }

    public struct Outcome: Sendable, Equatable {
        public var path: String
        public var change: Change
    }

    public var dryRun: Bool
    /// Owner for files and folders created, when running as root for a server's OS user.
    public var owner: OSUser?

    public init(dryRun: Bool = false, owner: OSUser? = nil) {
        self.dryRun = dryRun
        self.owner = owner
    }

    /// Writes `files` below `root`. With `dryRun`, reports what would change and writes nothing.
    @discardableResult
    public func write(_ files: [RenderedFile], under root: String) throws(ClusterError) -> [Outcome] {
        var outcomes: [Outcome] = []
        for file in files {
            let path = (root as NSString).appendingPathComponent(file.path)
            let data = Data(file.contents.utf8)
            let change: Change
            if let existing = FileManager.default.contents(atPath: path) {
                change = existing == data ? .unchanged : .updated
            } else {
                change = .created
            }
            outcomes.append(Outcome(path: path, change: change))
            if dryRun || change == .unchanged {
                if !dryRun { try setMode(file.mode, path) }
                continue
            }
            try Self.writeAtomically(data, to: path, mode: file.mode, owner: owner)
        }
        return outcomes
    }

    /// Writes one file atomically with the given mode and owner, creating its folder.
    public static func writeAtomically(_ data: Data, to path: String, mode: Int, owner: OSUser? = nil) throws(ClusterError) {
        let folder = (path as NSString).deletingLastPathComponent
        do {
            if !FileManager.default.fileExists(atPath: folder) {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                if let owner { _ = chown(folder, owner.uid, owner.gid) }
            }
            // Unique per call, not only per process: two tasks writing the same file at once (the
            // clones of one init each place the shared pgbackrest.conf) must not share a temp
            // file, or one rename finds it gone.
            let temp = (folder as NSString).appendingPathComponent(
                ".\((path as NSString).lastPathComponent).tmp-\(getpid())-\(UUID().uuidString.prefix(8))")
            // Create with the final mode from the start, so a secret is never readable by others.
            let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC, mode_t(mode))
            guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
            try handle.write(contentsOf: data)
            try handle.synchronize()
            try handle.close()
            _ = chmod(temp, mode_t(mode))
            if let owner { _ = chown(temp, owner.uid, owner.gid) }
            try moveIntoPlace(temp, path)
        } catch let error as ClusterError {
            throw error
        } catch {
            throw ClusterError("cannot write \(path): \(error.localizedDescription)")
        }
    }

    /// Renames the finished `temp` over `path` (atomic within a file system); on failure
    /// removes `temp` and throws the rename's error.
    static func moveIntoPlace(_ temp: String, _ path: String) throws {
        guard rename(temp, path) == 0 else {
            let code = errno
            unlink(temp)
            throw POSIXError(POSIXErrorCode(rawValue: code) ?? .EIO)
        }
    }

    private func setMode(_ mode: Int, _ path: String) throws(ClusterError) {
        _ = chmod(path, mode_t(mode))
    }
}
