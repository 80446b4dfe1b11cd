import HTTPTypes
import Hummingbird
import NIOCore

/// `GET /account`: a small page where a person signs in with the session cookie and sees where they are signed in
/// (their sessions, this device marked, sign out one, sign out everywhere, sign out). Plain HTML, CSS and JavaScript
/// embedded in the binary (`AccountPage/`); the page talks only to the API. `ACCOUNT_PAGE=off` removes it.
///
/// Served with a strict Content-Security-Policy — scripts, styles and requests from this origin only, no inline
/// script, no framing — so an injected string can never run as script.
enum AccountPage {
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; "
        + "frame-ancestors 'none'; base-uri 'none'"

    static func add(to table: inout RouteTable) {
        table.add(.get, "/account") { _, _ in response(PackageResources.account_html, type: "text/html; charset=utf-8") }
        table.add(.get, "/account/account.css") { _, _ in response(PackageResources.account_css, type: "text/css; charset=utf-8") }
        table.add(.get, "/account/account.js") { _, _ in response(PackageResources.account_js, type: "text/javascript; charset=utf-8") }
    }

    private static func response(_ bytes: [UInt8], type: String) -> Response {
        Response(
            status: .ok,
            headers: [
                .contentType: type, .contentSecurityPolicy: contentSecurityPolicy, .cacheControl: "no-store",
                HTTPField.Name("Referrer-Policy")!: "same-origin", HTTPField.Name("X-Frame-Options")!: "DENY",
            ],
            body: .init(byteBuffer: ByteBuffer(bytes: bytes))
        )
    }
}
