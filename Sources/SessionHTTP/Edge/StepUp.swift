import Foundation
import HTTPTypes
import SessionCore

/// What a gateway may demand of a session on top of its being live (RFC 9470, OAuth 2.0 Step Up Authentication
/// Challenge): `GET /v1/verify?max_age=<seconds>&acr=aal2`. A live session that is too old or below the level gets 401
/// `insufficient_user_authentication` with the RFC's challenge parameters, so the client knows to re-authenticate
/// (`POST /v1/session/reauthenticate`) or to log in with its second factor. Checked on both verification paths from
/// the session's 28 bytes alone (creation time and the second-factor bit): nothing more is read, cached or sent.
struct StepUp: Sendable, Equatable {
    /// The login must be at most this many seconds old.
    var maxAge: Int64?
    /// The login must have used a second factor.
    var requiresSecondFactor = false

    static let none = StepUp()

    /// The demands of a request target's query (`max_age`, `acr`; other parameters are ignored).
    /// - Throws: 400 `invalid_request` for a `max_age` that is not a whole number of seconds or an `acr` other than
    ///   `aal1`/`aal2`.
    init(target: String) throws(APIError) {
        guard let mark = target.utf8.firstIndex(of: UInt8(ascii: "?")) else { return }
        let query = target.utf8[target.utf8.index(after: mark)...]
        for pair in query.split(separator: UInt8(ascii: "&")) {
            let parts = pair.split(separator: UInt8(ascii: "="), maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2 else { continue }
            let value = String(decoding: parts[1], as: UTF8.self)
            switch String(decoding: parts[0], as: UTF8.self) {
            case "max_age":
                guard let seconds = Int64(value), seconds >= 0 else { throw .invalidRequest("max_age must be a whole number of seconds") }
                maxAge = seconds
            case "acr":
                switch value {
                case "aal2": requiresSecondFactor = true
                case "aal1": requiresSecondFactor = false
                default: throw .invalidRequest("acr must be aal1 or aal2")
                }
            default: continue
            }
        }
    }

    init() {}

    /// nil when the session meets the demands; else the 401 to answer.
    func refusal(of session: Session, now: Date = Date()) -> APIError? {
        var parameters: [String] = []
        var reasons: [String] = []
        if let maxAge, now.timeIntervalSince(session.authenticatedAt) > Double(maxAge) {
            parameters.append("max_age=\(maxAge)")
            reasons.append("a login within the last \(maxAge) seconds")
        }
        if requiresSecondFactor, session.level != .secondFactor {
            parameters.append("acr_values=\"aal2\"")
            reasons.append("a login with a second factor")
        }
        guard !parameters.isEmpty else { return nil }
        let description = "this needs " + reasons.joined(separator: " and ")
        let challenge =
            "Bearer realm=\"\(APIError.realm)\", error=\"insufficient_user_authentication\", error_description=\"\(description)\", "
            + parameters.joined(separator: ", ")
        return APIError(.unauthorized, code: "insufficient_user_authentication", message: description, headers: [.wwwAuthenticate: challenge])
    }
}
