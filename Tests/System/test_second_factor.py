"""The TOTP second factor, re-authentication and step-up with real processes, on one node and on a Cluster: two
instances (one on the verification fast path, one through the router) behind nginx, codes from PyPI's pyotp, access
tokens read with PyJWT, the secret as Redis keeps it.
"""
import base64
import os
import re
import time
import urllib.parse
import uuid

import jwt
import pyotp
import pytest
from support.client import call

PASSWORD = "tr0ub4dor & three"


@pytest.mark.parametrize("kind", ["node", "cluster"])
def test_second_factor_reauthentication_and_step_up(kind, redis, shape, instances, nginx, checks):
    if kind == "node":
        server = redis()
        url, cli = server.url, server.cli
    else:
        cluster = shape("cluster")
        url, cli = cluster.service_url, None
    key = base64.b64encode(os.urandom(32)).decode() if kind == "node" else None
    client = f"gateway:gw-secret-{uuid.uuid4().hex[:12]}"
    jwt_secret = "step-up-shared-secret-" + uuid.uuid4().hex
    instances.secrets.update({client.split(":")[1], jwt_secret} | ({key} if key else set()))
    common = dict(REDIS_URL=url, ARGON2_MEMORY_KIB=1024, ARGON2_ITERATIONS=1, TRUSTED_PROXIES="127.0.0.1", INTROSPECTION_CLIENTS=client,
                  JWT_HS256_SECRET=jwt_secret, LOGIN_MAX_FAILURES=50, LOGIN_MAX_FAILURES_PER_USER=50, LOGIN_MAX_FAILURES_PER_ADDRESS=1000,
                  **({"TOTP_ENCRYPTION_KEY": key} if key else {}))
    a = instances.start(name="a", **common)
    b = instances.start(name="b", VERIFY_FAST_PATH="off", **common)
    gateway = nginx([a, b])
    username = f"mfa-{uuid.uuid4().hex[:8]}"

    def bearer(token):
        return {"Authorization": f"Bearer {token}"}

    def login(node=a, password=PASSWORD, name=username):
        return call("POST", f"{node.url}/v1/login", {"username": name, "password": password})

    call("POST", f"{a.url}/v1/users", {"username": username, "password": PASSWORD})
    first = login()[2]["token"]
    instances.secrets.update({PASSWORD, first})

    # Before any second factor: aal1 everywhere, and the step-up refusals of RFC 9470.
    for node in (a, b):
        status, headers, body = call("GET", f"{node.url}/v1/verify", headers=bearer(first))
        auth_time = int(headers.get("X-Auth-Time") or 0)
        checks(f"{node.name}: verify says X-Auth-Level aal1 and X-Auth-Time of the login",
               status == 200 and headers.get("X-Auth-Level") == "aal1" and abs(auth_time - time.time()) < 30, (status, auth_time))
        status, headers, body = call("GET", f"{node.url}/v1/verify?acr=aal2", headers=bearer(first))
        challenge = headers.get("WWW-Authenticate") or ""
        checks(f"{node.name}: ?acr=aal2 refuses a password-only session (401, RFC 9470 challenge)",
               status == 401 and body == {"error": "insufficient_user_authentication", "message": body.get("message")}
               and 'error="insufficient_user_authentication"' in challenge and 'acr_values="aal2"' in challenge
               and challenge.startswith('Bearer realm="session-service"'), (status, challenge))
    time.sleep(1.1)
    status, headers, _ = call("GET", f"{a.url}/v1/verify?max_age=0", headers=bearer(first))
    checks("?max_age=0 refuses a login a second old, with max_age=0 in the challenge",
           status == 401 and "max_age=0" in (headers.get("WWW-Authenticate") or ""), (status, headers.get("WWW-Authenticate")))
    checks.equal("?max_age=300 accepts it", 200, call("GET", f"{b.url}/v1/verify?max_age=300", headers=bearer(first))[0])
    checks.equal("?max_age=abc is a 400", 400, call("GET", f"{a.url}/v1/verify?max_age=abc", headers=bearer(first))[0])
    session = call("GET", f"{b.url}/v1/session", headers=bearer(first))[2]
    checks("GET /v1/session: amr [pwd], acr aal1, authenticated_at", session.get("amr") == ["pwd"] and session.get("acr") == "aal1"
           and session.get("authenticated_at"), session)

    # Enrolment: the secret and its URI; a wrong code; the right one, and ten recovery codes shown once.
    status, _, enrolment = call("POST", f"{a.url}/v1/totp", headers=bearer(first))
    secret = enrolment["secret"]
    instances.secrets.add(secret)
    totp = pyotp.TOTP(secret)
    uri = urllib.parse.urlparse(enrolment["otpauth_uri"])
    query = dict(urllib.parse.parse_qsl(uri.query))
    checks("POST /v1/totp: a 160-bit base32 secret and its otpauth:// URI",
           status == 200 and len(base64.b32decode(secret)) == 20 and uri.scheme == "otpauth" and uri.netloc == "totp"
           and urllib.parse.unquote(uri.path) == f"/session-service:{username}"
           and query == {"secret": secret, "issuer": "session-service", "algorithm": "SHA1", "digits": "6", "period": "30"},
           enrolment["otpauth_uri"].replace(secret, "<secret>"))
    wrong = f"{(int(totp.now()) + 500000) % 1000000:06d}"
    checks.equal("confirm with a wrong code", (400, "invalid_code"),
                 (lambda r: (r[0], r[2].get("error")))(call("POST", f"{a.url}/v1/totp/confirm", {"code": wrong}, headers=bearer(first))))
    status, _, confirmed = call("POST", f"{b.url}/v1/totp/confirm", {"code": totp.now()}, headers=bearer(first))
    recovery = confirmed.get("recovery_codes", [])
    instances.secrets.update(recovery)
    checks("confirm with the right code: 10 recovery codes", status == 200 and len(set(recovery)) == 10, status)
    if cli:
        stored = cli("--scan", "--pattern", "ss:*o:*")
        sealed = cli("HGET", stored, "secret")
        checks("with TOTP_ENCRYPTION_KEY the secret is sealed in Redis (c1:…), not readable",
               sealed.startswith("c1:") and secret not in sealed and base64.b32decode(secret).hex() not in sealed, sealed[:8])

    # Login with the factor on: the password step gives a challenge and no session; a wrong password answers as ever.
    status, _, step = login(b)
    checks("password right → 401 second_factor_required with a challenge, expires_in 300, no token",
           status == 401 and step.get("error") == "second_factor_required" and step.get("expires_in") == 300
           and "token" not in step and re.fullmatch(r"[0-9a-f-]{36}", step.get("challenge", "")), step)
    instances.secrets.add(step["challenge"])
    unknown = call("POST", f"{a.url}/v1/login", {"username": "nobody-" + uuid.uuid4().hex[:6], "password": PASSWORD})
    checks("a wrong password answers exactly as without a factor",
           (lambda r: (r[0], r[2]))(login(a, PASSWORD + "!")) == (unknown[0], unknown[2]) == (401, {
               "error": "invalid_credentials", "message": "unknown username or wrong password"}))
    checks.equal("a wrong code", (401, "invalid_code"), (lambda r: (r[0], r[2].get("error")))(
        call("POST", f"{a.url}/v1/login/totp", {"challenge": step["challenge"], "code": wrong})))
    # The confirmation used this step's code, and a code is good once: the next step's (one step of clock skew ahead).
    code = totp.at(time.time() + 30)
    status, _, done = call("POST", f"{a.url}/v1/login/totp", {"challenge": step["challenge"], "code": code})
    checks("the right code (the next step's: ±1 step of skew) → 200 with exactly a login's body", status == 200 and set(done) == {
        "token", "token_type", "expires_in", "user_id", "session_id"}, done.keys() if isinstance(done, dict) else done)
    strong = done["token"]
    instances.secrets.add(strong)
    replay = login(a)[2]["challenge"]
    checks.equal("the same code again, on a new challenge within its window", (401, "invalid_code"), (lambda r: (r[0], r[2].get("error")))(
        call("POST", f"{b.url}/v1/login/totp", {"challenge": replay, "code": code})))
    checks.equal("an older code (this step's, already passed by the last accepted one)", (401, "invalid_code"),
                 (lambda r: (r[0], r[2].get("error")))(call("POST", f"{b.url}/v1/login/totp", {"challenge": replay, "code": totp.now()})))
    checks.equal("a used challenge", (401, "invalid_challenge"), (lambda r: (r[0], r[2].get("error")))(
        call("POST", f"{b.url}/v1/login/totp", {"challenge": step["challenge"], "recovery_code": "x"})))

    for node in (a, b):
        status, headers, _ = call("GET", f"{node.url}/v1/verify?max_age=300&acr=aal2", headers=bearer(strong))
        checks(f"{node.name}: ?max_age=300&acr=aal2 accepts the second-factor session, X-Auth-Level aal2",
               status == 200 and headers.get("X-Auth-Level") == "aal2", status)
    session = call("GET", f"{a.url}/v1/session", headers=bearer(strong))[2]
    checks.equal("GET /v1/session after the code", (["pwd", "otp"], "aal2"), (session.get("amr"), session.get("acr")))
    listed = call("GET", f"{b.url}/v1/sessions", headers=bearer(strong))[2]["sessions"]
    checks("the sessions list says how each session was proved",
           sorted(tuple(s["amr"]) for s in listed) == [("pwd",), ("pwd", "otp")], [s["amr"] for s in listed])
    status, _, introspected = call("POST", f"{a.url}/v1/introspect", form={"token": strong},
                                   headers={"Authorization": "Basic " + base64.b64encode(client.encode()).decode()})
    checks("introspection: auth_time, amr, acr", status == 200 and introspected.get("amr") == ["pwd", "otp"]
           and introspected.get("acr") == "aal2" and isinstance(introspected.get("auth_time"), int), introspected)
    access = call("POST", f"{b.url}/v1/token", headers=bearer(strong))[2]["access_token"]
    claims = jwt.decode(access, jwt_secret, algorithms=["HS256"], audience="api")
    checks("the access token carries auth_time, amr and acr", claims.get("amr") == ["pwd", "otp"] and claims.get("acr") == "aal2"
           and claims.get("auth_time") == introspected.get("auth_time"), {k: claims.get(k) for k in ("auth_time", "amr", "acr")})

    # Through nginx: /sensitive/ demands max_age=300&acr=aal2 at the gateway.
    status, headers, _ = call("GET", f"{gateway.url}/sensitive/report", headers=bearer(first))
    checks("nginx /sensitive/ refuses the aal1 session with the step-up challenge",
           status == 401 and 'acr_values="aal2"' in (headers.get("WWW-Authenticate") or ""), (status, headers.get("WWW-Authenticate")))
    checks.equal("nginx /sensitive/ admits the session proved with the code", 200,
                 call("GET", f"{gateway.url}/sensitive/report", headers=bearer(strong))[0])
    checks.equal("nginx /protected/ admits both", (200, 200), (call("GET", f"{gateway.url}/protected/x", headers=bearer(first))[0],
                                                             call("GET", f"{gateway.url}/protected/x", headers=bearer(strong))[0]))

    # A recovery code logs in once.
    challenge = login(b)[2]["challenge"]
    checks.equal("a recovery code completes a login", 200,
                 call("POST", f"{a.url}/v1/login/totp", {"challenge": challenge, "recovery_code": recovery[0].upper()})[0])
    challenge = login(b)[2]["challenge"]
    checks.equal("the same recovery code again", (401, "invalid_code"), (lambda r: (r[0], r[2].get("error")))(
        call("POST", f"{a.url}/v1/login/totp", {"challenge": challenge, "recovery_code": recovery[0]})))

    # The fifth wrong code voids the challenge; codes count toward the user's throttle.
    challenge = login(a)[2]["challenge"]
    answers = [call("POST", f"{b.url}/v1/login/totp", {"challenge": challenge, "code": wrong})[2].get("error") for _ in range(5)]
    after = call("POST", f"{b.url}/v1/login/totp", {"challenge": challenge, "recovery_code": recovery[1]})
    checks("five wrong codes, then the challenge is void (even for a good recovery code)",
           answers == ["invalid_code"] * 5 and (after[0], after[2].get("error")) == (401, "invalid_challenge"), (answers, after[0]))

    # Re-authentication: a new token with authenticated_at now; the old one ends on every instance at once.
    status, _, body = call("POST", f"{a.url}/v1/session/reauthenticate", {"password": PASSWORD + "!", "recovery_code": recovery[2]},
                           headers=bearer(strong))
    checks.equal("re-authentication with a wrong password", (403, "invalid_credentials"), (status, body.get("error")))
    status, _, body = call("POST", f"{a.url}/v1/session/reauthenticate", {"password": PASSWORD}, headers=bearer(strong))
    checks.equal("re-authentication without the code while the factor is on", (403, "invalid_code"), (status, body.get("error")))
    status, _, body = call("POST", f"{b.url}/v1/session/reauthenticate", {"password": PASSWORD, "recovery_code": recovery[2]},
                           headers=bearer(strong))
    fresh = body.get("token", "")
    instances.secrets.add(fresh)
    checks("re-authentication → 200 with a login's body and a new token", status == 200 and fresh and fresh != strong, status)
    checks.equal("the old token is refused at once on both instances", (401, 401),
                 (call("GET", f"{a.url}/v1/verify", headers=bearer(strong))[0], call("GET", f"{b.url}/v1/verify", headers=bearer(strong))[0]))
    checks.equal("the new one is aal2", "aal2", call("GET", f"{a.url}/v1/verify", headers=bearer(fresh))[1].get("X-Auth-Level"))

    # Turning the factor off: a wrong code is a 400; a recovery code does it; then a password alone logs in.
    status, _, body = call("DELETE", f"{a.url}/v1/totp", {"code": wrong}, headers=bearer(fresh))
    checks.equal("DELETE /v1/totp with a wrong code", (400, "invalid_code"), (status, body.get("error")))
    checks.equal("DELETE /v1/totp with a recovery code", 204,
                 call("DELETE", f"{b.url}/v1/totp", {"recovery_code": recovery[3]}, headers=bearer(fresh))[0])
    status, _, body = login(a)
    checks("with the factor off the password alone logs in again", status == 200 and "token" in body, status)
    instances.secrets.add(body.get("token", ""))
    if cli:
        checks.equal("no factor key left", "", cli("--scan", "--pattern", "ss:*o:*"))

    # Freshness: sensitive operations need a login at most REAUTH_MAX_AGE old.
    stale = instances.start(name="stale", REAUTH_MAX_AGE=1, **common)
    token = login(stale)[2]["token"]
    instances.secrets.add(token)
    time.sleep(1.5)
    refused = [call(method, f"{stale.url}{path}", body, headers=bearer(token)) for method, path, body in (
        ("POST", "/v1/password", {"current_password": PASSWORD, "new_password": "another long passphrase"}),
        ("POST", "/v1/totp", None), ("DELETE", "/v1/totp", {"code": "123456"}))]
    checks.equal("a login older than REAUTH_MAX_AGE: password change, enrolment, removal → 403 reauthentication_required",
                 [(403, "reauthentication_required")] * 3, [(r[0], r[2].get("error")) for r in refused])
    status, _, body = call("POST", f"{stale.url}/v1/session/reauthenticate", {"password": PASSWORD}, headers=bearer(token))
    renewed = body.get("token", "")
    instances.secrets.add(renewed)
    checks.equal("after re-authentication the enrolment is allowed", (200, 200),
                 (status, call("POST", f"{stale.url}/v1/totp", headers=bearer(renewed))[0]))


