import Foundation

/// A user account of this machine, for running servers as someone other than root.
public struct OSUser: Sendable, Equatable {
    public var name: String
    public var uid: uid_t
    public var gid: gid_t
    public var home: String

    public static func named(_ name: String) -> OSUser? {
        guard let entry = getpwnam(name) else { return nil }
        return OSUser(
            name: String(cString: entry.pointee.pw_name), uid: entry.pointee.pw_uid, gid: entry.pointee.pw_gid,
            home: String(cString: entry.pointee.pw_dir))
    }

    public static var current: OSUser {
        let uid = geteuid()
        if let entry = getpwuid(uid) {
            return OSUser(
                name: String(cString: entry.pointee.pw_name), uid: uid, gid: getegid(),
                home: String(cString: entry.pointee.pw_dir))
        }
        return OSUser(name: String(uid), uid: uid, gid: getegid(), home: NSHomeDirectory())
    }

    public static var isRoot: Bool { geteuid() == 0 }

    /// The user PostgreSQL runs as: the spec's `local.osUser` when pgcluster runs as
    /// root (PostgreSQL refuses to run as root), otherwise whoever runs pgcluster.
    public static func serverUser(for spec: ClusterSpec) throws(ClusterError) -> OSUser {
        guard isRoot else { return current }
        guard let user = named(spec.local.osUser) else {
            throw ClusterError(
                "local.osUser '\(spec.local.osUser)' does not exist on this machine; PostgreSQL cannot run as root",
                details: [
                    "create it (useradd --system --home-dir /var/lib/postgresql \(spec.local.osUser)), or set local.osUser in \(spec.file)"
                ])
        }
        guard user.uid != 0 else {
            throw ClusterError("local.osUser '\(user.name)' is root; PostgreSQL refuses to run as root", exitCode: .badSpec)
        }
        return user
    }
}
