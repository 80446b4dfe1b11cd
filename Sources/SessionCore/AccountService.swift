import Foundation

/// Registration and login: the rules, the hashing, the throttle and the session store together.
public struct AccountService: Sendable {
    public let users: any UserStore
    public let sessions: any SessionStore
    public let hasher: PasswordHasher
    public let throttle: LoginThrottle
    /// Whether `register` accepts new users (`REGISTRATION=open|closed`).
    public let registrationOpen: Bool
    /// What a new password must be.
    public let policy: PasswordPolicy
    /// TOTP factors and login challenges; nil: no second factor anywhere.
    public let secondFactors: SecondFactorStore?

    public init(
        users: any UserStore, sessions: any SessionStore, hasher: PasswordHasher, throttle: LoginThrottle, registrationOpen: Bool,
        policy: PasswordPolicy = PasswordPolicy(), secondFactors: SecondFactorStore? = nil
    ) {
        self.users = users
        self.sessions = sessions
        self.hasher = hasher
        self.throttle = throttle
        self.registrationOpen = registrationOpen
        self.policy = policy
        self.secondFactors = secondFactors
    }

    /// A login's outcome: a session, or — the password was right and the account has a second factor — a challenge
    /// that `completeLogin` turns into a session with a code.
    public enum LoginResult: Sendable {
        case session(token: SessionToken, session: Session, user: User)
        case secondFactorRequired(challenge: SessionToken, expiresIn: Int64)
    }

    /// Registers a user. Every well-formed attempt counts toward the client address' registration limit before it
    /// costs a hash.
    /// - Throws: `registrationClosed`, `invalidRequest`, `tooManyAttempts`, `usernameTaken`, `storeUnavailable`,
    ///   `overloaded`.
    public func register(username: String, password: String, clientAddress: String = "") async throws(SessionError) -> User {
        guard registrationOpen else { throw .registrationClosed }
        try Credentials.validateUsername(username)
        try policy.check(password, username: username)
        try await throttle.countRegistration(clientAddress: clientAddress)
        let hash = try await hasher.hash(password, for: clientAddress)
        return try await users.create(username: username, passwordHash: hash)
    }

    /// Checks a password and starts a session.
    ///
    /// Unknown usernames and wrong passwords fail alike (same error, one hash each). Malformed credentials
    /// fail the same way without hashing: they can belong to no account. A right password on a disabled account is
    /// `accountDisabled` (a wrong one stays `invalidCredentials`: the state is told only to who knows the password).
    /// The account state is read before the password hash, and the session is created only if it is unchanged (see
    /// `RedisSessionStore+account.swift` for why that keeps a disable or a password change race-free).
    /// - Throws: `invalidCredentials`, `accountDisabled`, `tooManyAttempts`, `storeUnavailable`, `overloaded`.
    public func login(username: String, password: String, clientAddress: String, userAgent: String? = nil) async throws(SessionError)
        -> LoginResult
    {
        let origin = EventOrigin(ip: clientAddress, userAgent: userAgent)
        let wellFormedName = (try? Credentials.validateUsername(username)) != nil
        do {
            try await throttle.check(username: username, clientAddress: clientAddress)
        } catch {
            if error.code == .tooManyAttempts {
                let id = wellFormedName ? try? await users.userID(username: username) : nil
                await sessions.events.recordLoginFailure(user: id ?? nil, reason: .throttled, origin: origin)
            }
            throw error
        }
        let wellFormed = wellFormedName && Credentials.isPlausiblePassword(password)
        let id = wellFormed ? try await users.userID(username: username) : nil
        let stamp = id != nil ? try await sessions.accountStamp(of: id!) : nil
        let found = id != nil ? try await users.record(id!) : nil
        let matches = try await hasher.verify(password, against: found?.passwordHash, for: clientAddress)
        guard matches, let found, let stamp else {
            try await throttle.recordFailure(username: username, clientAddress: clientAddress)
            // The same one write whether the name is known or not (no `user_id` then).
            await sessions.events.recordLoginFailure(user: found?.user.id, reason: .invalidCredentials, origin: origin)
            throw .invalidCredentials
        }
        try await throttle.reset(username: username, clientAddress: clientAddress)
        guard !stamp.refusesSessions else {
            await sessions.events.recordLoginFailure(user: found.user.id, reason: .accountDisabled, origin: origin)
            throw .accountDisabled
        }
        await rehashIfNeeded(found, password: password, clientAddress: clientAddress)
        let metadata = SessionMetadata(ip: clientAddress, userAgent: userAgent)
        if let secondFactors, try await secondFactors.enabledSecret(of: found.user.id) != nil {
            let challenge = try await secondFactors.openChallenge(for: found.user.id, stamp: stamp, metadata: metadata)
            return .secondFactorRequired(challenge: challenge, expiresIn: SecondFactorStore.challengeLifetime)
        }
        let (token, session) = try await startSession(found, stamp: stamp, metadata: metadata, level: .password)
        return .session(token: token, session: session, user: found.user)
    }

