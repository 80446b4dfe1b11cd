import HTTPTypes
public import Hummingbird
import Logging
import NIOCore
import Redis
import SessionCore
import Tracing

/// The outermost middleware: every error becomes the API's JSON error, every response gets the API's headers and its
/// request's `X-Request-Id`, and each request is observed (`RequestTelemetry`: id, span, metrics, one log line at
/// debug, server errors at error). Never logs Authorization or Cookie.
public struct APIMiddleware<Context: RequestContext>: RouterMiddleware {
    let telemetry: RequestTelemetry
    /// The methods a path is served with (405 + `Allow`), nil for a path not served (404): the routes' own table.
    let allowedMethods: @Sendable (String) -> [String]?

    /// - Parameter trustedProxies: whose `X-Request-Id` (and `X-Forwarded-For`, for the span's client address) to believe.
    public init(trustedProxies: TrustedProxies = .none) {
        self.init(telemetry: RequestTelemetry(trustedProxies: trustedProxies), allowedMethods: { _ in nil })
    }

    /// With the telemetry the verification fast path shares (one set of series, one id source), and the service's route
    /// table.
    init(telemetry: RequestTelemetry, allowedMethods: @escaping @Sendable (String) -> [String]?) {
        self.telemetry = telemetry
        self.allowedMethods = allowedMethods
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let observation = telemetry.begin(request.head, peer: (context as? any RemoteAddressRequestContext)?.remoteAddress)
        var context = context
        // Hummingbird's own id is replaced by the one the response carries, so a log line and a response match.
        context.logger[metadataKey: "hb.request.id"] = nil
        context.logger[metadataKey: "request_id"] = .string(observation.id)
        var response: Response
        do {
            response = try await RequestObservation.$current.withValue(observation) {
                guard let serviceContext = observation.serviceContext else { return try await next(request, context) }
                return try await ServiceContext.$current.withValue(serviceContext) { try await next(request, context) }
            }
        } catch let error as APIError {
            response = try error.response(from: request, context: context)
        } catch let error as HTTPError {
            response = try translate(error, request: request).response(from: request, context: context)
        } catch let error as any HTTPResponseError {
            // NIOTooManyBytesError (body over the limit) and other framework errors that know their status.
            response = try translate(HTTPError(error.status), request: request).response(from: request, context: context)
        } catch let error as DecodingError {
            response = try APIError.invalidRequest(Self.describe(error)).response(from: request, context: context)
        } catch {
            context.logger.error("unhandled error", metadata: ["error.type": "\(type(of: error))"])
            response = try APIError(.internalServerError, code: "internal", message: "internal error").response(from: request, context: context)
        }
        // Exactly `close`, as Hummingbird's loop compares it (EdgeHandler spells any other close option so): no parsing here.
        Self.addStandardHeaders(to: &response.headers, closing: request.headers[.connection] == "close", requestID: observation.id)
        telemetry.end(observation, route: context.endpointPath ?? "NotFound", status: response.status, logger: context.logger)
        return response
    }

    /// The headers every API response carries, and `Connection: close` when the server closes after it (RFC 9112 §9.6).
    static func addStandardHeaders(to headers: inout HTTPFields, closing: Bool, requestID: String) {
        headers[.xContentTypeOptions] = "nosniff"
        if headers[.cacheControl] == nil { headers[.cacheControl] = "no-store" }
        headers[.xRequestID] = requestID
        if closing { headers[.connection] = "close" }
    }

    func translate(_ error: HTTPError, request: Request) -> APIError {
        switch error.status {
        case .notFound:
            if let allowed = allowedMethods(request.uri.path) {
                return APIError(
                    .methodNotAllowed, code: "method_not_allowed", message: "\(request.method) is not allowed here",
                    headers: [.allow: allowed.joined(separator: ", ")]
                )
            }
            return APIError(.notFound, code: "not_found", message: "no such route")
        case .contentTooLarge:
            return APIError(.contentTooLarge, code: "payload_too_large", message: "the request body is too large")
        case .badRequest:
            return APIError.invalidRequest(error.body ?? "malformed request")
        default:
            return APIError(
                error.status, code: error.status.code < 500 ? "invalid_request" : "internal", message: error.body ?? error.status.reasonPhrase)
        }
    }

    static func describe(_ error: DecodingError) -> String {
        switch error {
        case .keyNotFound(let key, _): return "missing field '\(key.stringValue)'"
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? "the body must be a JSON object" : "field '\(path)' has the wrong type"
        case .dataCorrupted: return "the body is not valid JSON"
        @unknown default: return "the body could not be read"
        }
    }
}

extension HTTPField.Name {
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
    static let xUserID = Self("X-User-Id")!
    /// When the session's login was proved (Unix seconds), for a gateway's own freshness rules.
    static let xAuthTime = Self("X-Auth-Time")!
    /// `aal1` or `aal2`.
    static let xAuthLevel = Self("X-Auth-Level")!
    static let xSessionID = Self("X-Session-Id")!
    static let xForwardedFor = Self("X-Forwarded-For")!
    static let secFetchSite = Self("Sec-Fetch-Site")!
    /// The method of the request a forward-auth call is about: nginx's convention, and Traefik's.
    static let xOriginalMethod = Self("X-Original-Method")!
    static let xForwardedMethod = Self("X-Forwarded-Method")!
}
