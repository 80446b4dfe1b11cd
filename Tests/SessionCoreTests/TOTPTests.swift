import Foundation
import Testing

@testable import SessionCore

@Suite struct TOTPTests {
    /// RFC 6238 Appendix B's SHA-1 vectors (secret "12345678901234567890"), cut to six digits.
    @Test(arguments: [
        (Int64(59), "287082"), (1_111_111_109, "081804"), (1_111_111_111, "050471"), (1_234_567_890, "005924"), (2_000_000_000, "279037"),
        (20_000_000_000, "353130"),
    ])
    func rfc6238Vectors(time: Int64, code: String) {
        #expect(TOTP.code(secret: Array("12345678901234567890".utf8), step: TOTP.step(at: time)) == code)
    }

    @Test func oneStepOfSkewEitherSideAndNoMore() {
        let secret = TOTP.newSecret()
        #expect(secret.count == 20)
        let now = TOTP.step(at: 1_700_000_000)
        for offset in Int64(-1)...1 {
            #expect(TOTP.matchingStep(secret: secret, code: TOTP.code(secret: secret, step: now + offset), around: now) == now + offset)
        }
        for offset: Int64 in [-2, 2] {
            let code = TOTP.code(secret: secret, step: now + offset)
            // A code of a step two away can also be a code of a step within the window only by a 1-in-a-million chance.
            if (-1...1).allSatisfy({ TOTP.code(secret: secret, step: now + $0) != code }) {
                #expect(TOTP.matchingStep(secret: secret, code: code, around: now) == nil)
            }
        }
        for malformed in ["", "12345", "1234567", "12a456", " 123456", "１２３４５６"] {
            #expect(TOTP.matchingStep(secret: secret, code: malformed, around: now) == nil)
        }
    }

    @Test func base32RoundTripsAndReadsWhatAppsShow() {
        #expect(Base32.encode(Array("foobar".utf8)) == "MZXW6YTBOI")
        #expect(Base32.decode("MZXW6YTBOI") == Array("foobar".utf8))
        #expect(Base32.decode("mzxw 6ytb oi======") == Array("foobar".utf8))
        #expect(Base32.decode("MZXW1") == nil)
        let secret = TOTP.newSecret()
        #expect(Base32.encode(secret).count == 32)
        #expect(Base32.decode(Base32.encode(secret)) == secret)
    }

    @Test func theURIIsWhatAuthenticatorsRead() {
        let uri = TOTP.uri(secret: Array("12345678901234567890".utf8), issuer: "Acme Corp", account: "alice@example")
        #expect(
            uri
                == "otpauth://totp/Acme%20Corp:alice@example?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Acme%20Corp&algorithm=SHA1&digits=6&period=30"
        )
    }

    /// Sealed secrets open only with the key and only for the user they were sealed for.
    @Test func secretsAreSealedToTheirUser() throws {
        let key = (0..<32).map { UInt8($0) }
        let box = TOTPSecretBox(key: key)
        let alice = try #require(UserID("6b1f5a2e-3c4d-4e5f-8a9b-0c1d2e3f4a5b"))
        let bob = try #require(UserID("7c2f5a2e-3c4d-4e5f-8a9b-0c1d2e3f4a5b"))
        let secret = TOTP.newSecret()
        let sealed = box.seal(secret, for: alice)
        #expect(sealed.hasPrefix("c1:"))
        #expect(!sealed.contains(Data(secret).base64EncodedString()))
        #expect(box.open(sealed, for: alice) == secret)
        #expect(box.open(sealed, for: bob) == nil)
        #expect(TOTPSecretBox(key: nil).open(sealed, for: alice) == nil)
        #expect(TOTPSecretBox(key: (0..<32).map { UInt8(255 - $0) }).open(sealed, for: alice) == nil)
        let plain = TOTPSecretBox(key: nil).seal(secret, for: alice)
        #expect(plain.hasPrefix("p1:") && box.open(plain, for: alice) == secret)
    }

    @Test func recoveryCodesAreEightyBitsAndMatchHoweverTyped() {
        let code = AccountService.newRecoveryCode()
        #expect(code.count == 19 && code.split(separator: "-").count == 4)
        #expect(AccountService.recoveryHash(code) == AccountService.recoveryHash(code.uppercased().replacingOccurrences(of: "-", with: " ")))
        #expect(AccountService.recoveryHash(code) != AccountService.recoveryHash(AccountService.newRecoveryCode()))
    }
}
