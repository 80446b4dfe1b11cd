import Foundation
public import HTTPTypes
import Redis
public import SessionCore

/// The browser transport of a session: the same token as `Authorization: Bearer`, carried in a cookie that JavaScript
/// cannot read, with the checks a cookie needs and a bearer header does not (CSRF, open redirects).
///
/// `Set-Cookie: __Host-session=<token>; Path=/; Max-Age=<seconds to the absolute expiry>; HttpOnly; Secure; SameSite=Lax`.
/// `__Host-` makes the browser refuse the cookie unless it is `Secure`, host-only and `Path=/`, so no subdomain or
/// plain-HTTP page can plant or shadow it; without `Secure` (`COOKIE_SECURE=false`, development only) the default
/// name is `session`, because browsers refuse `__Host-` there.
public struct SessionCookie: Sendable, Equatable {
    /// The cookie's name (`COOKIE_NAME`).
    public let name: String
    /// Whether the cookie carries `Secure` (`COOKIE_SECURE`).
    public let secure: Bool
    /// Origins allowed to send cookie-authenticated unsafe requests besides the service's own (`ALLOWED_ORIGINS`).
    public let allowedOrigins: Set<String>

    public init(name: String? = nil, secure: Bool = true, allowedOrigins: Set<String> = []) {
        self.secure = secure
        self.name = name ?? (secure ? "__Host-session" : "session")
        self.allowedOrigins = allowedOrigins
    }

    /// The `Set-Cookie` value that hands a browser its session.
    public func setCookie(_ token: SessionToken, maxAge seconds: Int) -> String {
        "\(name)=\(token.text); Path=/; Max-Age=\(max(0, seconds)); HttpOnly;\(secure ? " Secure;" : "") SameSite=Lax"
    }

    /// The `Set-Cookie` value that clears it.
    public var clearCookie: String {
        "\(name)=; Path=/; Max-Age=0; HttpOnly;\(secure ? " Secure;" : "") SameSite=Lax"
    }

    /// What the `Cookie` header values hold under this cookie's name.
    public enum Parsed: Equatable {
        case missing
        case malformed
        case token(SessionToken)
    }

    /// Finds the cookie among `Cookie` header values (RFC 6265 §5.4: `name=value` pairs separated by `; `). Two
    /// cookies of the name (a shadowing attempt) are malformed.
    public func parse(_ values: [String]) -> Parsed {
        var found: Substring?
        for value in values {
            for pair in value.split(separator: ";") {
                let trimmed = pair.drop { $0 == " " }
                guard let equals = trimmed.firstIndex(of: "="), trimmed[..<equals] == name else { continue }
                if found != nil { return .malformed }
                found = trimmed[trimmed.index(after: equals)...]
            }
        }
        guard var text = found else { return .missing }
        if text.hasPrefix("\""), text.hasSuffix("\""), text.count >= 2 { text = text.dropFirst().dropLast() }
        guard let token = SessionToken(text) else { return .malformed }
        return .token(token)
    }

    // MARK: CSRF

    /// Whether a request may use its cookie for an unsafe method (and whether a browser login may proceed): the
    /// Fetch-Metadata scheme of OWASP's CSRF cheat sheet, as Go 1.25's `CrossOriginProtection` does it.
    ///
    /// An `Origin` in `allowedOrigins` passes first; else `Sec-Fetch-Site: same-origin` or `none` (typed URL,
    /// bookmark) passes and any other value fails; without `Sec-Fetch-Site` (older browsers, non-browser clients), a
    /// missing `Origin` passes and an `Origin` passes only when its host:port is the request's `Host`.
    public func allowsUnsafe(origin: String?, secFetchSite: String?, host: String?) -> Bool {
        if let origin, allowedOrigins.contains(origin) { return true }
        if let secFetchSite { return secFetchSite == "same-origin" || secFetchSite == "none" }
        guard let origin else { return true }
        guard let host, let originHost = Self.hostAndPort(ofOrigin: origin) else { return false }
        return originHost.lowercased() == host.lowercased()
    }

    /// `allowsUnsafe(origin:secFetchSite:host:)` read from a request's head.
    public func allowsUnsafe(_ request: HTTPRequest) -> Bool {
        allowsUnsafe(origin: request.headerFields[.origin], secFetchSite: request.headerFields[.secFetchSite], host: request.authority)
    }

    /// Whether a method changes state (anything but GET, HEAD, OPTIONS).
    public static func isUnsafe(_ method: String) -> Bool {
        method != "GET" && method != "HEAD" && method != "OPTIONS"
    }

    /// `host[:port]` of `scheme://host[:port]`; nil for `null` or anything else.
    package static func hostAndPort(ofOrigin origin: String) -> Substring? {
        guard let separator = origin.range(of: "://") else { return nil }
        let rest = origin[separator.upperBound...]
        guard !rest.isEmpty, !rest.contains("/") else { return nil }
        return rest
    }

    // MARK: Redirects

    /// Where a form login or logout sends the browser: `returnTo` when it is a same-origin absolute path, else `/`.
    ///
    /// Same-origin absolute path: starts with one `/` (not `//`, which is another host), no scheme, no backslash
    /// (browsers read `/\evil` as `//evil`), no control character — checked on the text as given and once
    /// percent-decoded, so `%2F%2Fevil.example` or `/%5Cevil` land on `/` too.
    public static func safeRedirect(_ returnTo: String?) -> String {
        guard let returnTo, !returnTo.isEmpty else { return "/" }
        let decoded = percentDecoded(returnTo)
        for text in [returnTo, decoded] {
            let utf8 = Array(text.utf8)
            guard utf8.first == UInt8(ascii: "/") else { return "/" }
            if utf8.count > 1, utf8[1] == UInt8(ascii: "/") { return "/" }
            if utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 < 0x20 || $0 == 0x7F }) { return "/" }
        }
        // Percent-encoding twice must not smuggle either: what decodes to an encoded slash or backslash is refused.
        if decoded.contains("%") && percentDecoded(decoded) != decoded {
            let twice = percentDecoded(decoded)
            if twice.hasPrefix("//") || twice.contains("\\") { return "/" }
        }
        return returnTo
    }

    /// `%XX` decoded (invalid escapes kept as they are); `+` is left alone (a path, not a form field).
    static func percentDecoded(_ text: String) -> String {
        var bytes: [UInt8] = []
        let utf8 = Array(text.utf8)
        var index = 0
        while index < utf8.count {
            if utf8[index] == UInt8(ascii: "%"), index + 2 < utf8.count,
                let high = Hex.value(utf8[index + 1], acceptsUppercase: true), let low = Hex.value(utf8[index + 2], acceptsUppercase: true)
            {
                bytes.append(high << 4 | low)
                index += 3
            } else {
                bytes.append(utf8[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
