import Foundation
import HTTPTypes
public import Hummingbird
import Logging
import Metrics
import NIOCore
public import SessionCore

/// The operator API (`/v1/admin/*`), served only on its own listener (`ADMIN_PORT`): the public port does not know
/// these paths (404). Every request needs HTTP Basic credentials of `ADMIN_CLIENTS` (401 `invalid_client` otherwise;
/// failures throttled per client name and per address, like the introspection clients'); every action is logged at
/// info with `admin_client`, the action and the `user_id`, and counted in `session_admin_actions_total{action}`.
public struct AdminRoutes: Sendable {
    let accounts: AccountService
    let clients: IntrospectionClients
    let trustedProxies: TrustedProxies
    let maxBodySize: Int
    let telemetry: RequestTelemetry

    static let realm = "session-service-admin"

    init(accounts: AccountService, clients: IntrospectionClients, trustedProxies: TrustedProxies, maxBodySize: Int, telemetry: RequestTelemetry) {
        self.accounts = accounts
        self.clients = clients
        self.trustedProxies = trustedProxies
        self.maxBodySize = maxBodySize
        self.telemetry = telemetry
    }

    /// Adds the admin routes, and the 405/404 answers their table gives, to the admin listener's router.
    public func add(to router: Router<SessionRequestContext>) {
        let table = self.table
        router.add(middleware: APIMiddleware(telemetry: telemetry, allowedMethods: { table.allowedMethods(for: $0) }))
        table.register(on: router)
    }

    /// Every admin route (each authorizes its caller itself: the client's name goes into the action's record).
    var table: RouteTable {
        var table = RouteTable()
        table.add(.get, "/v1/admin/users") { request, context in
            let client = try await authorize(request, context)
            guard let name = request.uri.queryParameters.get("username"), !name.isEmpty else {
                throw APIError.invalidRequest("give ?username=<name>")
            }
            guard let id = try await core(context, { try await accounts.users.userID(username: name) }) else { throw APIError(.userNotFound) }
            return try await userObject(id, client: client, action: "find_user", context)
        }
        table.add(.get, "/v1/admin/users/{user_id}") { request, context in
            let client = try await authorize(request, context)
            return try await userObject(try Self.userID(context), client: client, action: "get_user", context)
        }
        table.add(.get, "/v1/admin/users/{user_id}/sessions") { request, context in
            let client = try await authorize(request, context)
            let user = try await existing(try Self.userID(context), context)
            let (limit, cursor) = try Routes.pageParameters(request)
            let page = try await core(context) { try await accounts.sessions.sessions(for: user, after: cursor, limit: limit) }
            record("list_sessions", client: client, user: user, context)
            return try Routes.sessionsPage(page, current: nil)
        }
        table.add(.get, "/v1/admin/users/{user_id}/events") { request, context in
            let client = try await authorize(request, context)
            let user = try await existing(try Self.userID(context), context)
            let events = try await core(context) { try await accounts.sessions.events.recent(of: user) }
            record("list_events", client: client, user: user, context)
            return Routes.events(events)
        }
        table.add(.get, "/v1/admin/webhooks/failed") { request, context in
            let client = try await authorize(request, context)
            let failed = try await core(context) { try await accounts.sessions.events.failed() }
            record("list_failed_webhooks", client: client, user: nil, context)
            return Routes.events(failed)
        }
        table.add(.post, "/v1/admin/webhooks/failed/retry") { request, context in
            let client = try await authorize(request, context)
            let requeued = try await core(context) { try await accounts.sessions.events.requeueFailed() }
            record("retry_failed_webhooks", client: client, user: nil, context)
            return try Routes.json(.ok) { $0.field("requeued", requeued) }
        }
        table.add(.delete, "/v1/admin/users/{user_id}/sessions") { request, context in
            let client = try await authorize(request, context)
            let user = try await existing(try Self.userID(context), context)
            let ending = SessionEnd(.admin, origin: origin(request, context, client: client))
            try await core(context) { try await accounts.sessions.revokeAll(for: user, ending: ending) }
            record("end_sessions", client: client, user: user, context)
            return Response(status: .noContent)
        }
        table.add(.delete, "/v1/admin/users/{user_id}/sessions/{session_id}") { request, context in
            let client = try await authorize(request, context)
            let user = try Self.userID(context)
            guard let text = context.parameters.get("session_id"), let id = SessionID(hex: text),
                try await core(
                    context,
                    { try await accounts.sessions.revoke(id, of: user, ending: SessionEnd(.admin, origin: origin(request, context, client: client))) }
                )
            else { throw APIError(SessionError.notFound) }
            record("end_session", client: client, user: user, context)
            return Response(status: .noContent)
        }
        for (action, disabled) in [("disable", true), ("enable", false)] {
            table.add(.post, "/v1/admin/users/{user_id}/\(action)") { request, context in
                let client = try await authorize(request, context)
                let user = try Self.userID(context)
                let origin = origin(request, context, client: client)
                try await core(context) { try await accounts.setDisabled(user, disabled, origin: origin) }
                record(action, client: client, user: user, context)
                return Response(status: .noContent)
            }
        }
        table.add(.put, "/v1/admin/users/{user_id}/password") { request, context in
            let client = try await authorize(request, context)
            let user = try Self.userID(context)
            let buffer = try await FormBody.collect(request, limit: maxBodySize)
            let body = try JSONBody.decode(NewPasswordBody.self, buffer, mediaType: CredentialsBody.mediaType(request), fields: "new_password")
            let address = trustedProxies.clientAddress(peer: context.peerAddress, forwardedFor: request.headers[values: .xForwardedFor])
            let origin = origin(request, context, client: client)
            try await core(context) { try await accounts.resetPassword(of: user, to: body.newPassword, clientAddress: address, origin: origin) }
            record("reset_password", client: client, user: user, context)
            return Response(status: .noContent)
        }
        table.add(.delete, "/v1/admin/users/{user_id}") { request, context in
            let client = try await authorize(request, context)
            let user = try Self.userID(context)
            let origin = origin(request, context, client: client)
            try await core(context) { try await accounts.delete(user, origin: origin) }
            record("delete", client: client, user: user, context)
            return Response(status: .noContent)
        }
        return table
    }

