package import NIOCore
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

    public init(id: SessionID, userID: UserID, createdAt: Date, expiresAt: Date, absoluteExpiresAt: Date, lastSeenAt: Date) {
        self.id = id
        self.userID = userID
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.absoluteExpiresAt = absoluteExpiresAt
        self.lastSeenAt = lastSeenAt
    }
}

/// Where sessions live: create on login, authenticate on every request, list and revoke.
///
/// The seam for later transports and modes (a JWT mode, a near-cache in front, Sentinel or Cluster behind):
/// the HTTP layer sees only this protocol.
public protocol SessionStore: Sendable {
    /// Starts a session for a user and returns its token (the only copy; the store keeps a hash).
    func create(for user: UserID) async throws(SessionError) -> (token: SessionToken, session: Session)
    /// The live session of a token, renewing its idle deadline; nil when unknown, expired or revoked.
    /// The hot path: one store round trip.
    func authenticate(_ token: SessionToken) async throws(SessionError) -> Session?
    /// Ends one session of a user; false when it is not a live session of that user.
    func revoke(_ session: SessionID, of user: UserID) async throws(SessionError) -> Bool
    /// Ends every session of a user.
    func revokeAll(for user: UserID) async throws(SessionError)
    /// The user's live sessions, oldest first.
    func sessions(for user: UserID) async throws(SessionError) -> [Session]
}

/// A store that can also authenticate from event-loop code, without a task: what the verification fast path
/// (SessionHTTP's `VerifyHandler`) needs to keep a request on one thread. An internal of that one optimisation.
package protocol EventLoopSessionAuthenticating: SessionStore {
    /// The same as `authenticate(_:)`; `completion` runs on `eventLoop`.
    func authenticate(_ token: SessionToken, on eventLoop: any EventLoop, completion: @escaping @Sendable (Result<Session?, SessionError>) -> Void)
}
