import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

// The request bodies the routes read — credentials as JSON or a form, bodies a route must refuse, and the top-level
// key scan that refuses a field given twice — apart from the routes themselves.

/// `{"username", "password"}` as JSON, or as `application/x-www-form-urlencoded`.
struct CredentialsBody: Decodable {
    let username: String
    let password: String
    /// Where a browser form login goes next (`/v1/browser/login` only).
    let returnTo: String?

    enum CodingKeys: String, CodingKey {
        case username, password
        case returnTo = "return_to"
    }

    /// Whether the body is a form (`application/x-www-form-urlencoded`), which browsers answer with redirects.
    static func isForm(_ request: Request) -> Bool {
        mediaType(request) == "application/x-www-form-urlencoded"
    }

    static func mediaType(_ request: Request) -> String {
        request.headers[.contentType].map { $0.split(separator: ";", maxSplits: 1)[0].trimmingSpaces.lowercased() } ?? ""
    }

    /// For routes that take no body: a request that carries one must still say it is JSON (or, where `forms`, a form),
    /// as the README promises — 415 otherwise. No body at all is fine.
    static func refuseForeignBody(_ request: Request, limit: Int, forms: Bool = false) async throws {
        let mediaType = Self.mediaType(request)
        if mediaType == "application/json" || (mediaType.hasPrefix("application/") && mediaType.hasSuffix("+json")) { return }
        if forms, mediaType == "application/x-www-form-urlencoded" { return }
        // Read (at most `limit`) to know whether there is a body at all: a client may announce none in several ways.
        guard try await FormBody.collect(request, limit: limit).readableBytes > 0 else { return }
        throw APIError(
            .unsupportedMediaType, code: "unsupported_media_type", message: forms ? "send application/json or a form" : "send application/json")
    }

    static func decode(_ request: Request, limit: Int) async throws -> CredentialsBody {
        // Read first, whatever the media type: a response sent while a malformed body is still arriving must not race it.
        let buffer = try await FormBody.collect(request, limit: limit)
        // The media type alone decides how the body is read: JSON, or a form. Anything else (none included) is 415.
        let mediaType = Self.mediaType(request)
        if mediaType == "application/x-www-form-urlencoded" {
            let text = try FormBody.text(buffer)
            do {
                return try URLEncodedFormDecoder().decode(CredentialsBody.self, from: text)
            } catch {
                throw APIError.invalidRequest("the form needs username and password fields")
            }
        }
        return try JSONBody.decode(CredentialsBody.self, buffer, mediaType: mediaType, fields: "username and password")
    }
}

/// A JSON request body read whole: the media type checked (415 otherwise, naming the form too), a field given twice
/// refused, decoding errors as 400 `invalid_request` with the decoder's reason.
enum JSONBody {
    static func decode<T: Decodable>(_ type: T.Type, _ buffer: ByteBuffer, mediaType: String, fields: String) throws -> T {
        guard mediaType == "application/json" || (mediaType.hasPrefix("application/") && mediaType.hasSuffix("+json")) else {
            throw APIError(
                .unsupportedMediaType, code: "unsupported_media_type", message: "send application/json or application/x-www-form-urlencoded")
        }
        if let keys = JSONKeys.topLevel(Array(buffer.readableBytesView)), Set(keys).count != keys.count {
            throw APIError.invalidRequest("a field appears twice in the JSON object")
        }
        guard buffer.readableBytes > 0 else { throw APIError.invalidRequest("the body must be a JSON object with \(fields)") }
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer.readableBytesView))
        } catch let error as DecodingError {
            throw APIError.invalidRequest(APIMiddleware<SessionRequestContext>.describe(error))
        } catch {
            throw APIError.invalidRequest("the body is not valid JSON")
        }
    }
}

/// A request body read whole, for the JSON and form decoders.
enum FormBody {
    /// The body, up to `limit` bytes (beyond it: 413).
    static func collect(_ request: Request, limit: Int) async throws -> ByteBuffer {
        do {
            return try await request.body.collect(upTo: limit)
        } catch let error as NIOTooManyBytesError {
            throw error  // 413
        } catch {
            // A malformed body on the wire (bad chunked encoding, a truncated stream): the client's fault, never a 500.
            throw APIError.invalidRequest("the request body could not be read")
        }
    }

    /// A form's fields, decoded (`+` is a space, percent escapes); of a name given twice, the last.
    static func fields(_ text: String) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let decode = { (part: Substring) in String(part).replacingOccurrences(of: "+", with: " ").removingPercentEncoding }
            guard let name = decode(parts[0]), let value = parts.count == 2 ? decode(parts[1]) : "" else { continue }
            fields[name] = value
        }
        return fields
    }

    /// A form body as text; 400 unless it is valid UTF-8.
    static func text(_ buffer: ByteBuffer) throws -> String {
        guard let text = buffer.getString(at: buffer.readerIndex, length: buffer.readableBytes), text.utf8.count == buffer.readableBytes,
            String(validating: buffer.readableBytesView, as: UTF8.self) != nil
        else { throw APIError.invalidRequest("the form body is not valid UTF-8") }
        return text
    }
}

/// The keys of a JSON object's top level, decoded (so `"user\u006eame"` is `username`), in order; nil when the text is
/// not an object. JSONDecoder keeps the last of two equal keys silently; the API refuses them instead, since two
/// parsers (a proxy's and ours) could each read a different one.
enum JSONKeys {
    static func topLevel(_ bytes: [UInt8]) -> [String]? {
        var keys: [String] = []
        var depth = 0
        var expectingKey = false
        var index = 0
        guard let first = bytes.firstIndex(where: { !JSONKeys.isSpace($0) }), bytes[first] == UInt8(ascii: "{") else { return nil }
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                let start = index
                index += 1
                while index < bytes.count, bytes[index] != UInt8(ascii: "\"") {
                    if bytes[index] == UInt8(ascii: "\\") { index += 1 }
                    index += 1
                }
                if depth == 1, expectingKey, index < bytes.count {
                    let raw = Data(bytes[start...index])
                    guard let key = try? JSONDecoder().decode(String.self, from: raw) else { return nil }
                    keys.append(key)
                    expectingKey = false
                }
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
                if depth == 1 { expectingKey = true }
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                depth -= 1
            case UInt8(ascii: ","):
                if depth == 1 { expectingKey = true }
            default:
                break
            }
            index += 1
        }
        return keys
    }

    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") || byte == UInt8(ascii: "\t")
    }
}
