/// Where a session was started: the client address (as the throttles see it, `TRUSTED_PROXIES`-aware) and the
/// `User-Agent` (its first 256 bytes, control characters removed), with a short device label derived from it.
///
/// Stored after the session's 28 bytes in the same Redis string (so it ends exactly when the session does: logout,
/// revocation, the cap's eviction, idle or absolute expiry), and never read by a verification, which reads the first
/// 28 bytes only (`GETRANGE 0 27`). Layout: a version byte (1), the address' length (1 byte), the address, then the
/// User-Agent to the end.
public struct SessionMetadata: Sendable, Hashable {
    public let ip: String
    public let userAgent: String

    /// The longest User-Agent kept, in bytes.
    public static let maxUserAgentBytes = 256

    public init(ip: String, userAgent: String?) {
        self.ip = String(ip.utf8.prefix(64)) ?? ""
        self.userAgent = Self.clean(userAgent ?? "")
    }

    /// The device label of the User-Agent: `Firefox on Linux`, `curl`, `Unknown device`.
    public var device: String { DeviceLabel.of(userAgent) }

    /// The bytes stored after the session's 28.
    var encoded: [UInt8] {
        let address = Array(ip.utf8.prefix(255))
        return [1, UInt8(address.count)] + address + Array(userAgent.utf8)
    }

    /// The metadata after a session's first 28 bytes; nil for a value written before there was any.
    init?(stored bytes: ArraySlice<UInt8>) {
        guard bytes.count >= 2, bytes[bytes.startIndex] == 1 else { return nil }
        let length = Int(bytes[bytes.startIndex + 1])
        let start = bytes.startIndex + 2
        guard bytes.count >= 2 + length else { return nil }
        ip = String(decoding: bytes[start..<(start + length)], as: UTF8.self)
        userAgent = String(decoding: bytes[(start + length)...], as: UTF8.self)
    }

    /// The first 256 bytes (whole characters), control characters removed.
    static func clean(_ text: String) -> String {
        var kept = ""
        var bytes = 0
        for scalar in text.unicodeScalars where scalar.properties.generalCategory != .control {
            let size = String(scalar).utf8.count
            if bytes + size > maxUserAgentBytes { break }
            kept.unicodeScalars.append(scalar)
            bytes += size
        }
        return kept
    }
}

/// A short, human label for a `User-Agent`: browser family and OS family. A small table of the common families, in
/// the order that matters (Edge and Opera say Chrome too; Chrome says Safari; Android says Linux).
public enum DeviceLabel {
    static let browsers: [(token: String, name: String)] = [
        ("Edg/", "Edge"), ("EdgA/", "Edge"), ("EdgiOS/", "Edge"), ("OPR/", "Opera"), ("SamsungBrowser/", "Samsung Internet"),
        ("Firefox/", "Firefox"), ("FxiOS/", "Firefox"), ("CriOS/", "Chrome"), ("Chromium/", "Chromium"), ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
    ]
    static let systems: [(token: String, name: String)] = [
        ("iPhone", "iPhone"), ("iPad", "iPad"), ("Android", "Android"), ("Windows", "Windows"), ("CrOS", "ChromeOS"),
        ("Mac OS X", "macOS"), ("Macintosh", "macOS"), ("Linux", "Linux"),
    ]
    static let tools: [(prefix: String, name: String)] = [
        ("curl/", "curl"), ("Wget/", "Wget"), ("python-requests/", "Python requests"), ("Python-urllib/", "Python urllib"),
        ("Go-http-client/", "Go HTTP client"), ("okhttp/", "OkHttp"), ("PostmanRuntime/", "Postman"), ("HTTPie/", "HTTPie"),
    ]

    public static func of(_ userAgent: String) -> String {
        if let tool = tools.first(where: { userAgent.hasPrefix($0.prefix) }) { return tool.name }
        let browser = browsers.first { userAgent.contains($0.token) }?.name
        let system = systems.first { userAgent.contains($0.token) }?.name
        switch (browser, system) {
        case (let browser?, let system?): return "\(browser) on \(system)"
        case (let browser?, nil): return browser
        case (nil, let system?): return "\(system) device"
        default: return "Unknown device"
        }
    }
}

extension String {
    /// The text of valid UTF-8 bytes, nil if they are not (a cut in the middle of a character included).
    fileprivate init?(_ bytes: some Sequence<UInt8>) {
        guard let text = String(validating: Array(bytes), as: UTF8.self) else { return nil }
        self = text
    }
}
