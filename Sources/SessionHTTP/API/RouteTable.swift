import HTTPTypes
import Hummingbird

/// What one listener serves — each route's method, path pattern and handler — in one list. The router is built from it
/// (`register(on:guardedBy:)`) and so are the 405 + `Allow` and 404 answers (`allowedMethods(for:)`), so a route cannot
/// be served without being allowed, or allowed without being served.
///
/// Patterns are Hummingbird's: literal segments, `{name}` (one non-empty segment) and a final `**` (one or more
/// segments). A GET route also answers HEAD (Hummingbird's router does), so `Allow` names both.
struct RouteTable: Sendable {
    typealias Handler = @Sendable (Request, SessionRequestContext) async throws -> Response

    struct Route: Sendable {
        let method: HTTPRequest.Method
        let path: String
        /// Behind the table's guard (the bearer/cookie authenticator for the API).
        let guarded: Bool
        let handler: Handler
    }

    private(set) var routes: [Route] = []

    mutating func add(_ method: HTTPRequest.Method, _ path: String, guarded: Bool = false, _ handler: @escaping Handler) {
        routes.append(Route(method: method, path: path, guarded: guarded, handler: handler))
    }

    /// The methods served at `path` (405 + `Allow` for another method); nil when nothing is served there (404).
    func allowedMethods(for path: String) -> [String]? {
        var methods: [String] = []
        for route in routes where Self.matches(route.path, path) {
            for method in route.method == .get ? [HTTPRequest.Method.get, .head] : [route.method]
            where !methods.contains(method.rawValue) {
                methods.append(method.rawValue)
            }
        }
        return methods.isEmpty ? nil : methods
    }

    /// Registers every route; the guarded ones in a group behind `middleware`.
    func register(on router: Router<SessionRequestContext>, guardedBy middleware: some RouterMiddleware<SessionRequestContext>) {
        let group = router.group().add(middleware: middleware)
        for route in routes {
            if route.guarded { Self.register(route, on: group) } else { Self.register(route, on: router) }
        }
    }

    /// Registers every route (a table without guarded routes).
    func register(on router: Router<SessionRequestContext>) {
        for route in routes {
            precondition(!route.guarded, "a guarded route needs the table's guard")
            Self.register(route, on: router)
        }
    }

    private static func register(_ route: Route, on methods: some RouterMethods<SessionRequestContext>) {
        let handler = route.handler
        methods.on(RouterPath(route.path), method: route.method) { request, context -> Response in try await handler(request, context) }
    }

    /// Whether a concrete path is one the pattern names.
    static func matches(_ pattern: String, _ path: String) -> Bool {
        let wanted = pattern.split(separator: "/", omittingEmptySubsequences: false)
        let given = path.split(separator: "/", omittingEmptySubsequences: false)
        for (index, segment) in wanted.enumerated() {
            if segment == "**" { return given.count > index && !given[index...].allSatisfy(\.isEmpty) }
            guard index < given.count else { return false }
            if segment.hasPrefix("{") { if given[index].isEmpty { return false } } else if segment != given[index] { return false }
        }
        return wanted.count == given.count
    }
}
