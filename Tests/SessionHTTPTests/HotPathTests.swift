import Foundation
import HTTPTypes
import NIOCore
import SessionCore
import Testing

@testable import SessionHTTP

/// What the profile-driven changes to the verification's hot path must keep: the same bytes, the same sampling
/// decisions the OpenTelemetry samplers make. No server needed.
@Suite struct HotPathTests {
    @Test func theVerifiedBodyIsWhatTheJSONWriterWrites() throws {
        let user = try #require(UserID("0b6f2a4e-1c3d-4e5f-8a7b-9c0d1e2f3a4b"))
        let session = Session(
            id: SessionID(bytes: Array(0..<16)), userID: user, createdAt: Date(), expiresAt: Date(), absoluteExpiresAt: Date(), lastSeenAt: Date()
        )
        var writer = JSONWriter()
        writer.object { object in
            object.field("user_id", user.text)
            object.field("session_id", session.id.hex)
        }
        let (headers, body) = Routes.verified(session)
        #expect(body == writer.buffer)
        #expect(String(buffer: body) == #"{"user_id":"0b6f2a4e-1c3d-4e5f-8a7b-9c0d1e2f3a4b","session_id":"000102030405060708090a0b0c0d0e0f"}"#)
        #expect(headers[.contentType] == JSONWriter.contentType)
        #expect(headers[HTTPField.Name("X-User-Id")!] == user.text)
        #expect(headers[HTTPField.Name("X-Session-Id")!] == "000102030405060708090a0b0c0d0e0f")
    }

    @Test func uuidTextRoundTripsThroughTheFastFormatter() {
        for _ in 0..<1000 {
            let id = UserID.random()
            #expect(UserID(id.text) == id)
            #expect(id.text.count == 36)
        }
    }

    @Test func samplersAreReadAsOpenTelemetryNamesThem() {
        #expect(TraceSampling(sampler: nil, argument: nil) == .parentBasedAlwaysOn)
        #expect(TraceSampling(sampler: "parentbased_traceidratio", argument: "0.01") == TraceSampling(ratio: 0.01, parentBased: true))
        #expect(TraceSampling(sampler: "traceidratio", argument: "0.5") == TraceSampling(ratio: 0.5, parentBased: false))
        #expect(TraceSampling(sampler: "traceidratio", argument: "7") == TraceSampling(ratio: 1, parentBased: false))
        #expect(TraceSampling(sampler: "always_off", argument: nil) == TraceSampling(ratio: 0, parentBased: false))
        #expect(TraceSampling(sampler: " ParentBased_Always_Off ", argument: nil) == TraceSampling(ratio: 0, parentBased: true))
        #expect(TraceSampling(sampler: "xray", argument: nil) == nil)
        #expect(TraceSampling(ratio: 0.01, parentBased: true).recorder == "parentbased_always_on")
        #expect(TraceSampling(ratio: 0.01, parentBased: false).recorder == "always_on")
    }

    @Test func theHeadFollowsAValidParentAndDrawsForTheRest() {
        let sampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        let parentBased = TraceSampling(ratio: 0.01, parentBased: true)
        #expect(parentBased.admits(traceparent: sampled) { UInt64.max })
        #expect(!parentBased.admits(traceparent: unsampled) { 0 })
        // Invalid headers start a new trace: the ratio decides.
        for invalid in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", "\(sampled), \(sampled)",
        ] {
            #expect(TraceSampling.sampledFlag(invalid) == nil, "\(invalid)")
            #expect(parentBased.admits(traceparent: invalid) { 0 })
            #expect(!parentBased.admits(traceparent: invalid) { UInt64.max })
        }
        // A later version may append fields after a dash.
        #expect(TraceSampling.sampledFlag(sampled + "-extra") == true)
        // The plain ratio sampler ignores the parent.
        let plain = TraceSampling(ratio: 0.5, parentBased: false)
        #expect(!plain.admits(traceparent: sampled) { UInt64.max })
        #expect(plain.admits(traceparent: unsampled) { 0 })
        // About the ratio, drawn from 64 random bits.
        var generator = SystemRandomNumberGenerator()
        let admitted = (0..<100_000).filter { _ in parentBased.admits(traceparent: nil) { generator.next() } }.count
        #expect((700...1300).contains(admitted))
    }
}
