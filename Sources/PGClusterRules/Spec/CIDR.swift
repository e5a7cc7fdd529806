import Foundation

/// An IPv4 or IPv6 network in CIDR notation, as pg_hba.conf and Docker accept it.
///
/// Parsing is strict: the address must be a literal (no host names), the prefix
/// within range, and no bits may be set beyond the prefix (`10.0.0.1/8` is refused,
/// because pg_hba.conf would silently treat it as `10.0.0.0/8`).
public struct CIDR: Sendable, Equatable, CustomStringConvertible {
    public let address: String
    public let prefix: Int
    public let isIPv6: Bool

    public var description: String { "\(address)/\(prefix)" }

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case missingPrefix, badAddress, badPrefix(Int), hostBitsSet

        public var description: String {
            switch self {
            case .missingPrefix: "expected ADDRESS/PREFIX, such as 127.0.0.1/32"
            case .badAddress: "not an IPv4 or IPv6 address"
            case .badPrefix(let max): "prefix must be a number from 0 to \(max)"
            case .hostBitsSet: "address has bits set beyond the prefix"
            }
        }
    }

    public init(parsing text: String) throws(ParseError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 else { throw .missingPrefix }
        let address = String(parts[0])
        var bytes: [UInt8]
        if let v4 = Self.ipv4Bytes(address) {
            bytes = v4
            isIPv6 = false
        } else if let v6 = Self.ipv6Bytes(address) {
            bytes = v6
            isIPv6 = true
        } else {
            throw .badAddress
        }
        let maxPrefix = bytes.count * 8
        guard let prefix = Int(parts[1]), (0...maxPrefix).contains(prefix), parts[1].allSatisfy(\.isNumber) else {
            throw .badPrefix(maxPrefix)
        }
        for bit in prefix..<maxPrefix where bytes[bit / 8] & (0x80 >> UInt8(bit % 8)) != 0 {
            throw .hostBitsSet
        }
        self.address = address
        self.prefix = prefix
    }

    public static func ipv4Bytes(_ text: String) -> [UInt8]? {
        var addr = in_addr()
        return inet_pton(AF_INET, text, &addr) == 1 ? withUnsafeBytes(of: addr) { Array($0) } : nil
    }

    public static func ipv6Bytes(_ text: String) -> [UInt8]? {
        var addr = in6_addr()
        return inet_pton(AF_INET6, text, &addr) == 1 ? withUnsafeBytes(of: addr) { Array($0) } : nil
    }
}
