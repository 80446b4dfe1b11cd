import NIOCore
import TestSupport
import Testing

@testable import Redis

@Suite struct RESPCodecTests {
    @Test func commandIsEncodedAsBinarySafeRESPArray() {
        var command = RedisCommand("SET")
        command.append(bytes: [0x00, 0x0D, 0x0A, 0x24])
        command.append("")
        var buffer = ByteBuffer()
        command.encode(into: &buffer)
        #expect(Array(buffer.readableBytesView) == Array("*3\r\n$3\r\nSET\r\n$4\r\n".utf8) + [0x00, 0x0D, 0x0A, 0x24] + Array("\r\n$0\r\n\r\n".utf8))
    }

    @Test func repliesSplitAtEveryByteDecodeTheSame() throws {
        let wire = Array("+OK\r\n-ERR bad\r\n:42\r\n$-1\r\n$5\r\nhel\r\n\r\n*2\r\n*1\r\n:1\r\n$0\r\n\r\n*0\r\n".utf8)
        let expected: [RESPValue] = [
            .simpleString("OK"), .error("ERR bad"), .integer(42), .bulkString(nil),
            .bulkString(ByteBuffer(string: "hel\r\n")),
            .array([.array([.integer(1)]), .bulkString(ByteBuffer())]), .array([]),
        ]
        let decoder = RESPDecoder()
        var decoded: [RESPValue] = []
        for byte in wire {
            try decoder.feed(ByteBuffer(bytes: [byte]))
            while let value = try decoder.next() { decoded.append(value) }
        }
        #expect(decoded == expected)
    }

    @Test func garbageIsAProtocolError() throws {
        let decoder = RESPDecoder()
        try decoder.feed(ByteBuffer(string: "?what\r\n"))
        #expect(redisErrorCode { try decoder.next() } == .protocolError)
    }

    @Test func largeNegativeAndBoundaryIntegersDecode() throws {
        let decoder = RESPDecoder()
        try decoder.feed(ByteBuffer(string: ":-9223372036854775808\r\n:9223372036854775807\r\n"))
        #expect(try decoder.next() == .integer(.min))
        #expect(try decoder.next() == .integer(.max))
        #expect(try decoder.next() == nil)
    }

    @Test func scriptSHA1MatchesRedis() {
        // redis-cli SCRIPT LOAD "return 1" → e0e1f9fabfc9d4800c877a703b823ac0578ff8db
        #expect(RedisScript("return 1").sha1 == "e0e1f9fabfc9d4800c877a703b823ac0578ff8db")
    }
}

@Suite struct RedisURLTests {
    @Test func fullURLIsParsed() throws {
        let configuration = try RedisConfiguration(url: "redis://alice:p%40ss@redis.local:6380/3")
        #expect(configuration.endpoint == .tcp(host: "redis.local", port: 6380))
        #expect(configuration.username == "alice")
        #expect(configuration.password == "p@ss")
        #expect(configuration.database == 3)
    }

    @Test func passwordOnlyAndDefaultsAreParsed() throws {
        let configuration = try RedisConfiguration(url: "redis://:secret@127.0.0.1")
        #expect(configuration.endpoint == .tcp(host: "127.0.0.1", port: 6379))
        #expect(configuration.username == nil)
        #expect(configuration.password == "secret")
        #expect(configuration.database == 0)
    }

    @Test func ipv6AndUnixSocketURLsAreParsed() throws {
        #expect(try RedisConfiguration(url: "redis://[::1]:7000/1").endpoint == .tcp(host: "::1", port: 7000))
        let unix = try RedisConfiguration(url: "unix:///run/redis/redis.sock?db=2")
        #expect(unix.endpoint == .unixSocket(path: "/run/redis/redis.sock"))
        #expect(unix.database == 2)
    }

    @Test(arguments: [
        "http://localhost", "redis://", "redis://host:0", "redis://host:70000", "redis://host:port",
        "redis://host/x", "redis://host/-1", "unix://relative.sock", "unix:///s.sock?db=x", "unix:///s.sock?foo=1",
        "redis://[::1", "redis://a:%zz@host",
    ])
    func badURLsAreRejectedWithAClearMessage(url: String) {
        #expect(redisErrorCode { try RedisConfiguration(url: url) } == .configuration)
    }

    @Test func descriptionNeverShowsThePassword() throws {
        let configuration = try RedisConfiguration(url: "redis://bob:hunter2@localhost:6379/0")
        #expect(!configuration.description.contains("hunter2"))
        #expect(redisErrorCode { try RedisConfiguration(url: "redis://bob:hunter2@localhost:99999") } == .configuration)
        do {
            _ = try RedisConfiguration(url: "redis://bob:hunter2@localhost:99999")
        } catch let error as RedisError {
            #expect(!error.message.contains("hunter2"))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}
