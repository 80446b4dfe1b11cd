package import NIOCore

// The core's storage seams. The HTTP layer sees only these protocols; the Redis stores (`RedisSessionStore`,
// `RedisUserStore`, `RedisReadinessProbe`) implement them, and a Sentinel/Cluster topology or a near cache changes
// what is behind them, not the routes.

/// Where sessions live: create on login, authenticate on every request, list and revoke.
///
/// The seam for later transports and modes (a JWT mode, a near-cache in front, Sentinel or Cluster behind):
/// the HTTP layer sees only this protocol.
public protocol SessionStore: Sendable {
    /// Starts a session for a user and returns its token (the only copy; the store keeps a hash).
    func create(for user: UserID) async throws(SessionError) -> (token: SessionToken, session: Session)
    /// Starts a session unless the account is disabled (`accountDisabled`) or its state is no longer `stamp` — its
    /// credentials changed after the login read it (`invalidCredentials`); nil `stamp`: any state but disabled.
    /// `level`: how the login was proved (kept with the session, in its 28 bytes).
    func create(for user: UserID, expecting stamp: AccountStamp?, metadata: SessionMetadata?, level: AuthenticationLevel) async throws(SessionError)
        -> (token: SessionToken, session: Session)
    /// The account's state as session creation sees it; read before the password is checked.
    func accountStamp(of user: UserID) async throws(SessionError) -> AccountStamp
    /// Changes the account's state and ends its sessions (but `keeping`) in one atomic step; returns the ended IDs.
    /// Records the change's events (and a `session.ended` per ended session) in the same step, with `origin`.
    @discardableResult
    func changeAccount(of user: UserID, _ change: AccountChange, keeping: SessionID?, origin: EventOrigin) async throws(SessionError)
        -> [SessionID]
    /// How many sessions of the user are live.
    func liveSessionCount(for user: UserID) async throws(SessionError) -> Int
    /// The live session of a token, renewing its idle deadline; nil when unknown, expired or revoked.
    /// The hot path: one store round trip.
    func authenticate(_ token: SessionToken) async throws(SessionError) -> Session?
    /// The live session of a token without renewing it (introspection); nil when unknown, expired or revoked.
    func peek(_ token: SessionToken) async throws(SessionError) -> Session?
    /// A live session of a user by its ID, without renewing it; nil when it has ended or is not that user's.
    func session(_ id: SessionID, of user: UserID) async throws(SessionError) -> Session?
    /// Whether a session of a user is live: one `EXISTS`, the revocation check of a signed access token.
    func isLive(_ id: SessionID, of user: UserID) async throws(SessionError) -> Bool
    /// Ends one session of a user, recording its `session.ended` in the same step; false when it is not a live session
    /// of that user.
    func revoke(_ session: SessionID, of user: UserID, ending: SessionEnd) async throws(SessionError) -> Bool
    /// Ends every session of a user, each with its `session.ended`.
    func revokeAll(for user: UserID, ending: SessionEnd) async throws(SessionError)
    /// Where the store records lifecycle events (its scripts write them; this reads them and records the rest).
    var events: LifecycleEvents { get }
    /// A page of the user's live sessions, oldest first: at most `limit`, after `cursor` (nil: from the start).
    func sessions(for user: UserID, after cursor: SessionCursor?, limit: Int) async throws(SessionError) -> SessionPage
}

/// A store that can also authenticate from event-loop code, without a task: what the verification fast path
/// (SessionHTTP's `EdgeHandler`) needs to keep a request on one thread. An internal of that one optimisation.
package protocol EventLoopSessionAuthenticating: SessionStore {
    /// The same as `authenticate(_:)`; `completion` runs on `eventLoop`.
    func authenticate(_ token: SessionToken, on eventLoop: any EventLoop, completion: @escaping @Sendable (Result<Session?, SessionError>) -> Void)
}

/// Why and by whom sessions end: what their `session.ended` events say.
public struct SessionEnd: Sendable {
    public var reason: SessionEndReason
    public var origin: EventOrigin

