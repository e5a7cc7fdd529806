/// A WAL position, as PostgreSQL prints it (`16/B374D848`).
public struct LSN: Sendable, Hashable, Comparable, CustomStringConvertible, Codable {
    public var value: UInt64

    public init(_ value: UInt64) { self.value = value }

    public init?(_ text: String) {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let high = UInt64(parts[0], radix: 16), let low = UInt64(parts[1], radix: 16),
            high <= UInt32.max, low <= UInt32.max
        else { return nil }
        value = high << 32 | low
    }

    public var description: String {
        String(value >> 32, radix: 16, uppercase: true) + "/" + String(value & 0xFFFF_FFFF, radix: 16, uppercase: true)
    }

    public static func < (lhs: LSN, rhs: LSN) -> Bool { lhs.value < rhs.value }

    /// Bytes from `other` up to this position; 0 when `other` is ahead.
    public func bytes(after other: LSN) -> UInt64 { value > other.value ? value - other.value : 0 }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let lsn = LSN(text) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "bad LSN \(text)"))
        }
        self = lsn
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
