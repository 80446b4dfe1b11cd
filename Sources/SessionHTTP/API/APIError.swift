public import HTTPTypes
public import Hummingbird
import NIOCore
public import SessionCore

/// An error as the API shows it: a status, `{"error": code, "message": text}`, and any headers it needs.
public struct APIError: HTTPResponseError, Sendable {
    public let status: HTTPResponse.Status
    public let code: String
    public let message: String
    public var headers: HTTPFields

    public init(_ status: HTTPResponse.Status, code: String, message: String, headers: HTTPFields = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        Response(status: status, headers: responseHeaders, body: .init(byteBuffer: body))
    }

    /// The error's own headers and the JSON content type.
    var responseHeaders: HTTPFields {
        var headers = self.headers
        headers[.contentType] = JSONWriter.contentType
        return headers
    }

    /// `{"error": code, "message": text}`.
    var body: ByteBuffer {
        var body = JSONWriter()
        body.object { object in
            object.field("error", code)
            object.field("message", message)
        }
        return body.buffer
    }

    static let realm = "session-service"

    /// 401 without credentials (RFC 6750: no error code in the challenge).
    public static var missingToken: APIError {
        APIError(
            .unauthorized, code: "missing_token", message: "send Authorization: Bearer <token>",
            headers: [.wwwAuthenticate: "Bearer realm=\"\(realm)\""]
        )
    }

    /// 401 for an unknown, expired, revoked or malformed token.
    public static var invalidToken: APIError {
        APIError(
            .unauthorized, code: "invalid_token", message: "the token is unknown, expired, revoked or malformed",
            headers: [.wwwAuthenticate: "Bearer realm=\"\(realm)\", error=\"invalid_token\""]
        )
    }

    /// 403 for a cookie-authenticated unsafe request (or a browser login) from another site: CSRF.
    public static var crossOriginRequest: APIError {
        APIError(.forbidden, code: "cross_origin_request", message: "cross-origin request refused (CSRF protection)")
    }

    /// 404 on the JWT routes of a service started without `JWT_KEYS_FILE` or `JWT_HS256_SECRET`.
    public static var jwtDisabled: APIError {
        APIError(.notFound, code: "jwt_disabled", message: "signed access tokens are not enabled on this service (JWT_KEYS_FILE)")
    }

    /// 401 for a client of `/v1/introspect` or `/v1/revoke` without valid HTTP Basic credentials (RFC 6749 §5.2).
    public static var invalidClient: APIError {
        APIError(
            .unauthorized, code: "invalid_client", message: "authenticate with HTTP Basic as a client in INTROSPECTION_CLIENTS",
            headers: [.wwwAuthenticate: "Basic realm=\"\(realm)\", charset=\"UTF-8\""]
        )
    }

    /// 400 with a reason.
    public static func invalidRequest(_ message: String) -> APIError {
        APIError(.badRequest, code: "invalid_request", message: message)
    }

    /// The HTTP face of a core error.
    public init(_ error: SessionError) {
        var headers: HTTPFields = [:]
        if let retryAfter = error.retryAfter { headers[.retryAfter] = String(retryAfter) }
        let status: HTTPResponse.Status
        switch error.code {
        case .invalidRequest: status = .badRequest
        case .usernameTaken: status = .conflict
        case .registrationClosed, .accountDisabled, .reauthenticationRequired: status = .forbidden
        case .invalidCredentials, .invalidCode, .invalidChallenge: status = .unauthorized
        case .tooManyAttempts: status = .tooManyRequests
        case .storeUnavailable, .overloaded: status = .serviceUnavailable
        case .notFound: status = .notFound
        default: status = .internalServerError
        }
        self.init(status, code: error.code.text, message: error.message, headers: headers)
    }
}
