import Foundation
import HTTPTestSupport
import HTTPTypes
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOHTTPTypes
import Redis
import SessionCore
import Testing

@testable import SessionHTTP

/// `EdgeHandler` and its state machine, byte for byte on an `EmbeddedChannel`: no server, no Redis. The store is
/// a stand-in that answers when the test says so; the real store is exercised by `VerifyFastPathTests`.
@Suite struct EdgeHandlerStateMachineTests {
    typealias Machine = EdgeHandler.StateMachine

    @Test func forwardedRequestPassesWholeAndReturnsToIdle() {
        var machine = Machine()
        #expect(machine.read(.head) == .forward)
        #expect(machine.state == .forwarding)
        #expect(machine.read(.body) == .forward)
        #expect(machine.read(.end) == .forward)
        #expect(machine.state == .idle)
        #expect(machine.answered() == .drop)
    }

    @Test func verificationSwallowsItsPartsAndAnswersOnce() {
        var machine = Machine()
        #expect(machine.read(.head, answersHere: true) == .answerHere)
        #expect(machine.read(.end) == .swallow)
        #expect(machine.state == .verifying(requestEnded: true, close: false))
        #expect(machine.answered() == .write(close: false))
        #expect(machine.state == .idle)
        #expect(machine.answered() == .drop)
    }

    @Test func answerBeforeTheEndDrainsTheRest() {
        var machine = Machine()
        #expect(machine.read(.head, answersHere: true) == .answerHere)
        #expect(machine.answered() == .write(close: false))
        #expect(machine.state == .draining)
        #expect(machine.read(.body) == .swallow)
        #expect(machine.read(.end) == .swallow)
        #expect(machine.read(.head) == .forward)
    }

    @Test func closeRequestEndsReading() {
        var machine = Machine()
        #expect(machine.read(.head, answersHere: true, close: true) == .answerHere)
        #expect(machine.read(.end) == .swallow)
        #expect(machine.answered() == .write(close: true))
        #expect(machine.read(.head) == .swallow)
    }

    @Test func answerAfterTheChannelClosedIsDropped() {
        var machine = Machine()
        #expect(machine.read(.head, answersHere: true) == .answerHere)
        machine.channelClosed()
        #expect(machine.answered() == .drop)
    }

    // MARK: The handler on an EmbeddedChannel

    @Test func verificationIsAnsweredInThePipelineAndNothingReachesTheRouter() throws {
        let store = StubStore()
        let channel = try Self.channel(store)
        let token = SessionToken.random()
        try channel.writeInbound(HTTPRequestPart.head(Self.verify(token: token.text)))
        try channel.writeInbound(HTTPRequestPart.end(nil))
        #expect(try channel.readInbound(as: HTTPRequestPart.self) == nil)
        #expect(try channel.readOutbound(as: HTTPResponsePart.self) == nil, "nothing before the store answers")
        store.answer(.success(Self.session()))
        let (head, body) = try Self.response(channel)
        #expect(head.status == .ok)
        #expect(head.headerFields[.xUserID] == Self.session().userID.text)
        #expect(head.headerFields[.contentLength] == String(body.readableBytes))
        #expect(head.headerFields[.date] != nil)
        #expect(head.headerFields[.connection] == nil)
        #expect(String(buffer: body).hasPrefix(#"{"user_id":"#))
        #expect(store.tokens == [token])
    }

    @Test func everyOtherRequestIsForwardedUntouched() throws {
        let channel = try Self.channel(StubStore())
        let requests: [HTTPRequest] = [
            HTTPRequest(method: .get, scheme: nil, authority: "t", path: "/v1/verify/app"),
            HTTPRequest(method: .get, scheme: nil, authority: "t", path: "/v1/verifyx"),
            HTTPRequest(method: .get, scheme: nil, authority: "t", path: "/v1/verify", headerFields: [.contentLength: "3"]),
            HTTPRequest(method: .post, scheme: nil, authority: "t", path: "/v1/verify"),
        ]
        for request in requests {
            try channel.writeInbound(HTTPRequestPart.head(request))
            try channel.writeInbound(HTTPRequestPart.end(nil))
            #expect(try channel.readInbound(as: HTTPRequestPart.self) == .head(request))
            #expect(try channel.readInbound(as: HTTPRequestPart.self) == .end(nil))
        }
        #expect(try channel.readOutbound(as: HTTPResponsePart.self) == nil)
    }