    /// An operator's request as its lifecycle events say it: the admin client's name, and where it came from.
    private func origin(_ request: Request, _ context: SessionRequestContext, client: String) -> EventOrigin {
        EventOrigin(request, context, trustedProxies: trustedProxies, adminClient: client)
    }

    /// `{"user_id","username","created_at","disabled","sessions"}`; 404 `not_found` for no such user.
    private func userObject(_ id: UserID, client: String, action: String, _ context: SessionRequestContext) async throws -> Response {
        guard let found = try await core(context, { try await accounts.users.record(id) }) else { throw APIError(.userNotFound) }
        let live = try await core(context) { try await accounts.sessions.liveSessionCount(for: id) }
        record(action, client: client, user: id, context)
        return try Routes.json(.ok) { object in
            object.field("user_id", id.text)
            object.field("username", found.user.username)
            object.field("created_at", UTCTime.rfc3339(Date(timeIntervalSince1970: Double(found.createdAt) / 1000)))
            object.field("disabled", found.disabled)
            object.field("sessions", live)
        }
    }

    private func existing(_ id: UserID, _ context: SessionRequestContext) async throws -> UserID {
        guard try await core(context, { try await accounts.users.record(id) }) != nil else { throw APIError(.userNotFound) }
        return id
    }

    /// The path's user ID; 404 `not_found` when it is not one (nobody has it).
    private static func userID(_ context: SessionRequestContext) throws -> UserID {
        guard let text = context.parameters.get("user_id"), let id = UserID(text) else { throw APIError(.userNotFound) }
        return id
    }

    /// HTTP Basic against `ADMIN_CLIENTS`, throttled per offered name and per address (429 + `Retry-After`, checked
    /// before the secret); 401 `invalid_client` otherwise. Returns the client's name.
    private func authorize(_ request: Request, _ context: SessionRequestContext) async throws -> String {
        let authorization = request.headers[.authorization]
        let offered = IntrospectionClients.offeredID(authorization: authorization) ?? ""
        let address = trustedProxies.clientAddress(peer: context.peerAddress, forwardedFor: request.headers[values: .xForwardedFor])
        // Counted apart from the introspection clients': one name may be both.
        let throttled = "admin:" + offered
        try await core(context) { try await accounts.throttle.checkClient(name: throttled, clientAddress: address) }
        guard let client = clients.client(authorization: authorization) else {
            context.logger.warning("admin authentication failed", metadata: ["admin_client": "\(offered)", "client.address": "\(address)"])
            Counter(label: "session_client_auth_failures_total").increment()
            try await core(context) { try await accounts.throttle.recordClientFailure(name: throttled, clientAddress: address) }
            throw APIError(
                .unauthorized, code: "invalid_client", message: "authenticate with HTTP Basic as a client in ADMIN_CLIENTS",
                headers: [.wwwAuthenticate: "Basic realm=\"\(Self.realm)\", charset=\"UTF-8\""])
        }
        return client
    }

    private func record(_ action: String, client: String, user: UserID?, _ context: SessionRequestContext) {
        Counter(label: "session_admin_actions_total", dimensions: [("action", action)]).increment()
        var metadata: Logger.Metadata = ["admin_client": "\(client)", "action": "\(action)"]
        if let user { metadata["user_id"] = "\(user)" }
        context.logger.info("admin action", metadata: metadata)
    }

    private func core<T>(_ context: SessionRequestContext, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as SessionError {
            if error.code == .storeUnavailable { context.logger.error("session store failed", metadata: ["error": "\(error)"]) }
            throw APIError(error)
        }
    }
}

/// `{"new_password"}`.
struct NewPasswordBody: Decodable {
    let newPassword: String

    enum CodingKeys: String, CodingKey {
        case newPassword = "new_password"
    }
}
