import Foundation

/// What a pgBackRest repository holds for one stanza, read from `pgbackrest info
/// --output=json`: the backups, oldest first, and the range of archived WAL.
public struct BackupCatalog: Sendable, Equatable, Codable {
    public var stanza: String
    /// pgBackRest's status: 0 ok; 1 the stanza is missing; 2 no valid backup; others are problems.
    public var statusCode: Int
    public var statusMessage: String
    public var backups: [BackupEntry]
    /// The first and last WAL segment archived (of the newest database the stanza knows).
    public var walMin: String?
    public var walMax: String?
    /// The database system the stanza was made for (`pg_control_system()`'s
    /// system_identifier; the newest of the stanza's databases); nil when unknown.
    public var systemId: SystemIdentifier?

    /// Where the newest archived WAL file ends, for the cluster's WAL segment size (a file
    /// name counts segments: `TTTTTTTT` timeline, `LLLLLLLL` the LSN's high 32 bits,
    /// `SSSSSSSS` the segment within them): no WAL position past it can be replayed from
    /// the archive. nil without an archived file or a valid size.
    public func archiveEnd(segmentBytes: UInt64) -> LSN? {
        guard segmentBytes > 0, segmentBytes & (segmentBytes - 1) == 0, let walMax,
            let segment = Self.segmentNumber(walMax, size: segmentBytes)
        else { return nil }
        return LSN((segment + 1) * segmentBytes)
    }

    /// The WAL segment size the stanza's backups were taken with, read from them (for a
    /// cluster whose nodes are gone, whose pg_control cannot be asked): each backup's start
    /// and stop LSNs lie in its first and last WAL files, whose names count segments of that
    /// size. nil unless exactly one power of two from 1 MB to 1 GB fits every backup (WAL
    /// still in its first segments fits several).
    public var inferredSegmentBytes: UInt64? {
        let points = backups.flatMap { [($0.walStart, $0.lsnStart), ($0.walStop, $0.lsnStop)] }
            .compactMap { name, lsn in name.flatMap { name in lsn.map { (name, $0) } } }
        guard !points.isEmpty else { return nil }
        let fitting = (20...30).map { UInt64(1) << $0 }.filter { size in
            points.allSatisfy { name, lsn in Self.segmentNumber(name, size: size) == lsn.value / size }
        }
        return fitting.count == 1 ? fitting[0] : nil
    }

    /// The segment a WAL file name counts (`TTTTTTTTLLLLLLLLSSSSSSSS`), for segments of `size`.
    static func segmentNumber(_ name: String, size: UInt64) -> UInt64? {
        guard name.count == 24, let log = UInt64(name.dropFirst(8).prefix(8), radix: 16), let segment = UInt64(name.suffix(8), radix: 16)
        else { return nil }
        let perLog = (UInt64(1) << 32) / size
        guard segment < perLog else { return nil }
        return log * perLog + segment
    }

    /// The stanza was never created (no `pgcluster backup` yet).
    public var stanzaMissing: Bool { statusCode == 1 }

    /// Reads the JSON of `pgbackrest info --output=json --stanza=NAME` (an array of one stanza).
    public static func parse(_ json: String, stanza: String) throws(ClusterError) -> BackupCatalog {
        let stanzas: [InfoStanza]
        do {
            stanzas = try JSONDecoder().decode([InfoStanza].self, from: Data(json.utf8))
        } catch {
            throw ClusterError("cannot read pgbackrest info's JSON: \(error)")
        }
        guard let info = stanzas.first(where: { $0.name == stanza }) ?? stanzas.first else {
            return BackupCatalog(stanza: stanza, statusCode: 1, statusMessage: "missing stanza path", backups: [])
        }
        let backups = (info.backup ?? []).map { backup in
            BackupEntry(
                label: backup.label, type: backup.type, start: backup.timestamp.start, stop: backup.timestamp.stop,
                size: backup.info?.size ?? 0, repositorySize: backup.info?.repository?.delta ?? backup.info?.repository?.size ?? 0,
                walStart: backup.archive?.start, walStop: backup.archive?.stop,
                lsnStart: backup.lsn.flatMap { LSN($0.start) }, lsnStop: backup.lsn.flatMap { LSN($0.stop) },
                reference: backup.prior, error: backup.error ?? false)
        }.sorted { ($0.stop, $0.label) < ($1.stop, $1.label) }
        let archive = info.archive?.last
        return BackupCatalog(
            stanza: info.name, statusCode: info.status.code, statusMessage: info.status.message, backups: backups,
            walMin: archive?.min, walMax: archive?.max,
            systemId: info.db?.max { $0.id < $1.id }?.systemId.map(SystemIdentifier.init))
    }