    public init(_ reason: SessionEndReason, origin: EventOrigin = .none) {
        self.reason = reason
        self.origin = origin
    }
}

/// Where user accounts live: the username index and the password hash.
public protocol UserStore: Sendable {
    /// Registers a user under a username nobody holds yet.
    /// - Throws: `usernameTaken`, `storeUnavailable`.
    func create(username: String, passwordHash: String) async throws(SessionError) -> User
    /// The username of a user ID, or nil when no such user exists.
    func username(for id: UserID) async throws(SessionError) -> String?
    /// The user ID a username is registered under (case-insensitively), or nil.
    func userID(username: String) async throws(SessionError) -> UserID?
    /// A user's record by ID, or nil.
    func record(_ id: UserID) async throws(SessionError) -> UserRecord?
    /// Replaces a user's password hash; false when there is no such user.
    func setPassword(_ id: UserID, hash: String) async throws(SessionError) -> Bool
    /// Replaces a user's password hash with another of the same password (a rehash) only if it is still `old`; false
    /// otherwise.
    func replacePasswordHash(_ id: UserID, from old: String, to new: String) async throws(SessionError) -> Bool
    /// Marks a user disabled or not; false when there is no such user.
    func setDisabled(_ id: UserID, _ disabled: Bool) async throws(SessionError) -> Bool
    /// Removes a user's record and their username reservation.
    func delete(_ record: UserRecord) async throws(SessionError)
}

/// Whether the store behind the service answers: `/readyz`.
public protocol ReadinessProbe: Sendable {
    /// True when the store answers now.
    func isReady() async -> Bool
}

/// A page of a user's sessions, and where the next one starts.
public struct SessionPage: Sendable {
    /// The sessions of this page, oldest first.
    public let sessions: [Session]
    /// Where the next page starts; nil on the last page.
    public let next: SessionCursor?

    public init(sessions: [Session], next: SessionCursor?) {
        self.sessions = sessions
        self.next = next
    }
}

/// An opaque position in a user's session list: the last listed session's place in the index (its absolute
/// deadline in seconds and its ID), so sessions ending between two pages shift nothing.
public struct SessionCursor: Sendable, Hashable {
    let score: Int64
    let id: SessionID

    init(score: Int64, id: SessionID) {
        self.score = score
        self.id = id
    }

    /// Parses the text a page gave out; nil when it is not one.
    public init?(text: String) {
        let parts = text.split(separator: "-", maxSplits: 1)
        guard parts.count == 2, let score = Int64(parts[0]), score >= 0, let id = SessionID(hex: parts[1]) else { return nil }
        self.init(score: score, id: id)
    }

    /// The text to hand out (`next_cursor`).
    public var text: String { "\(score)-\(id.hex)" }
}

/// An account's state as session creation checks it, read before a password check and compared when the session is
/// created: a change in between (a password change, a disable) refuses the session.
public struct AccountStamp: Sendable, Hashable {
    /// `<n>`, `d<n>` or `x` (see `KeySchema`).
    public let text: String

    public init(text: String) { self.text = text }

    /// Disabled, or being deleted: no new session.
    public var refusesSessions: Bool { text.hasPrefix("d") || text.hasPrefix("x") }
}

/// What an account change does, beside ending sessions.
public enum AccountChange: String, Sendable {
    /// New credentials (a password change or reset): a login that proved the old ones gets no session.
    case credentials
    /// New credentials, and no session ends (a password change with `end_other_sessions: false`).
    case credentialsKeepingSessions = "credentials_keep"
    /// Disabled: no session until enabled.
    case disable
    /// Enabled again; ends nothing.
    case enable
    /// Being deleted: no session ever again, until `purge`.
    case delete
    /// The last step of a deletion: the state itself goes.
    case purge

    /// The event the change records (`purge` records none: the deletion's was recorded by `delete`).
    var eventType: LifecycleEventType {
        switch self {
        case .credentials, .credentialsKeepingSessions: .passwordChanged
        case .disable: .accountDisabled
        case .enable: .accountEnabled
        case .delete, .purge: .accountDeleted
        }
    }
}
