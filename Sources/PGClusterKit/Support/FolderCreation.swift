import Foundation

/// Makes a folder (and its parents), or says in words why it cannot: Foundation's own
/// message for a parent that is a file is "The operation could not be completed.
/// (NSCocoaErrorDomain error 512.)".
enum FolderCreation {
    static func make(_ path: String, what: String) throws(ClusterError) {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw ClusterError("cannot create \(what) \(path): \(reason(path) ?? error.localizedDescription)")
        }
    }

    /// The first part of `path` that is a file rather than a folder, or the nearest existing
    /// folder this process may not write in.
    static func reason(_ path: String) -> String? {
        var prefix = ""
        for part in path.split(separator: "/") {
            let parent = prefix.isEmpty ? "/" : prefix
            prefix += "/" + part
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: prefix, isDirectory: &isFolder) {
                if !isFolder.boolValue { return "\(prefix) is a file, not a folder" }
                continue
            }
            return access(parent, W_OK) == 0 ? nil : "no permission to make a folder in \(parent)"
        }
        return nil
    }
}
