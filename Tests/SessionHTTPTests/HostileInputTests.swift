import Foundation
import HTTPTestSupport
import HTTPTypes
import HummingbirdTesting
import NIOCore
import SessionCore
import SessionHTTP
import TestSupport
import Testing

/// Every hostile request gets a 4xx JSON error — never a 5xx — and afterwards the service still answers and
/// nothing in Redis was lost or overwritten (a canary user still logs in; its session still works).
@Suite struct HostileInputTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let method: HTTPRequest.Method
        let path: String
        let headers: HTTPFields
        let body: [UInt8]?
        var testDescription: String { name }

        init(
            _ name: String, _ method: HTTPRequest.Method = .post, _ path: String = "/v1/login",
            headers: HTTPFields = [.contentType: "application/json"], body: [UInt8]?
        ) {
            self.name = name
            self.method = method
            self.path = path
            self.headers = headers
            self.body = body
        }

        init(_ name: String, _ method: HTTPRequest.Method = .post, _ path: String = "/v1/login", json: String) {
            self.init(name, method, path, body: Array(json.utf8))
        }

        init(_ name: String, authorization: [String]) {
            var headers = HTTPFields()
            for value in authorization { headers.append(HTTPField(name: .authorization, value: value)) }
            self.init(name, .get, "/v1/verify", headers: headers, body: nil)
        }
    }

    static let canary = "canary-user"
    static let token = "6fcc52a0-34f2-4734-950e-b757473493cb"

    static let cases: [Case] = {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        let resp = "*3\\r\\n$3\\r\\nSET\\r\\n$4\\r\\nss:x\\r\\n$1\\r\\n1\\r\\n"
        var cases: [Case] = []
        for path in ["/v1/login", "/v1/users"] {
            cases += [
                Case("\(path): malformed JSON", .post, path, json: "{\"username\": \"a"),
                Case("\(path): not an object", .post, path, json: "[1, 2, 3]"),
                Case("\(path): wrong types", .post, path, json: "{\"username\": 1, \"password\": true}"),
                Case("\(path): null fields", .post, path, json: "{\"username\": null, \"password\": null}"),
                Case("\(path): nested 10,000 deep", .post, path, json: "{\"username\": \(deep), \"password\": \"x\"}"),
                Case(
                    "\(path): invalid UTF-8", .post, path,
                    body: Array("{\"username\": \"".utf8) + [0xFF, 0xFE, 0xC3] + Array("\", \"password\": \"correct horse\"}".utf8)),
                Case("\(path): NUL in username", .post, path, json: "{\"username\": \"\(canary)\\u0000x\", \"password\": \"correct horse\"}"),
                Case("\(path): CR/LF and RESP in username", .post, path, json: "{\"username\": \"\(resp)\", \"password\": \"correct horse\"}"),
                Case(
                    "\(path): 60,000-character username (over the body limit)", .post, path,
                    json: "{\"username\": \"\(String(repeating: "u", count: 60_000))\", \"password\": \"x\"}"),
                Case("\(path): empty body", .post, path, body: []),
                Case("\(path): unsupported media type", .post, path, headers: [.contentType: "text/xml"], body: Array("<a/>".utf8)),
            ]
        }
        cases += [
            Case("/v1/users: NUL in password", .post, "/v1/users", json: "{\"username\": \"nul-pass\", \"password\": \"correct\\u0000horse\"}"),
            Case("/v1/users: RESP in password", .post, "/v1/users", json: "{\"username\": \"resp-pass\", \"password\": \"\(resp)\"}"),
            Case(
                "/v1/users: 10,000-character password", .post, "/v1/users",
                json: "{\"username\": \"long-pass\", \"password\": \"\(String(repeating: "p", count: 10_000))\"}"),
            Case(
                "/v1/users: canary again, other case", .post, "/v1/users",
                json: "{\"username\": \"CANARY-USER\", \"password\": \"hijacked password\"}"),
            Case(
                "/v1/users: body over the limit", .post, "/v1/users",
                body: Array("{\"username\": \"".utf8) + Array(repeating: UInt8(ascii: "a"), count: 70_000) + Array("\"}".utf8)),
            Case("/v1/login: RESP in password", .post, "/v1/login", json: "{\"username\": \"\(canary)\", \"password\": \"\(resp)\"}"),
            Case(
                "/v1/login: form with junk", .post, "/v1/login", headers: [.contentType: "application/x-www-form-urlencoded"],
                body: Array("username=%ZZ&&=&password".utf8)),
            Case("oversized Authorization", authorization: ["Bearer " + String(repeating: "a", count: 8_000)]),
            Case("repeated Authorization", authorization: ["Bearer \(token)", "Bearer \(token)"]),
            Case("Basic scheme", authorization: ["Basic Y2FuYXJ5OmNvcnJlY3QgaG9yc2U="]),
            Case("token in upper case", authorization: ["Bearer \(token.uppercased())"]),
            Case("token with trailing junk", authorization: ["Bearer \(token) extra"]),
            Case("token with a tab", authorization: ["Bearer\t\(token)"]),
            Case("token without scheme", authorization: [token]),
            Case("RESP in the token", authorization: ["Bearer *1\r\n$8\r\nFLUSHALL"].map { $0.replacingOccurrences(of: "\r\n", with: " ") }),
            Case("unknown session id", .delete, "/v1/sessions/\(String(repeating: "0", count: 32))", headers: [:], body: nil),
            Case("path traversal", .get, "/v1/../../etc/passwd", headers: [:], body: nil),
            Case("unknown method on a route", .patch, "/v1/session", headers: [:], body: nil),
        ]
        return cases
    }()

    @Test func everyHostileRequestGetsA4xxJSONErrorAndNothingIsLost() async throws {
        try await Instances.with(1, try await Instances.configuration()) { clients in
            let api = clients[0]
            let canaryID = try await api.register(Self.canary)
            let canaryToken = try await api.login(Self.canary)
            for hostile in Self.cases {
                let response = try await api.executeRequest(
                    uri: hostile.path, method: hostile.method, headers: hostile.headers, body: hostile.body.map { ByteBuffer(bytes: $0) }
                )
                #expect((400..<500).contains(response.status.code), "\(hostile.name): \(response.status)")
                #expect(response.headers[.contentType]?.hasPrefix("application/json") == true, "\(hostile.name): not JSON")
                #expect(response.errorCode != nil, "\(hostile.name): no error code in \(String(buffer: response.body))")
                #expect(try await api.call(.get, "/healthz").status == .ok, "\(hostile.name) broke the service")
            }
            // Nothing lost or overwritten: the canary still logs in with its own password, and its session still works.
            let verify = try await api.call(.get, "/v1/verify", token: canaryToken)
            #expect(verify.status == .ok)
            #expect(verify.headers[HTTPField.Name("X-User-Id")!] == canaryID)
            _ = try await api.login(Self.canary)
            let hijack = try await api.call(.post, "/v1/login", json: ["username": Self.canary, "password": "hijacked password"])
            #expect(hijack.status == .unauthorized)
        }
    }
}
