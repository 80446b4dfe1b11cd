import HTTPTypes

/// What a request head must be for the service to route it, checked at the edge (`EdgeHandler`) before the fast path
/// and the router see it, so both paths refuse alike and a proxy that filters exact paths cannot be bypassed.
enum RequestRules {
    /// HTTPTypes keeps `Host` in `authority`; a second one stays a field, spelled this way.
    private static let host = HTTPField.Name("Host")!

    /// How a refused request is answered, and whether the connection closes after it.
    struct Refusal {
        let error: APIError
        /// The rest of the connection cannot be read as HTTP (CONNECT switches llhttp to a tunnel) or would be a body
        /// never read (a `Content-Length` over the limit): close at once after the answer.
        let closes: Bool
    }

    /// The largest refused body that is still read (and dropped) to keep the connection open.
    static let drainLimit = 1 << 20

    /// The refusal for a head, or nil when it may be routed.
    static func refusal(for request: HTTPRequest, maxBodySize: Int) -> Refusal? {
        if request.method == .connect {
            // NIO omits bodies of responses to CONNECT, so the status and `Connection: close` say it all.
            return Refusal(
                error: APIError(.methodNotAllowed, code: "method_not_allowed", message: "CONNECT is not served here"),
                closes: true
            )
        }
        // RFC 9112 §3.2: exactly one Host. The HTTPTypes conversion moves the first into `authority`.
        if request.authority == nil || request.headerFields[Self.host] != nil {
            return Refusal(error: .invalidRequest("send exactly one Host header"), closes: false)
        }
        if let length = request.headerFields[.contentLength], let bytes = Int(length), bytes > maxBodySize {
            // Answered before the body arrives. A body up to `drainLimit` is then read and dropped so the connection
            // stays usable (the body timeout still applies); a larger one is not worth reading: close.
            return Refusal(
                error: APIError(.contentTooLarge, code: "payload_too_large", message: "the request body is too large"),
                closes: bytes > drainLimit
            )
        }
        guard let path = request.path, isCanonical(path) else {
            return Refusal(error: APIError(.notFound, code: "not_found", message: "no such route"), closes: false)
        }
        return nil
    }

    /// A path (before any query) that names one resource only: it starts with `/`, has no empty segment (`//`), no
    /// trailing slash (but `/` itself), no dot segment (`.`, `..`, also percent-encoded), and no slash or backslash
    /// hidden in a segment (`%2F`, `%5C`, `\`): a proxy that decodes them would see other segments than the router
    /// (`/v1/verify/..%2fsession` is not verify).
    static func isCanonical(_ target: String) -> Bool {
        let path = target.utf8.prefix { $0 != UInt8(ascii: "?") }
        guard path.first == UInt8(ascii: "/") else { return false }
        if path.count == 1 { return true }
        guard path.last != UInt8(ascii: "/") else { return false }
        // Segment by segment without collecting them (every request comes through here, verifications included).
        var start = path.index(after: path.startIndex)
        while true {
            let end = path[start...].firstIndex(of: UInt8(ascii: "/")) ?? path.endIndex
            let segment = path[start..<end]
            if segment.isEmpty || isDotSegment(segment) || hidesSeparator(segment) { return false }
            guard end < path.endIndex else { return true }
            start = path.index(after: end)
        }
    }

    /// Whether a segment holds `\`, or `%2F` / `%5C` in either case.
    private static func hidesSeparator(_ segment: Substring.UTF8View.SubSequence) -> Bool {
        var previous: (UInt8, UInt8) = (0, 0)
        for byte in segment {
            if byte == UInt8(ascii: "\\") { return true }
            if previous.0 == UInt8(ascii: "%") {
                let pair = (previous.1, byte | 0x20)
                if pair == (UInt8(ascii: "2"), UInt8(ascii: "f")) || pair == (UInt8(ascii: "5"), UInt8(ascii: "c")) { return true }
            }
            previous = (previous.1, byte)
        }
        return false
    }

    /// `.` or `..`, where a dot may be written `%2e` or `%2E`.
    private static func isDotSegment(_ segment: Substring.UTF8View.SubSequence) -> Bool {
        var dots = 0
        var index = segment.startIndex
        while index != segment.endIndex {
            if segment[index] == UInt8(ascii: ".") {
                index = segment.index(after: index)
            } else if segment[index] == UInt8(ascii: "%"), segment.distance(from: index, to: segment.endIndex) >= 3,
                segment[segment.index(index, offsetBy: 1)] == UInt8(ascii: "2"),
                segment[segment.index(index, offsetBy: 2)] | 0x20 == UInt8(ascii: "e")
            {
                index = segment.index(index, offsetBy: 3)
            } else {
                return false
            }
            dots += 1
        }
        return dots == 1 || dots == 2
    }
}