def test_the_browser_login_asks_for_the_code(redis, instances, checks):
    service = instances.start(REDIS_URL=redis().url, ARGON2_MEMORY_KIB=1024, ARGON2_ITERATIONS=1, COOKIE_SECURE="off")
    origin = {"Origin": service.url}
    call("POST", f"{service.url}/v1/users", {"username": "browser-mfa", "password": PASSWORD})
    token = call("POST", f"{service.url}/v1/login", {"username": "browser-mfa", "password": PASSWORD})[2]["token"]
    secret = call("POST", f"{service.url}/v1/totp", headers={"Authorization": f"Bearer {token}"})[2]["secret"]
    call("POST", f"{service.url}/v1/totp/confirm", {"code": pyotp.TOTP(secret).now()}, headers={"Authorization": f"Bearer {token}"})
    instances.secrets.update({PASSWORD, token, secret})
    status, headers, body = call("POST", f"{service.url}/v1/browser/login", {"username": "browser-mfa", "password": PASSWORD}, headers=origin)
    checks("JSON: the same 401 second_factor_required, no cookie", status == 401 and body.get("error") == "second_factor_required"
           and not headers.get("Set-Cookie"), status)
    status, headers, _ = call("POST", f"{service.url}/v1/browser/login",
                              form={"username": "browser-mfa", "password": PASSWORD, "return_to": "/account"}, headers=origin)
    location = headers.get("Location") or ""
    checks("a form: 303 to the page with step=totp and the challenge",
           status == 303 and location.startswith("/account?step=totp&challenge=") and not headers.get("Set-Cookie"), location[:40])
    challenge = location.split("challenge=")[1]
    instances.secrets.add(challenge)
    status, headers, _ = call("POST", f"{service.url}/v1/browser/login/totp",
                              form={"challenge": challenge, "code": pyotp.TOTP(secret).at(time.time() + 30), "return_to": "/account"},
                              headers=origin)
    cookie = headers.get("Set-Cookie") or ""
    checks("the code: 303 back with the session cookie", status == 303 and cookie.startswith("session=") and "HttpOnly" in cookie,
           (status, cookie[:12]))
    session = call("GET", f"{service.url}/v1/session", headers={"Cookie": cookie.split(";")[0]})[2]
    checks.equal("the cookie's session is aal2", "aal2", session.get("acr"))
    checks.equal("from another site the code step is refused (CSRF)", 403, call(
        "POST", f"{service.url}/v1/browser/login/totp", {"challenge": challenge, "code": "123456"}, headers={"Origin": "https://evil.example"})[0])


