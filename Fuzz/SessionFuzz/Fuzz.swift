import NIOCore
import SessionCore
import SessionHTTP

@testable import Redis

/// libFuzzer entry point over the code that parses untrusted bytes. The first byte picks the parser:
/// even → the RESP reply decoder (hiredis' reader and our conversion), odd → Authorization header, token,
/// session id, X-Forwarded-For and Redis URL parsing. Crashes, hangs and sanitizer reports are findings.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: start, count: count)
    guard let selector = bytes.first else { return 0 }
    let input = Array(bytes.dropFirst())
    if selector % 2 == 0 {
        let decoder = RESPDecoder()
        do {
            // Feed in two pieces to exercise partial replies.
            let split = input.count / 2
            try decoder.feed(ByteBuffer(bytes: input[..<split]))
            while try decoder.next() != nil {}
            try decoder.feed(ByteBuffer(bytes: input[split...]))
            while try decoder.next() != nil {}
        } catch {}
    } else {
        let text = String(decoding: input, as: UTF8.self)
        _ = BearerToken.parse([text])
        _ = BearerToken.parse(text.split(separator: "\n").map(String.init))
        _ = SessionToken(text)
        _ = SessionID(hex: text)
        _ = try? RedisConfiguration(url: text)
        if let proxies = try? TrustedProxies(parsing: "127.0.0.1, 10.0.0.0/8, ::1") {
            _ = proxies.clientAddress(peer: try? SocketAddress(ipAddress: "127.0.0.1", port: 1), forwardedFor: [text])
        }
        _ = try? TrustedProxies(parsing: text)
    }
    return 0
}

// SwiftPM links an executable's entry point as `<Target>_main`; hand control to libFuzzer's driver from there.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

@_cdecl("SessionFuzz_main")
public func sessionFuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzz(data, size) }
}
