public import Foundation

/// A live session, as the store knows it. Carries no token.
public struct Session: Sendable, Hashable {
    /// The public handle (`session_id`).
    public let id: SessionID
    /// Whose session it is.
    public let userID: UserID
    /// When the user logged in.
    public let createdAt: Date
    /// When the session ends if unused: the idle deadline, never later than `absoluteExpiresAt`.
    public let expiresAt: Date
    /// When the session ends whatever its activity.
    public let absoluteExpiresAt: Date
    /// The last authenticated use (renewal), derived from the idle deadline; equals `createdAt` before any use.
    public let lastSeenAt: Date
    /// Where it was started; nil when not read (a verification reads only the session itself) or never recorded.
    public var metadata: SessionMetadata?
    /// How the login behind it was proved.
    public let level: AuthenticationLevel
    /// When the session's credentials were checked: its login or re-authentication (which starts a new session).
    public var authenticatedAt: Date { createdAt }

    public init(
        id: SessionID, userID: UserID, createdAt: Date, expiresAt: Date, absoluteExpiresAt: Date, lastSeenAt: Date, metadata: SessionMetadata? = nil,
        level: AuthenticationLevel = .password
    ) {
        self.metadata = metadata
        self.level = level
        self.id = id
        self.userID = userID
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.absoluteExpiresAt = absoluteExpiresAt
        self.lastSeenAt = lastSeenAt
    }
}

/// How a session's login was proved: a password alone, or a password and a second factor.
public enum AuthenticationLevel: Sendable, Hashable {
    case password
    case secondFactor

    /// RFC 8176 authentication method references: `["pwd"]` or `["pwd", "otp"]`.
    public var amr: [String] { self == .password ? ["pwd"] : ["pwd", "otp"] }
    /// NIST SP 800-63B authenticator assurance level, as `acr` values: `aal1` or `aal2`.
    public var acr: String { self == .password ? "aal1" : "aal2" }
}
