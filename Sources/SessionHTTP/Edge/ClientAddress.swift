public import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// Which proxies may tell us the client's address (`TRUSTED_PROXIES`: IPs or CIDRs, comma-separated).
///
/// The client address is the socket peer, unless the peer is trusted: then `X-Forwarded-For` is read from
/// the right, skipping trusted hops, and the first untrusted address is the client. An untrusted peer's
/// `X-Forwarded-For` is ignored, so it cannot dodge the login throttle by inventing addresses.
public struct TrustedProxies: Sendable, Equatable {
    struct Network: Sendable, Equatable {
        let address: [UInt8]
        let prefixLength: Int

        func contains(_ candidate: [UInt8]) -> Bool {
            guard candidate.count == address.count else { return false }
            var remaining = prefixLength
            for (a, b) in zip(address, candidate) {
                if remaining <= 0 { return true }
                let bits = min(8, remaining)
                let mask: UInt8 = bits == 8 ? 0xFF : ~(0xFF >> UInt8(bits))
                if a & mask != b & mask { return false }
                remaining -= 8
            }
            return true
        }
    }

    let networks: [Network]

    /// No trusted proxies.
    public static let none = TrustedProxies(networks: [])

    init(networks: [Network]) { self.networks = networks }

    /// Parses `10.0.0.1, 10.1.0.0/16, ::1`.
    /// - Throws: a message naming the entry that is not an IP address or CIDR.
    /// - Parameter list: comma-separated IPs and CIDRs; empty trusts none.
    public init(parsing list: String) throws(ConfigurationError) {
        var networks: [Network] = []
        for entry in list.split(separator: ",").map({ $0.trimmingSpaces }) where !entry.isEmpty {
            // Not omitting empty pieces: "/" or "/8" must be refused, not crash (a libFuzzer finding).
            let parts = entry.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
            guard let first = parts.first, let address = IPAddress.bytes(String(first)) else {
                throw ConfigurationError("TRUSTED_PROXIES: '\(entry)' is not an IP address or CIDR")
            }
            var prefix = address.count * 8
            if parts.count == 2 {
                guard let value = Int(parts[1]), (0...address.count * 8).contains(value) else {
                    throw ConfigurationError("TRUSTED_PROXIES: '\(entry)' has a bad prefix length")
                }
                prefix = value
            }
            networks.append(Network(address: address, prefixLength: prefix))
        }
        self.networks = networks
    }

    func trusts(_ address: String) -> Bool {
        guard let bytes = IPAddress.bytes(address) else { return false }
        return networks.contains { $0.contains(bytes) }
    }

    /// The client's address for a request from `peer` carrying these `X-Forwarded-For` values.
    public func clientAddress(peer: SocketAddress?, forwardedFor: [String]) -> String {
        let peerText = peer?.ipAddress ?? "unknown"
        guard !networks.isEmpty, trusts(peerText) else { return peerText }
        let hops = forwardedFor.flatMap { $0.split(separator: ",") }.map { String($0.trimmingSpaces) }
        for hop in hops.reversed() {
            guard IPAddress.bytes(hop) != nil else { return peerText }
            if !trusts(hop) { return hop }
        }
        return hops.first ?? peerText
    }
}

/// A configuration value that cannot be used.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

enum IPAddress {
    /// The 4 or 16 bytes of an IPv4 or IPv6 address in text form (an IPv4-mapped IPv6 address becomes IPv4).
    static func bytes(_ text: String) -> [UInt8]? {
        var v4 = [UInt8](repeating: 0, count: 4)
        if inet_pton(AF_INET, text, &v4) == 1 { return v4 }
        var v6 = [UInt8](repeating: 0, count: 16)
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        if v6[0..<10].allSatisfy({ $0 == 0 }) && v6[10] == 0xFF && v6[11] == 0xFF { return Array(v6[12...]) }
        return v6
    }
}

extension Substring {
    var trimmingSpaces: Substring {
        var result = self
        while result.first == " " || result.first == "\t" { result = result.dropFirst() }
        while result.last == " " || result.last == "\t" { result = result.dropLast() }
        return result
    }
}
