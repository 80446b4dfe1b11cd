import Foundation

/// Registration and login: the rules, the hashing, the throttle and the session store together.
public struct AccountService: Sendable {
    public let users: any UserStore
    public let sessions: any SessionStore
    public let hasher: PasswordHasher
    public let throttle: LoginThrottle
    /// Whether `register` accepts new users (`REGISTRATION=open|closed`).
    public let registrationOpen: Bool

    public init(users: any UserStore, sessions: any SessionStore, hasher: PasswordHasher, throttle: LoginThrottle, registrationOpen: Bool) {
        self.users = users
        self.sessions = sessions
        self.hasher = hasher
        self.throttle = throttle
        self.registrationOpen = registrationOpen
    }

    /// Registers a user. Every well-formed attempt counts toward the client address' registration limit before it
    /// costs a hash.
    /// - Throws: `registrationClosed`, `invalidRequest`, `tooManyAttempts`, `usernameTaken`, `storeUnavailable`,
    ///   `overloaded`.
    public func register(username: String, password: String, clientAddress: String = "") async throws(SessionError) -> User {
        guard registrationOpen else { throw .registrationClosed }
        try Credentials.validateUsername(username)
        try Credentials.validatePassword(password)
        try await throttle.countRegistration(clientAddress: clientAddress)
        let hash = try await hasher.hash(password, for: clientAddress)
        return try await users.create(username: username, passwordHash: hash)
    }

    /// Checks a password and starts a session.
    ///
    /// Unknown usernames and wrong passwords fail alike (same error, one bcrypt each). Malformed credentials
    /// fail the same way without hashing: they can belong to no account.
    /// - Throws: `invalidCredentials`, `tooManyAttempts`, `storeUnavailable`, `overloaded`.
    public func login(username: String, password: String, clientAddress: String) async throws(SessionError) -> (
        token: SessionToken, session: Session, user: User
    ) {
        try await throttle.check(username: username, clientAddress: clientAddress)
        let wellFormed = (try? Credentials.validateUsername(username)) != nil && (try? Credentials.validatePassword(password)) != nil
        let found = wellFormed ? try await users.find(username: username) : nil
        let matches = try await hasher.verify(password, against: found?.passwordHash, for: clientAddress)
        guard matches, let user = found?.user else {
            try await throttle.recordFailure(username: username, clientAddress: clientAddress)
            throw .invalidCredentials
        }
        try await throttle.reset(username: username, clientAddress: clientAddress)
        let (token, session) = try await sessions.create(for: user.id)
        return (token, session, user)
    }
}
