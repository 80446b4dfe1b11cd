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
    /// fail the same way without hashing: they can belong to no account. A right password on a disabled account is
    /// `accountDisabled` (a wrong one stays `invalidCredentials`: the state is told only to who knows the password).
    /// The account state is read before the password hash, and the session is created only if it is unchanged (see
    /// `RedisSessionStore+account.swift` for why that keeps a disable or a password change race-free).
    /// - Throws: `invalidCredentials`, `accountDisabled`, `tooManyAttempts`, `storeUnavailable`, `overloaded`.
    public func login(username: String, password: String, clientAddress: String, userAgent: String? = nil) async throws(SessionError) -> (
        token: SessionToken, session: Session, user: User
    ) {
        try await throttle.check(username: username, clientAddress: clientAddress)
        let wellFormed = (try? Credentials.validateUsername(username)) != nil && (try? Credentials.validatePassword(password)) != nil
        let id = wellFormed ? try await users.userID(username: username) : nil
        let stamp = id != nil ? try await sessions.accountStamp(of: id!) : nil
        let found = id != nil ? try await users.record(id!) : nil
        let matches = try await hasher.verify(password, against: found?.passwordHash, for: clientAddress)
        guard matches, let found, let stamp else {
            try await throttle.recordFailure(username: username, clientAddress: clientAddress)
            throw .invalidCredentials
        }
        try await throttle.reset(username: username, clientAddress: clientAddress)
        guard !stamp.refusesSessions else { throw .accountDisabled }
        let metadata = SessionMetadata(ip: clientAddress, userAgent: userAgent)
        let (token, session) = try await sessions.create(for: found.user.id, expecting: stamp, metadata: metadata)
        // A deletion's last step removes the state the create compared, so a login that read the state before the
        // deletion began could create after it ended: the record says so now, and the session goes before anyone has it.
        let after = try await users.record(found.user.id)
        guard let after, after.passwordHash == found.passwordHash, !after.disabled else {
            _ = try? await sessions.revoke(session.id, of: found.user.id)
            throw after?.disabled == true ? .accountDisabled : .invalidCredentials
        }
        return (token, session, found.user)
    }

    /// Changes a signed-in user's password after checking the current one (a wrong one counts as a failed login for
    /// that user and address). Other sessions end unless `endOtherSessions` is false; `current` stays.
    /// - Throws: `invalidRequest` (the new password breaks a rule), `invalidCredentials`, `tooManyAttempts`,
    ///   `storeUnavailable`, `overloaded`.
    public func changePassword(
        of user: UserID, keeping current: SessionID, currentPassword: String, newPassword: String, endOtherSessions: Bool,
        clientAddress: String
    ) async throws(SessionError) {
        try Credentials.validatePassword(newPassword)
        guard let record = try await users.record(user) else { throw .invalidCredentials }
        let username = record.user.username
        try await throttle.check(username: username, clientAddress: clientAddress)
        guard try await hasher.verify(currentPassword, against: record.passwordHash, for: clientAddress) else {
            try await throttle.recordFailure(username: username, clientAddress: clientAddress)
            throw .invalidCredentials
        }
        try await throttle.reset(username: username, clientAddress: clientAddress)
        try await setPassword(
            user, to: newPassword, keeping: endOtherSessions ? current : nil, endSessions: endOtherSessions, clientAddress: clientAddress)
    }

    /// An operator's password reset: the rules apply, and every session ends.
    /// - Throws: `invalidRequest`, `notFound`, `storeUnavailable`, `overloaded`.
    public func resetPassword(of user: UserID, to newPassword: String, clientAddress: String) async throws(SessionError) {
        try Credentials.validatePassword(newPassword)
        guard try await users.record(user) != nil else { throw .userNotFound }
        try await setPassword(user, to: newPassword, keeping: nil, endSessions: true, clientAddress: clientAddress)
    }

    /// The record first, then the state and the sessions in one step (the order logins rely on).
    private func setPassword(_ user: UserID, to password: String, keeping: SessionID?, endSessions: Bool, clientAddress: String)
        async throws(SessionError)
    {
        let hash = try await hasher.hash(password, for: clientAddress)
        guard try await users.setPassword(user, hash: hash) else { throw .userNotFound }
        try await sessions.changeAccount(of: user, endSessions ? .credentials : .credentialsKeepingSessions, keeping: keeping)
    }

    /// Disables or enables an account: disabling ends every session and refuses new ones; enabling ends nothing.
    /// - Throws: `notFound`, `storeUnavailable`.
    public func setDisabled(_ user: UserID, _ disabled: Bool) async throws(SessionError) {
        guard try await users.setDisabled(user, disabled) else { throw .userNotFound }
        try await sessions.changeAccount(of: user, disabled ? .disable : .enable, keeping: nil)
    }

    /// Deletes an account: no new session from the first step, every session ended, then the record, the username
    /// and the state go — nothing of the user is left.
    /// - Throws: `notFound`, `storeUnavailable`.
    public func delete(_ user: UserID) async throws(SessionError) {
        guard let record = try await users.record(user) else { throw .userNotFound }
        try await sessions.changeAccount(of: user, .delete, keeping: nil)
        try await users.delete(record)
        try await sessions.changeAccount(of: user, .purge, keeping: nil)
    }
}
