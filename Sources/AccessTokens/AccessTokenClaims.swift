public import JWTKit
public import SessionCore

/// The claims of an access token (RFC 9068's profile of RFC 7519), minted from a live session.
///
/// Decoding checks only their shape (a `sub` that is a user ID, a `sid` that is a session ID); what they must equal
/// (`iss`, `aud`, the time window) is `AccessTokenVerifier`'s job, against its configuration: jwt-kit checks no claim
/// by itself, so `verify(using:)` here is deliberately empty.
public struct AccessTokenClaims: JWTPayload, Equatable {
    /// `iss`: who minted it (`JWT_ISSUER`).
    public var issuer: String
    /// `sub`: the user.
    public var subject: UserID
    /// `aud`: whom it is for (`JWT_AUDIENCE`); one string on the wire when there is one audience.
    public var audience: [String]
    /// `iat`, seconds since 1970.
    public var issuedAt: Int64
    /// `nbf`, seconds since 1970; nil when absent (a token without it is valid from `iat`).
    public var notBefore: Int64?
    /// `exp`, seconds since 1970: never past the session's absolute expiry.
    public var expiresAt: Int64
    /// `jti`: random, unique per token.
    public var tokenID: String
    /// `sid`: the session the token was minted from (the `session_id` of the API): what a revocation check looks up.
    public var sessionID: SessionID
    /// `name`: the username; nil when absent.
    public var username: String?
    /// `auth_time` (OpenID Connect, RFC 9068 §2.2.1): when the session's login was proved, seconds since 1970.
    public var authTime: Int64?
    /// `amr` (RFC 8176): `["pwd"]` or `["pwd", "otp"]`.
    public var amr: [String]?
    /// `acr`: `aal1` or `aal2`.
    public var acr: String?

    public init(
        issuer: String, subject: UserID, audience: [String], issuedAt: Int64, notBefore: Int64?, expiresAt: Int64, tokenID: String,
        sessionID: SessionID, username: String?, authTime: Int64? = nil, amr: [String]? = nil, acr: String? = nil
    ) {
        self.authTime = authTime
        self.amr = amr
        self.acr = acr
        self.issuer = issuer
        self.subject = subject
        self.audience = audience
        self.issuedAt = issuedAt
        self.notBefore = notBefore
        self.expiresAt = expiresAt
        self.tokenID = tokenID
        self.sessionID = sessionID
        self.username = username
    }

    enum CodingKeys: String, CodingKey {
        case iss, sub, aud, iat, nbf, exp, jti, sid, name, amr, acr
        case authTime = "auth_time"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        issuer = try container.decode(String.self, forKey: .iss)
        subject = try container.decode(UserID.self, forKey: .sub)
        if let one = try? container.decode(String.self, forKey: .aud) {
            audience = [one]
        } else {
            audience = try container.decode([String].self, forKey: .aud)
        }
        issuedAt = try Self.numericDate(container, .iat)
        notBefore = try container.contains(.nbf) ? Self.numericDate(container, .nbf) : nil
        expiresAt = try Self.numericDate(container, .exp)
        tokenID = try container.decode(String.self, forKey: .jti)
        guard let sid = SessionID(hex: try container.decode(String.self, forKey: .sid)) else {
            throw DecodingError.dataCorruptedError(forKey: .sid, in: container, debugDescription: "not a session ID")
        }
        sessionID = sid
        username = try container.decodeIfPresent(String.self, forKey: .name)
        authTime = try container.contains(.authTime) ? Self.numericDate(container, .authTime) : nil
        amr = try container.decodeIfPresent([String].self, forKey: .amr)
        acr = try container.decodeIfPresent(String.self, forKey: .acr)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(issuer, forKey: .iss)
        try container.encode(subject, forKey: .sub)
        if audience.count == 1 { try container.encode(audience[0], forKey: .aud) } else { try container.encode(audience, forKey: .aud) }
        try container.encode(issuedAt, forKey: .iat)
        try container.encodeIfPresent(notBefore, forKey: .nbf)
        try container.encode(expiresAt, forKey: .exp)
        try container.encode(tokenID, forKey: .jti)
        try container.encode(sessionID.hex, forKey: .sid)
        try container.encodeIfPresent(username, forKey: .name)
        try container.encodeIfPresent(authTime, forKey: .authTime)
        try container.encodeIfPresent(amr, forKey: .amr)
        try container.encodeIfPresent(acr, forKey: .acr)
    }

    /// A NumericDate (RFC 7519 §2): seconds, possibly with a fraction, which is dropped.
    private static func numericDate(_ container: KeyedDecodingContainer<CodingKeys>, _ key: CodingKeys) throws -> Int64 {
        let value = try container.decode(Double.self, forKey: key)
        guard value.isFinite, value >= 0, value < 1e12 else {
            throw DecodingError.dataCorruptedError(forKey: key, in: container, debugDescription: "not a NumericDate")
        }
        return Int64(value.rounded(.down))
    }

    /// Checked by `AccessTokenVerifier` against its settings, not here.
    public func verify(using algorithm: some JWTAlgorithm) async throws {}
}
