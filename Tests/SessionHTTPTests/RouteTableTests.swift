import Hummingbird
import Testing

@testable import SessionHTTP

/// The one route table: what it serves is what `Allow` names, and nothing else is found (no server needed).
@Suite struct RouteTableTests {
    private func table() -> RouteTable {
        var table = RouteTable()
        let ok: RouteTable.Handler = { _, _ in Response(status: .ok) }
        table.add(.get, "/v1/sessions", guarded: true, ok)
        table.add(.delete, "/v1/sessions", guarded: true, ok)
        table.add(.delete, "/v1/sessions/{session_id}", guarded: true, ok)
        table.add(.post, "/v1/login", ok)
        for method in [HTTPRequest.Method.get, .head, .post] { table.add(method, "/v1/verify/**", guarded: true, ok) }
        return table
    }

    @Test func aGetRouteAlsoAnswersHeadAndEachMethodIsNamedOnce() {
        #expect(table().allowedMethods(for: "/v1/sessions") == ["GET", "HEAD", "DELETE"])
        #expect(table().allowedMethods(for: "/v1/verify/a/b") == ["GET", "HEAD", "POST"])
        #expect(table().allowedMethods(for: "/v1/login") == ["POST"])
    }

    @Test(arguments: [
        ("/v1/sessions/abc", true), ("/v1/sessions/", false), ("/v1/sessions/a/b", false), ("/v1/verify/x", true),
        ("/v1/verify/", false), ("/v1/verify", false), ("/v1/login/", false), ("/v1/logins", false), ("/", false),
    ])
    func patternsMatchSegmentBySegment(path: String, served: Bool) {
        #expect((table().allowedMethods(for: path) != nil) == served)
    }

    @Test func patterns() {
        #expect(RouteTable.matches("/v1/admin/users/{user_id}/sessions/{session_id}", "/v1/admin/users/u/sessions/s"))
        #expect(!RouteTable.matches("/v1/admin/users/{user_id}/sessions/{session_id}", "/v1/admin/users//sessions/s"))
        #expect(RouteTable.matches("/**", "/anything/at/all"))
        #expect(!RouteTable.matches("/v1/users", "/v1/users/x"))
    }
}