def test_wrong_codes_count_toward_the_login_throttle(redis, instances, checks):
    service = instances.start(REDIS_URL=redis().url, ARGON2_MEMORY_KIB=1024, ARGON2_ITERATIONS=1, LOGIN_MAX_FAILURES=3)
    call("POST", f"{service.url}/v1/users", {"username": "throttled-mfa", "password": PASSWORD})
    token = call("POST", f"{service.url}/v1/login", {"username": "throttled-mfa", "password": PASSWORD})[2]["token"]
    secret = call("POST", f"{service.url}/v1/totp", headers={"Authorization": f"Bearer {token}"})[2]["secret"]
    call("POST", f"{service.url}/v1/totp/confirm", {"code": pyotp.TOTP(secret).now()}, headers={"Authorization": f"Bearer {token}"})
    instances.secrets.update({PASSWORD, token, secret})
    challenge = call("POST", f"{service.url}/v1/login", {"username": "throttled-mfa", "password": PASSWORD})[2]["challenge"]
    wrong = f"{(int(pyotp.TOTP(secret).now()) + 500000) % 1000000:06d}"
    answers = [call("POST", f"{service.url}/v1/login/totp", {"challenge": challenge, "code": wrong})[0] for _ in range(3)]
    status, headers, body = call("POST", f"{service.url}/v1/login/totp", {"challenge": challenge, "code": pyotp.TOTP(secret).now()})
    checks("three wrong codes reach LOGIN_MAX_FAILURES=3: the next attempt, even the right code, is 429 with Retry-After",
           answers == [401, 401, 401] and status == 429 and body.get("error") == "too_many_attempts" and headers.get("Retry-After"),
           (answers, status))
    status = call("POST", f"{service.url}/v1/login", {"username": "throttled-mfa", "password": PASSWORD})[0]
    checks.equal("and so is the password step", 429, status)