    // The parts of pgBackRest's JSON that pgcluster reads.
    struct InfoStanza: Decodable {
        var name: String
        var status: Status
        var backup: [Backup]?
        var archive: [Archive]?
        var db: [Database]?
        struct Database: Decodable {
            var id: Int
            var systemId: UInt64?
            enum CodingKeys: String, CodingKey {
                case id
                case systemId = "system-id"
            }
        }
        struct Status: Decodable {
            var code: Int
            var message: String
        }
        struct Archive: Decodable {
            var min: String?
            var max: String?
        }
        struct Backup: Decodable {
            var label: String
            var type: String
            var timestamp: Range
            var archive: Names?
            var lsn: Names?
            var info: Info?
            var prior: String?
            var error: Bool?
            struct Range: Decodable {
                var start: Int64
                var stop: Int64
            }
            struct Names: Decodable {
                var start: String
                var stop: String
            }
            struct Info: Decodable {
                var size: Int64?
                var repository: Repository?
                struct Repository: Decodable {
                    var size: Int64?
                    var delta: Int64?
                }
            }
        }
    }
}

/// One backup of the repository.
public struct BackupEntry: Sendable, Equatable, Codable {
    /// pgBackRest's label, such as `20261205-171500F` (full) or `…F_20261205-172000I` (incremental).
    public var label: String
    /// full, diff or incr.
    public var type: String
    /// Seconds since 1970 (UTC), as pgBackRest records them.
    public var start: Int64
    public var stop: Int64
    /// The database's size, and what this backup added to the repository (compressed).
    public var size: Int64
    public var repositorySize: Int64
    /// The WAL segments the backup needs to be consistent.
    public var walStart: String?
    public var walStop: String?
    public var lsnStart: LSN?
    public var lsnStop: LSN?
    /// The timeline it was taken on: the first 8 hex digits of its first WAL file (1 when unknown).
    public var timeline: Int { walStart.flatMap { Int($0.prefix(8), radix: 16) } ?? 1 }
    /// The backup this one builds on (diff and incr).
    public var reference: String?
    /// pgBackRest found a page checksum error while copying.
    public var error: Bool

    public init(
        label: String, type: String, start: Int64, stop: Int64, size: Int64 = 0, repositorySize: Int64 = 0,
        walStart: String? = nil, walStop: String? = nil, lsnStart: LSN? = nil, lsnStop: LSN? = nil,
        reference: String? = nil, error: Bool = false
    ) {
        self.label = label
        self.type = type
        self.start = start
        self.stop = stop
        self.size = size
        self.repositorySize = repositorySize
        self.walStart = walStart
        self.walStop = walStop
        self.lsnStart = lsnStart
        self.lsnStop = lsnStop
        self.reference = reference
        self.error = error
    }
}

/// A database system identifier (`pg_control_system()`'s system_identifier). In JSON a
/// string, as Patroni's `database_system_identifier`: its 19 digits are past what a JSON
/// number keeps exactly in most readers (2^53: jq 1.6, JavaScript). Read from either.
public struct SystemIdentifier: Sendable, Equatable, Codable, CustomStringConvertible {
    public var value: UInt64

    public init(_ value: UInt64) { self.value = value }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self), let value = UInt64(text) {
            self.value = value
        } else {
            value = try container.decode(UInt64.self)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(String(value))
    }

    public var description: String { String(value) }
}