    @Test func headIsForwardedAsGetAndHeadVerifiesOnTheFastPath() throws {
        let store = StubStore()
        let channel = try Self.channel(store)
        try channel.writeInbound(HTTPRequestPart.head(HTTPRequest(method: .head, scheme: nil, authority: "t", path: "/healthz")))
        guard case .head(let forwarded) = try channel.readInbound(as: HTTPRequestPart.self) else {
            Issue.record("no head forwarded")
            return
        }
        #expect(forwarded.method == .get)
        try channel.writeInbound(HTTPRequestPart.end(nil))
        _ = try channel.readInbound(as: HTTPRequestPart.self)
        var verify = Self.verify(token: SessionToken.random().text)
        verify.method = .head
        try channel.writeInbound(HTTPRequestPart.head(verify))
        #expect(try channel.readInbound(as: HTTPRequestPart.self) == nil)
        #expect(store.tokens.count == 1)
    }

    @Test func refusalsAreAnsweredHereAndNeverReachTheRouter() throws {
        let channel = try Self.channel(nil)
        let refused: [(HTTPRequest, HTTPResponse.Status)] = [
            (HTTPRequest(method: .get, scheme: nil, authority: nil, path: "/healthz"), .badRequest),
            (HTTPRequest(method: .get, scheme: nil, authority: "t", path: "//healthz"), .notFound),
            (HTTPRequest(method: .delete, scheme: nil, authority: "t", path: "/v1/sessions/"), .notFound),
            (HTTPRequest(method: .get, scheme: nil, authority: "t", path: "/v1/verify/%2e%2E/admin"), .notFound),
            (HTTPRequest(method: .post, scheme: nil, authority: "t", path: "/v1/login", headerFields: [.contentLength: "70000"]), .contentTooLarge),
            (HTTPRequest(method: .post, scheme: nil, authority: "t", path: "/v1/login", headerFields: [.contentLength: "7000000"]), .contentTooLarge),
        ]
        for (request, status) in refused {
            try channel.writeInbound(HTTPRequestPart.head(request))
            try channel.writeInbound(HTTPRequestPart.end(nil))
            #expect(try channel.readInbound(as: HTTPRequestPart.self) == nil, "\(request)")
            let (head, body) = try Self.response(channel)
            #expect(head.status == status, "\(request)")
            #expect(head.headerFields[.contentLength] == String(body.readableBytes))
            #expect(String(buffer: body).hasPrefix(#"{"error":"#))
            if request.headerFields[.contentLength] == "7000000" { #expect(head.headerFields[.connection] == "close") }
        }
    }

    @Test func connectionCloseOfAnyCaseIsSpelledForTheRouter() throws {
        let channel = try Self.channel(nil)
        let request = HTTPRequest(method: .get, scheme: nil, authority: "t", path: "/healthz", headerFields: [.connection: "keep-alive, Close"])
        try channel.writeInbound(HTTPRequestPart.head(request))
        guard case .head(let forwarded) = try channel.readInbound(as: HTTPRequestPart.self) else {
            Issue.record("no head forwarded")
            return
        }
        #expect(forwarded.headerFields[.connection] == "close")
    }

    @Test func fastPathOffForwardsVerifications() throws {
        let channel = try Self.channel(nil)
        let request = Self.verify(token: SessionToken.random().text)
        try channel.writeInbound(HTTPRequestPart.head(request))
        #expect(try channel.readInbound(as: HTTPRequestPart.self) == .head(request))
    }

    @Test func malformedTokenIsAnsweredWithoutTheStore() throws {
        let store = StubStore()
        let channel = try Self.channel(store)
        try channel.writeInbound(HTTPRequestPart.head(Self.verify(token: "not-a-token")))
        try channel.writeInbound(HTTPRequestPart.end(nil))
        let (head, body) = try Self.response(channel)
        #expect(head.status == .unauthorized)
        #expect(String(buffer: body).contains("invalid_token"))
        #expect(store.tokens.isEmpty)
    }

    @Test func closeRequestIsAnsweredWithCloseAndTheOutputClosed() throws {
        let store = StubStore()
        let channel = try Self.channel(store)
        var request = Self.verify(token: SessionToken.random().text)
        request.headerFields[.connection] = "Close"
        try channel.writeInbound(HTTPRequestPart.head(request))
        try channel.writeInbound(HTTPRequestPart.end(nil))
        store.answer(.success(nil))
        let (head, _) = try Self.response(channel)
        #expect(head.status == .unauthorized)
        #expect(head.headerFields[.connection] == "close")
        // What follows a close request is not read: it never reaches the router.
        try channel.writeInbound(HTTPRequestPart.head(HTTPRequest(method: .get, scheme: nil, authority: "t", path: "/healthz")))
        #expect(try channel.readInbound(as: HTTPRequestPart.self) == nil)
    }

    @Test func storeFailureIs503() throws {
        let store = StubStore()
        let channel = try Self.channel(store)
        try channel.writeInbound(HTTPRequestPart.head(Self.verify(token: SessionToken.random().text)))
        try channel.writeInbound(HTTPRequestPart.end(nil))
        store.answer(.failure(.storeUnavailable(nil)))
        let (head, body) = try Self.response(channel)
        #expect(head.status == .serviceUnavailable)
        #expect(String(buffer: body).contains("store_unavailable"))
    }

    @Test func answerAfterTheConnectionClosedWritesNothing() throws {
        let store = StubStore()
        let channel = try Self.channel(store)
        try channel.writeInbound(HTTPRequestPart.head(Self.verify(token: SessionToken.random().text)))
        _ = try channel.finish(acceptAlreadyClosed: true)
        store.answer(.success(Self.session()))
        #expect(try channel.readOutbound(as: HTTPResponsePart.self) == nil)
    }

    // MARK: Helpers

    static func channel(_ store: StubStore?) throws -> EmbeddedChannel {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let shared = store.map { EdgeHandler.Shared(store: $0, logger: logger) }
        return EmbeddedChannel(handler: EdgeHandler(shared: shared, maxBodySize: 65536))
    }

    static func verify(token: String) -> HTTPRequest {
        HTTPRequest(method: .get, scheme: nil, authority: "t", path: "/v1/verify", headerFields: [.authorization: "Bearer \(token)"])
    }

    static let userID = UserID.random()

    static func session() -> Session {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        return Session(
            id: SessionID(bytes: Array(repeating: 7, count: 16)), userID: Self.userID, createdAt: now,
            expiresAt: now, absoluteExpiresAt: now, lastSeenAt: now
        )
    }

    static func response(_ channel: EmbeddedChannel) throws -> (HTTPResponse, ByteBuffer) {
        guard case .head(let head) = try channel.readOutbound(as: HTTPResponsePart.self),
            case .body(let body) = try channel.readOutbound(as: HTTPResponsePart.self),
            case .end = try channel.readOutbound(as: HTTPResponsePart.self)
        else { throw ResponseShapeError() }
        return (head, body)
    }

    struct ResponseShapeError: Error {}
}

/// A store that records the tokens it is asked about and answers when the test calls `answer`.
final class StubStore: EventLoopSessionAuthenticating {
    private let state = NIOLockedValueBox<(tokens: [SessionToken], pending: [@Sendable (Result<Session?, SessionError>) -> Void])>(([], []))