    /// Creates the session of a proved login, unless the account changed since `stamp` was read.
    func startSession(_ found: UserRecord, stamp: AccountStamp, metadata: SessionMetadata?, level: AuthenticationLevel) async throws(SessionError)
        -> (token: SessionToken, session: Session)
    {
        let (token, session) = try await sessions.create(for: found.user.id, expecting: stamp, metadata: metadata, level: level)
        // A deletion's last step removes the state the create compared, so a login that read the state before the
        // deletion began could create after it ended: the record says so now, and the session goes before anyone has it.
        // (A credential change is the state's to catch: the create refused it, or it came after and ended the session.
        // The hash itself may differ here: a concurrent login of the same user rehashed it.)
        let after = try await users.record(found.user.id)
        guard let after, !after.disabled else {
            _ = try? await sessions.revoke(session.id, of: found.user.id, ending: SessionEnd(.accountDisabled, origin: EventOrigin(metadata)))
            throw after?.disabled == true ? .accountDisabled : .invalidCredentials
        }
        return (token, session)
    }

    /// A hash made otherwise than new ones are now (bcrypt, other costs, before NFC) is replaced on a successful login,
    /// only if it is still the stored one (a password change meanwhile wins). Best effort: the login has succeeded; a
    /// failure leaves the old hash, which still verifies, for the next login.
    private func rehashIfNeeded(_ record: UserRecord, password: String, clientAddress: String) async {
        guard hasher.needsRehash(record.passwordHash), let hash = try? await hasher.hash(password, for: clientAddress) else { return }
        _ = try? await users.replacePasswordHash(record.user.id, from: record.passwordHash, to: hash)
    }

    /// Changes a signed-in user's password after checking the current one (a wrong one counts as a failed login for
    /// that user and address). Other sessions end unless `endOtherSessions` is false; `current` stays.
    /// - Throws: `invalidRequest` (the new password breaks a rule), `invalidCredentials`, `tooManyAttempts`,
    ///   `storeUnavailable`, `overloaded`.
    public func changePassword(
        of user: UserID, keeping current: SessionID, currentPassword: String, newPassword: String, endOtherSessions: Bool,
        clientAddress: String, userAgent: String? = nil
    ) async throws(SessionError) {
        guard let record = try await users.record(user) else { throw .invalidCredentials }
        let username = record.user.username
        try policy.check(newPassword, username: username)
        try await throttle.check(username: username, clientAddress: clientAddress)
        guard try await hasher.verify(currentPassword, against: record.passwordHash, for: clientAddress) else {
            try await throttle.recordFailure(username: username, clientAddress: clientAddress)
            throw .invalidCredentials
        }
        try await throttle.reset(username: username, clientAddress: clientAddress)
        try await setPassword(
            user, to: newPassword, keeping: endOtherSessions ? current : nil, endSessions: endOtherSessions, clientAddress: clientAddress,
            origin: EventOrigin(ip: clientAddress, userAgent: userAgent))
    }

    /// An operator's password reset: the rules apply, and every session ends.
    /// - Throws: `invalidRequest`, `notFound`, `storeUnavailable`, `overloaded`.
    public func resetPassword(of user: UserID, to newPassword: String, clientAddress: String, origin: EventOrigin = .none) async throws(SessionError)
    {
        guard let record = try await users.record(user) else { throw .userNotFound }
        try policy.check(newPassword, username: record.user.username)
        try await setPassword(user, to: newPassword, keeping: nil, endSessions: true, clientAddress: clientAddress, origin: origin)
    }

    /// The record first, then the state and the sessions in one step (the order logins rely on).
    private func setPassword(
        _ user: UserID, to password: String, keeping: SessionID?, endSessions: Bool, clientAddress: String, origin: EventOrigin
    ) async throws(SessionError) {
        let hash = try await hasher.hash(password, for: clientAddress)
        guard try await users.setPassword(user, hash: hash) else { throw .userNotFound }
        try await sessions.changeAccount(of: user, endSessions ? .credentials : .credentialsKeepingSessions, keeping: keeping, origin: origin)
    }

    /// Disables or enables an account: disabling ends every session and refuses new ones; enabling ends nothing.
    /// - Throws: `notFound`, `storeUnavailable`.
    public func setDisabled(_ user: UserID, _ disabled: Bool, origin: EventOrigin = .none) async throws(SessionError) {
        guard try await users.setDisabled(user, disabled) else { throw .userNotFound }
        try await sessions.changeAccount(of: user, disabled ? .disable : .enable, keeping: nil, origin: origin)
    }

    /// Deletes an account: no new session from the first step, every session ended, then the record, the username
    /// and the state go — nothing of the user is left.
    /// - Throws: `notFound`, `storeUnavailable`.
    public func delete(_ user: UserID, origin: EventOrigin = .none) async throws(SessionError) {
        guard let record = try await users.record(user) else { throw .userNotFound }
        try await sessions.changeAccount(of: user, .delete, keeping: nil, origin: origin)
        try await users.delete(record)
        try await sessions.changeAccount(of: user, .purge, keeping: nil, origin: origin)
    }
}
