import Foundation
import HTTPTestSupport
import HTTPTypes
import HummingbirdTesting
import NIOCore
import SessionCore
import TestSupport
import Testing

@testable import SessionHTTP

/// Small contract breaks found from outside, one test each.
@Suite struct SharpEdgesTests {
    @Test func withoutTheAccountPageItsPathsAreUnknown() async throws {
        try await Instances.with(1, try await Instances.configuration(environment: ["ACCOUNT_PAGE": "off"])) { clients in
            for path in ["/account", "/account/account.js"] {
                let response = try await clients[0].call(.get, path)
                #expect(response.status == .notFound && response.errorCode == "not_found", "\(path): \(response.status)")
            }
        }
        try await Instances.with(1, try await Instances.configuration()) { clients in
            let page = try await clients[0].call(.get, "/account")
            #expect(page.status == .ok && page.headers[.cacheControl] == "no-store")
        }
    }

    @Test func aBodyThatIsNotJSONIsRefusedOnEveryRouteThatTakesNone() async throws {
        try await Instances.with(1, try await Instances.configuration()) { clients in
            let token = try await clients[0].newSessionToken()
            let plain: HTTPFields = [.contentType: "text/plain", .authorization: "Bearer \(token)"]
            for (method, path) in [(HTTPRequest.Method.post, "/v1/logout"), (.delete, "/v1/sessions"), (.post, "/v1/browser/logout")] {
                let response = try await clients[0].executeRequest(uri: path, method: method, headers: plain, body: ByteBuffer(string: "x=1"))
                #expect(response.status == .unsupportedMediaType, "\(method) \(path): \(response.status)")
            }
            // Nothing was ended by the refused calls; without a body they work as before.
            #expect(try await clients[0].call(.get, "/v1/verify", token: token).status == .ok)
            #expect(try await clients[0].call(.post, "/v1/logout", token: token).status == .noContent)
        }
    }

    @Test(arguments: ["/v1/verify/..%2fsession", "/v1/verify/..%2Fsession", "/v1/verify/a%5csession", "/v1/verify/a%5C..", "/v1/verify/a\\b"])
    func encodedSeparatorsInASegmentAreNotCanonical(path: String) {
        #expect(!RequestRules.isCanonical(path))
    }

    @Test func plainPercentEncodingStaysCanonical() {
        for path in ["/v1/verify/a%20b", "/v1/verify/%2e%2e%2e", "/v1/sessions/abc", "/v1/verify/x%25"] {
            #expect(RequestRules.isCanonical(path), "\(path)")
        }
    }
}