    var tokens: [SessionToken] { state.withLockedValue { $0.tokens } }

    func answer(_ result: Result<Session?, SessionError>) {
        let pending = state.withLockedValue { state in
            defer { state.pending = [] }
            return state.pending
        }
        for completion in pending { completion(result) }
    }

    func authenticate(_ token: SessionToken, on eventLoop: any EventLoop, completion: @escaping @Sendable (Result<Session?, SessionError>) -> Void) {
        state.withLockedValue { state in
            state.tokens.append(token)
            state.pending.append(completion)
        }
    }

    func create(for user: UserID) async throws(SessionError) -> (token: SessionToken, session: Session) { throw .storeUnavailable(nil) }
    func create(for user: UserID, expecting stamp: AccountStamp?, metadata: SessionMetadata?, level: AuthenticationLevel) async throws(SessionError)
        -> (
            token: SessionToken, session: Session
        )
    {
        throw .storeUnavailable(nil)
    }
    func accountStamp(of user: UserID) async throws(SessionError) -> AccountStamp { AccountStamp(text: "0") }
    func changeAccount(of user: UserID, _ change: AccountChange, keeping: SessionID?, origin: EventOrigin) async throws(SessionError) -> [SessionID] {
        []
    }
    func liveSessionCount(for user: UserID) async throws(SessionError) -> Int { 0 }
    func authenticate(_ token: SessionToken) async throws(SessionError) -> Session? { nil }
    func peek(_ token: SessionToken) async throws(SessionError) -> Session? { nil }
    func session(_ id: SessionID, of user: UserID) async throws(SessionError) -> Session? { nil }
    func isLive(_ id: SessionID, of user: UserID) async throws(SessionError) -> Bool { false }
    func revoke(_ session: SessionID, of user: UserID, ending: SessionEnd) async throws(SessionError) -> Bool { false }
    func revokeAll(for user: UserID, ending: SessionEnd) async throws(SessionError) {}
    /// Off, over a client that is never started: the stub records nothing.
    let events = LifecycleEvents(
        redis: RedisClient(configuration: try! RedisConfiguration(url: "redis://127.0.0.1:1")), keyPrefix: "stub:", maxStreamLength: 1000,
        enabled: false)
    func sessions(for user: UserID, after cursor: SessionCursor?, limit: Int) async throws(SessionError) -> SessionPage {
        SessionPage(sessions: [], next: nil)
    }
}
