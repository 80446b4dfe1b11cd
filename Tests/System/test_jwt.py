"""Signed access tokens with real processes: redis-server, three session-service instances (two sharing an Ed25519 key
file, one with an HS256 secret) and the orders example in its four modes; PyJWT verifies our tokens and makes tokens
our middleware must accept or refuse; revocation across instances; a key rotation by rolling restart (instances read
JWT_KEYS_FILE at start: publish the new key second, restart; make it first, restart; drop the old one, restart).
"""
import base64
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from support.processes import service_acl


def test_access_tokens_interoperate_and_rotate(redis, instances, binaries, tmp_path, checks):
    # The downstream's revocation check gets its own read-only user: EXISTS on session keys and nothing else.
    server = redis(*service_acl(), "--user", "orders-api", "on", ">orders-pass", "~ss:*", "resetchannels", "-@all",
                   "+exists", "+ping")
    redis_url = f"redis://session-service:svc-pass@127.0.0.1:{server.port}/0"
    verifier_url = f"redis://orders-api:orders-pass@127.0.0.1:{server.port}/0"
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    key_path = keys / "jwt-keys.json"

    def private(path, text):
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            out.write(text)

    def keygen(*arguments):
        return subprocess.run([str(binaries["session-service"]), "jwt-keygen", *arguments], capture_output=True, text=True,
                              check=True).stdout

    def write_keys(*names):
        """The key file with the named keys (old, new) in that order, mode 600, replaced atomically."""
        known = {name: json.loads((keys / f"{name}.json").read_text())["keys"][0] for name in ("old", "new")
                 if (keys / f"{name}.json").exists()}
        private(str(key_path) + ".next", json.dumps({"keys": [known[name] for name in names]}))
        os.replace(str(key_path) + ".next", key_path)

    private(keys / "old.json", keygen())
    write_keys("old")
    hs_secret = "interop-shared-secret-" + os.urandom(16).hex()
    client = f"gateway:gw-secret-{uuid.uuid4().hex[:12]}"
    instances.secrets.update({hs_secret, client.split(":")[1]})
    common = dict(REDIS_URL=redis_url, ARGON2_MEMORY_KIB=1024, ARGON2_ITERATIONS=1, INTROSPECTION_CLIENTS=client)
    i1 = instances.start(name="instance-1", JWT_KEYS_FILE=key_path, **common)
    i2 = instances.start(name="instance-2", JWT_KEYS_FILE=key_path, **common)
    ihs = instances.start(name="instance-hs", JWT_HS256_SECRET=hs_secret, **common)
    jwks = f"{i2.url}/.well-known/jwks.json"
    orders_urls = {mode: instances.start(name=f"orders-{mode}", binary="orders-example", ORDERS_AUTH=mode, **env).url
              for mode, env in (("session", {"REDIS_URL": redis_url}),
                                ("jwt", {"JWKS_URL": jwks, "JWKS_MIN_REFRESH_SECONDS": 1}),
                                ("jwt-revocation", {"JWKS_URL": jwks, "REDIS_URL": verifier_url}))}
    orders_urls["hs"] = instances.start(name="orders-hs", binary="orders-example", ORDERS_AUTH="jwt",
                                   JWT_HS256_SECRET=hs_secret).url
    E = {"I1": i1.url, "I2": i2.url, "IHS": ihs.url, "KEYS": str(key_path), "HS_SECRET": hs_secret, "CLIENT": client,
         "ORDERS_SESSION": orders_urls["session"], "ORDERS_JWT": orders_urls["jwt"],
         "ORDERS_REVOCATION": orders_urls["jwt-revocation"],
         "ORDERS_HS": orders_urls["hs"]}
    STATE = tmp_path / "state.json"
    check = checks.equal

    def call(method, url, body=None, headers=None, form=None):
        headers = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if form is not None:
            data = form.encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            return error.code, error.read(), error.headers


    def as_json(raw):
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return {}



    def raises(function):
        try:
            function()
            return "accepted"
        except Exception as error:  # noqa: BLE001 - the exception's type is what is checked
            return type(error).__name__


    def bearer(token):
        return {"Authorization": f"Bearer {token}"}


    def basic():
        return {"Authorization": "Basic " + base64.b64encode(E["CLIENT"].encode()).decode()}


    def new_user(base):
        name = f"jwt-{uuid.uuid4().hex[:12]}"
        status, raw, _ = call("POST", f"{base}/v1/users", {"username": name, "password": "correct horse"})
        assert status == 201, (status, raw)
        return name, as_json(raw)["user_id"]


    def login(base, name):
        status, raw, _ = call("POST", f"{base}/v1/login", {"username": name, "password": "correct horse"})
        assert status == 200, (status, raw)
        return as_json(raw)["token"]


    def access_token(base, token):
        status, raw, _ = call("POST", f"{base}/v1/token", headers=bearer(token))
        return as_json(raw).get("access_token") if status == 200 else None


    def orders(base, token):
        return call("GET", f"{base}/orders", headers=bearer(token))[0]


    def session_id(base, token):
        return as_json(call("GET", f"{base}/v1/session", headers=bearer(token))[1]).get("session_id")


    def pyjwt_verify(token, jwks_url, algorithms):
        key = jwt.PyJWKClient(jwks_url, cache_keys=False).get_signing_key_from_jwt(token)
        return jwt.decode(token, key.key, algorithms=algorithms, audience="api", issuer="session-service")


    def claims_for(user_id, sid, **changes):
        now = int(time.time())
        claims = {"iss": "session-service", "sub": user_id, "aud": "api", "iat": now, "nbf": now, "exp": now + 120,
                  "jti": uuid.uuid4().hex, "sid": sid, "name": "pyjwt"}
        claims.update(changes)
        return {key: value for key, value in claims.items() if value is not None}


    def key_file():
        return json.load(open(E["KEYS"]))["keys"]


    def interop():
        jwks = E["I2"] + "/.well-known/jwks.json"
        name, user_id = new_user(E["I1"])
        token = login(E["I1"], name)
        sid = session_id(E["I1"], token)
        signed = access_token(E["I1"], token)
        header = jwt.get_unverified_header(signed)
        check("our token's header: EdDSA, at+jwt, the key file's kid", ("EdDSA", "at+jwt", key_file()[0]["kid"]),
              (header.get("alg"), header.get("typ"), header.get("kid")))
        claims = pyjwt_verify(signed, jwks, ["EdDSA"])
        check("PyJWT verifies our token through the JWKS of the other instance", (user_id, sid, name),
              (claims["sub"], claims["sid"], claims["name"]))
        check("PyJWT itself refuses it for another audience", "InvalidAudienceError",
              raises(lambda: jwt.decode(signed, jwt.PyJWKClient(jwks).get_signing_key_from_jwt(signed).key,
                                        algorithms=["EdDSA"], audience="other")))
        check("orders, session mode: the opaque token", 200, orders(E["ORDERS_SESSION"], token))
        check("orders, session mode: a JWT is not a session token", 401, orders(E["ORDERS_SESSION"], signed))
        check("orders, JWT offline: our token", 200, orders(E["ORDERS_JWT"], signed))
        check("orders, JWT + revocation check: our token", 200, orders(E["ORDERS_REVOCATION"], signed))

        # Tokens PyJWT makes with the right key verify with our middleware; with anything wrong they do not.
        private = jwt.PyJWK(key_file()[0]).key
        kid = key_file()[0]["kid"]
        made = jwt.encode(claims_for(user_id, sid), private, algorithm="EdDSA", headers={"kid": kid, "typ": "at+jwt"})
        check("a PyJWT-made token with the right key: orders offline", 200, orders(E["ORDERS_JWT"], made))
        check("a PyJWT-made token with the right key: orders with revocation check", 200, orders(E["ORDERS_REVOCATION"], made))
        check("a PyJWT-made token: introspection says active", True,
              as_json(call("POST", E["I1"] + "/v1/introspect", form=f"token={made}", headers=basic())[1]).get("active"))
        raw_public = base64.urlsafe_b64decode(key_file()[0]["x"] + "==")
        forged = {
            "typ JWT (not an access token)": jwt.encode(claims_for(user_id, sid), private, algorithm="EdDSA", headers={"kid": kid}),
            "another audience": jwt.encode(claims_for(user_id, sid, aud="other"), private, algorithm="EdDSA",
                                           headers={"kid": kid, "typ": "at+jwt"}),
            "another issuer": jwt.encode(claims_for(user_id, sid, iss="evil"), private, algorithm="EdDSA",
                                         headers={"kid": kid, "typ": "at+jwt"}),
            "expired": jwt.encode(claims_for(user_id, sid, exp=int(time.time()) - 60), private, algorithm="EdDSA",
                                  headers={"kid": kid, "typ": "at+jwt"}),
            "not yet valid": jwt.encode(claims_for(user_id, sid, nbf=int(time.time()) + 120), private, algorithm="EdDSA",
                                        headers={"kid": kid, "typ": "at+jwt"}),
            "alg none": jwt.encode(claims_for(user_id, sid), None, algorithm="none", headers={"kid": kid, "typ": "at+jwt"}),
            "HS256 keyed with the public key": jwt.encode(claims_for(user_id, sid), raw_public, algorithm="HS256",
                                                          headers={"kid": kid, "typ": "at+jwt"}),
            "signed by another Ed25519 key under our kid": jwt.encode(claims_for(user_id, sid), Ed25519PrivateKey.generate(),
                                                                      algorithm="EdDSA", headers={"kid": kid, "typ": "at+jwt"}),
            "an unknown kid": jwt.encode(claims_for(user_id, sid), private, algorithm="EdDSA",
                                         headers={"kid": "unknown", "typ": "at+jwt"}),
        }
        for label, token_text in forged.items():
            check(f"refused by orders offline: {label}", 401, orders(E["ORDERS_JWT"], token_text))

        # Revocation: a second session of the user, ended on instance 2.
        second = login(E["I1"], name)
        second_jwt = access_token(E["I1"], second)
        check("second session: orders with revocation check", 200, orders(E["ORDERS_REVOCATION"], second_jwt))
        check("logout on instance 2", 204, call("POST", E["I2"] + "/v1/logout", headers=bearer(second))[0])
        check("after logout: the revocation check refuses at once", 401, orders(E["ORDERS_REVOCATION"], second_jwt))
        check("after logout: offline still accepts until exp", 200, orders(E["ORDERS_JWT"], second_jwt))
        check("after logout: the session token is refused", 401, orders(E["ORDERS_SESSION"], second))
        check("after logout: introspection on instance 1 says inactive", {"active": False},
              as_json(call("POST", E["I1"] + "/v1/introspect", form=f"token={second_jwt}", headers=basic())[1]))
        check("after logout: no new access token", 401, call("POST", E["I1"] + "/v1/token", headers=bearer(second))[0])
        # RFC 7009 with the JWT of the first session, on instance 1.
        check("revoke the first session by its JWT", (200, b""), call("POST", E["I1"] + "/v1/revoke", form=f"token={signed}", headers=basic())[:2])
        check("its session token is refused on instance 2", 401, call("GET", E["I2"] + "/v1/verify", headers=bearer(token))[0])
        check("its JWT is refused by the revocation check", 401, orders(E["ORDERS_REVOCATION"], signed))
        check("revoke without client credentials", 401, call("POST", E["I1"] + "/v1/revoke", form=f"token={signed}")[0])

        # HS256, the classic example: a shared secret, never published.
        hs_name, hs_user = new_user(E["IHS"])
        hs_token = access_token(E["IHS"], login(E["IHS"], hs_name))
        check("HS256: PyJWT verifies with the shared secret", hs_user,
              jwt.decode(hs_token, E["HS_SECRET"], algorithms=["HS256"], audience="api")["sub"])
        check("HS256: the JWKS publishes nothing", {"keys": []}, as_json(call("GET", E["IHS"] + "/.well-known/jwks.json")[1]))
        hs_sid = session_id(E["IHS"], login(E["IHS"], hs_name))
        classic = jwt.encode(claims_for(hs_user, hs_sid), E["HS_SECRET"], algorithm="HS256", headers={"typ": "at+jwt"})
        check("HS256: a PyJWT-made token (no kid) verifies with our middleware", 200, orders(E["ORDERS_HS"], classic))
        check("HS256: signed with another secret, refused", 401,
              orders(E["ORDERS_HS"], jwt.encode(claims_for(hs_user, hs_sid), "x" * 40, algorithm="HS256", headers={"typ": "at+jwt"})))
        check("HS256: an EdDSA token is refused by an HS256 verifier", 401, orders(E["ORDERS_HS"], made))
        json.dump({"user": name, "old_token": access_token(E["I2"], login(E["I2"], name)), "old_kid": kid}, open(STATE, "w"))


    def rotation_published():
        state = json.load(open(STATE))
        published = [key["kid"] for key in as_json(call("GET", E["I2"] + "/.well-known/jwks.json")[1])["keys"]]
        check("stage 1: the restarted instance publishes the old and the new key", [k["kid"] for k in key_file()], published)
        token = access_token(E["I2"], login(E["I2"], state["user"]))
        check("stage 1: the old key still signs", state["old_kid"], jwt.get_unverified_header(token)["kid"])
        check("stage 1: orders offline accepts it", 200, orders(E["ORDERS_JWT"], token))


    def rotation_promoted():
        state = json.load(open(STATE))
        new_kid = key_file()[0]["kid"]
        token = access_token(E["I1"], login(E["I1"], state["user"]))
        header = jwt.get_unverified_header(token)
        check("stage 2: the restarted instance signs with the new ES256 key", ("ES256", new_kid), (header["alg"], header["kid"]))
        time.sleep(1.1)  # the example's JWKS_MIN_REFRESH_SECONDS: its cache predates the new key
        check("stage 2: orders offline refetches the JWKS on the new kid and accepts", 200, orders(E["ORDERS_JWT"], token))
        check("stage 2: PyJWT verifies the ES256 token", state["user"],
              pyjwt_verify(token, E["I2"] + "/.well-known/jwks.json", ["ES256"])["name"])
        check("stage 2: the other instance's old-key token still verifies", 200,
              orders(E["ORDERS_JWT"], access_token(E["I2"], login(E["I2"], state["user"]))))
        check("stage 2: a token from before the rotation still verifies", 200, orders(E["ORDERS_JWT"], state["old_token"]))


    def rotation_retired():
        state = json.load(open(STATE))
        for instance in ("I1", "I2"):
            published = [key["kid"] for key in as_json(call("GET", E[instance] + "/.well-known/jwks.json")[1])["keys"]]
            check(f"stage 3: {instance} publishes only the new key", [key_file()[0]["kid"]], published)
        check("stage 3: a fresh verifier refuses the old key's token", "PyJWKClientError",
              raises(lambda: pyjwt_verify(state["old_token"], E["I1"] + "/.well-known/jwks.json", ["EdDSA"])))
        check("stage 3: introspection refuses it too", False,
              as_json(call("POST", E["I1"] + "/v1/introspect", form=f"token={state['old_token']}", headers=basic())[1]).get("active"))



    interop()
    # Rotation by rolling restart: publish the new key second, restart; make it first, restart; drop the old one after
    # the longest token lifetime, restart.
    private(keys / "new.json", keygen("--alg", "ES256"))
    write_keys("old", "new")
    i2.restart()
    rotation_published()
    write_keys("new", "old")
    i1.restart()
    rotation_promoted()
    write_keys("new")
    i1.restart()
    i2.restart()
    rotation_retired()
