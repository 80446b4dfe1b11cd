import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SessionCore

/// `/v1/session` and `/v1/sessions`: the caller's session, the user's sessions, and ending them.
extension Routes {
    /// 1 EVALSHA (the session with where it was started: authentication read only its 28 bytes), 1 HGET (whether the
    /// user has a second factor: `totp`), and 1 HGET until the username is cached (usernames never change).
    func currentSession(_ context: SessionRequestContext) async throws -> Response {
        let authenticated = try Self.session(context)
        let session = try await core(context) { try await sessions.session(authenticated.id, of: authenticated.userID) } ?? authenticated
        let username = try await core(context) { try await accounts.users.username(for: session.userID) } ?? ""
        let totp = try await core(context) { try await accounts.hasSecondFactor(session.userID) }
        return try Self.json(.ok) { object in
            object.field("user_id", session.userID.text)
            object.field("username", username)
            object.field("session_id", session.id.hex)
            object.field("created_at", UTCTime.rfc3339(session.createdAt))
            object.field("expires_at", UTCTime.rfc3339(session.expiresAt))
            object.field("absolute_expires_at", UTCTime.rfc3339(session.absoluteExpiresAt))
            Self.whereFrom(session, &object)
            object.field("totp", totp)
        }
    }

    /// `ip`, `user_agent`, `device` (empty strings and `Unknown device` for a session started before they were
    /// recorded), `authenticated_at`, and how: `amr` (RFC 8176) and `acr` (`aal1`, `aal2`).
    static func whereFrom(_ session: Session, _ object: inout JSONWriter.ObjectWriter) {
        let metadata = session.metadata ?? SessionMetadata(ip: "", userAgent: nil)
        object.field("ip", metadata.ip)
        object.field("user_agent", metadata.userAgent)
        object.field("device", metadata.device)
        object.field("authenticated_at", UTCTime.rfc3339(session.authenticatedAt))
        object.field("amr", session.level.amr)
        object.field("acr", session.level.acr)
    }

    /// The largest (and default) page of `GET /v1/sessions`.
    static let maxPage = 100

    /// 1 EVALSHA, reading at most `limit` + 1 + `MAX_SESSIONS_PER_USER` index entries.
    func list(_ request: Request, _ context: SessionRequestContext) async throws -> Response {
        let current = try Self.session(context)
        let (limit, cursor) = try Self.pageParameters(request)
        let page = try await core(context) { try await sessions.sessions(for: current.userID, after: cursor, limit: limit) }
        return try Self.sessionsPage(page, current: current.id)
    }

    /// `?limit=` (1 to `maxPage`, default `maxPage`) and `?cursor=` (one a page gave out) of a session listing.
    static func pageParameters(_ request: Request) throws -> (limit: Int, cursor: SessionCursor?) {
        var limit = Self.maxPage
        if let text = request.uri.queryParameters.get("limit") {
            guard let value = Int(text), (1...Self.maxPage).contains(value) else {
                throw APIError.invalidRequest("limit must be a whole number from 1 to \(Self.maxPage)")
            }
            limit = value
        }
        var cursor: SessionCursor?
        if let text = request.uri.queryParameters.get("cursor") {
            guard let value = SessionCursor(text: text) else { throw APIError.invalidRequest("cursor is not one a page gave out") }
            cursor = value
        }
        return (limit, cursor)
    }

    /// `{"sessions": [...], "next_cursor"}`; each item says whether it is `current` when there is a current session
    /// (the user's own listing), not on the operator API.
    static func sessionsPage(_ page: SessionPage, current: SessionID?) throws -> Response {
        try json(.ok) { object in
            object.array(
                "sessions",
                page.sessions.map { session in
                    { (entry: inout JSONWriter.ObjectWriter) in
                        entry.field("session_id", session.id.hex)
                        entry.field("created_at", UTCTime.rfc3339(session.createdAt))
                        entry.field("last_seen_at", UTCTime.rfc3339(session.lastSeenAt))
                        entry.field("expires_at", UTCTime.rfc3339(session.expiresAt))
                        whereFrom(session, &entry)
                        if let current { entry.field("current", session.id == current) }
                    }
                }
            )
            object.field("next_cursor", page.next?.text)
        }
    }

    /// 1 EVALSHA.
    func revoke(_ request: Request, _ context: SessionRequestContext) async throws -> Response {
        let current = try Self.session(context)
        guard let text = context.parameters.get("session_id"), let id = SessionID(hex: text) else {
            throw APIError(SessionError.notFound)
        }
        let ending = SessionEnd(.revoked, origin: origin(request, context))
        guard try await core(context, { try await sessions.revoke(id, of: current.userID, ending: ending) }) else {
            throw APIError(SessionError.notFound)
        }
        return Response(status: .noContent)
    }

    /// 1 EVALSHA.
    func revokeAll(_ request: Request, _ context: SessionRequestContext) async throws -> Response {
        let current = try Self.session(context)
        let ending = SessionEnd(.revokedAll, origin: origin(request, context))
        try await core(context) { try await sessions.revokeAll(for: current.userID, ending: ending) }
        return Response(status: .noContent)
    }
}
