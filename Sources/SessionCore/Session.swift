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
    /// When the session's credentials were last checked: its login, for now.
    public var authenticatedAt: Date { createdAt }

    public init(
        id: SessionID, userID: UserID, createdAt: Date, expiresAt: Date, absoluteExpiresAt: Date, lastSeenAt: Date, metadata: SessionMetadata? = nil
    ) {
        self.metadata = metadata
        self.id = id
        self.userID = userID
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.absoluteExpiresAt = absoluteExpiresAt
        self.lastSeenAt = lastSeenAt
    }
}
