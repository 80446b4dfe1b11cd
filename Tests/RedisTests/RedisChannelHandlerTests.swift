import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing

@testable import Redis

/// `RedisChannelHandler` byte for byte on an `EmbeddedChannel`: what it writes, how replies meet their commands,
/// and what a closed connection or a stray reply does to the commands in flight. No server.
@Suite struct RedisChannelHandlerTests {
    /// The results the handler delivered, in the order it delivered them, and the slots it released.
    final class Recorder: Sendable {
        private let state = NIOLockedValueBox<(results: [Result<RESPValue, RedisError>], released: Int)>(([], 0))
        var results: [Result<RESPValue, RedisError>] { state.withLockedValue { $0.results } }
        var released: Int { state.withLockedValue { $0.released } }
        var reply: ReplyHandler { .callback { result in self.state.withLockedValue { $0.results.append(result) } } }
        func release(_ count: Int) { state.withLockedValue { $0.released += count } }
    }

    static func channel(_ recorder: Recorder) throws -> EmbeddedChannel {
        let handler = RedisChannelHandler(commandTimeout: .seconds(60), stallTimeout: .seconds(240)) { recorder.release($0) }
        let channel = EmbeddedChannel(handler: handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 6379)).wait()
        return channel
    }

    static func enqueue(_ channel: EmbeddedChannel, _ commands: [RedisCommand], _ reply: ReplyHandler) throws {
        var bytes = ByteBuffer()
        for command in commands { command.encode(into: &bytes) }
        try channel.pipeline.syncOperations.handler(type: RedisChannelHandler.self).enqueue(bytes, replyCount: commands.count, reply: reply)
    }

    static func written(_ channel: EmbeddedChannel) throws -> String {
        channel.embeddedEventLoop.run()  // the coalesced flush
        var text = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { text += String(buffer: buffer) }
        return text
    }

    @Test func commandsLeaveInOneFlushAndRepliesMeetThemInOrder() throws {
        let recorder = Recorder()
        let channel = try Self.channel(recorder)
        try Self.enqueue(channel, [RedisCommand("GET", ["a"])], recorder.reply)
        try Self.enqueue(channel, [RedisCommand("GET", ["b"])], recorder.reply)
        #expect(try Self.written(channel) == "*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n")
        // Replies split across reads still complete each command once, in order.
        try channel.writeInbound(ByteBuffer(string: "$1\r\nA\r\n$1"))
        #expect(recorder.results.count == 1)
        try channel.writeInbound(ByteBuffer(string: "\r\nB\r\n"))
        #expect(recorder.results.map { try? $0.get() } == [.bulkString(ByteBuffer(string: "A")), .bulkString(ByteBuffer(string: "B"))])
        #expect(recorder.released == 2)
    }

    @Test func aPipelineGetsItsRepliesAsOneArrayWithErrorsInPlace() throws {
        let recorder = Recorder()
        let channel = try Self.channel(recorder)
        try Self.enqueue(channel, [RedisCommand("MULTI"), RedisCommand("INCR", ["k"]), RedisCommand("EXEC")], recorder.reply)
        _ = try Self.written(channel)
        try channel.writeInbound(ByteBuffer(string: "+OK\r\n-ERR no\r\n"))
        #expect(recorder.results.isEmpty, "a pipeline completes with its last reply")
        try channel.writeInbound(ByteBuffer(string: "*0\r\n"))
        #expect(recorder.results.map { try? $0.get() } == [.array([.simpleString("OK"), .error("ERR no"), .array([])])])
        #expect(recorder.released == 3)
    }

    @Test func closingFailsEveryCommandInFlightAndRefusesNewOnes() throws {
        let recorder = Recorder()
        let channel = try Self.channel(recorder)
        try Self.enqueue(channel, [RedisCommand("PING")], recorder.reply)
        try Self.enqueue(channel, [RedisCommand("PING")], recorder.reply)
        channel.pipeline.fireChannelInactive()
        #expect(recorder.results.map { (try? $0.get()) == nil } == [true, true])
        let codes: [RedisError.Code?] = recorder.results.map { result in
            guard case .failure(let error) = result else { return nil }
            return error.code
        }
        #expect(codes == [.connectionClosed, .connectionClosed])
        try Self.enqueue(channel, [RedisCommand("PING")], recorder.reply)
        if case .failure(let error) = recorder.results.last { #expect(error.code == .connectionClosed) } else { Issue.record("accepted after close") }
        #expect(recorder.released == 3)
    }

    @Test func aReplyWithNoCommandWaitingIsAProtocolErrorAndCloses() throws {
        let recorder = Recorder()
        let channel = try Self.channel(recorder)
        try channel.writeInbound(ByteBuffer(string: "+OK\r\n"))
        #expect(!channel.isActive)
    }

    @Test func garbageFailsTheCommandsInFlightWithAProtocolError() throws {
        let recorder = Recorder()
        let channel = try Self.channel(recorder)
        try Self.enqueue(channel, [RedisCommand("PING")], recorder.reply)
        try channel.writeInbound(ByteBuffer(string: "?what\r\n"))
        guard case .failure(let error) = recorder.results.first else {
            Issue.record("no failure")
            return
        }
        #expect(error.code == .protocolError)
        #expect(!channel.isActive)
    }
}
