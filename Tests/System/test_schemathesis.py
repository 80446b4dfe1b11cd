"""Property-based API testing: schemathesis (PyPI) generates requests from openapi.yaml against a running instance (the
least-privilege Redis ACL user) and checks: no 5xx, and every response conforms to the spec (status codes, content
types, headers, bodies). Bounded: MAX_EXAMPLES per operation (default 25). The document itself must first be valid
OpenAPI of the version it declares (client generators rely on it).
"""
import base64
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from support.processes import ROOT, service_acl

TOOLS = Path(sys.executable).parent
ADMIN_OPERATIONS = ["adminFindUser", "adminGetUser", "adminListSessions", "adminEndSessions", "adminEndSession",
                    "adminDisableUser", "adminEnableUser", "adminSetPassword", "adminDeleteUser", "adminUserEvents",
                    "adminFailedWebhooks", "adminRetryFailedWebhooks"]


def test_openapi_document_is_valid():
    result = subprocess.run([str(TOOLS / "openapi-spec-validator"), str(ROOT / "openapi.yaml")], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def basic(credentials):
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


def test_every_operation_conforms_to_openapi(redis, instances, binaries, ports, tmp_path, checks):
    server = redis(*service_acl())
    keys = tmp_path / "jwt-keys.json"
    keys.write_text(subprocess.run([str(binaries["session-service"]), "jwt-keygen"], capture_output=True, text=True,
                                   check=True).stdout)
    keys.chmod(0o600)
    admin_port = ports()
    service = instances.start(name="service", REDIS_URL=f"redis://session-service:svc-pass@127.0.0.1:{server.port}/0",
                              ARGON2_MEMORY_KIB=1024, ARGON2_ITERATIONS=1, LOGIN_MAX_FAILURES=1000000, LOGIN_MAX_FAILURES_PER_USER=1000000,
                              LOGIN_MAX_FAILURES_PER_ADDRESS=1000000, LOG_LEVEL="warning", JWT_KEYS_FILE=keys,
                              INTROSPECTION_CLIENTS="schema:schema-client-secret-1", ADMIN_PORT=admin_port,
                              ADMIN_CLIENTS="ops:schema-admin-secret-1")
    post(service.url + "/v1/users", {"username": "schema-user", "password": "correct horse"})
    token = post(service.url + "/v1/login", {"username": "schema-user", "password": "correct horse"})["token"]
    instances.secrets.update({token, "schema-client-secret-1", "schema-admin-secret-1"})
    examples = os.environ.get("MAX_EXAMPLES", "25")

    def run(name, *arguments, url=service.url, authorization=f"Bearer {token}", exclude="positive_data_acceptance"):
        log = open(tmp_path / f"{name}.log", "w")
        command = [str(TOOLS / "schemathesis"), "run", str(ROOT / "openapi.yaml"), "--url", url, "--header",
                   f"Authorization: {authorization}", "--max-examples", examples, "--checks", "all", "--exclude-checks",
                   exclude, "--generation-deterministic", "--request-timeout", "5", "--workers", "1", *arguments]
        return name, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)

    def finish(name, process):
        code = process.wait()
        text = (tmp_path / f"{name}.log").read_text(errors="replace")
        print(text[text.find("SUMMARY"):] if "SUMMARY" in text else text[-3000:])
        checks(f"schemathesis: the {name} pass finds no failure", code == 0, f"exit {code}")
        checks(f"schemathesis: the {name} pass saw no 5xx", "HTTP/1.1 5" not in text and "Server error" not in text)

    # The operator API, on its own listener, as an ADMIN_CLIENTS client: beside the other passes (it touches no session
    # of theirs).
    admin = run("admin", *[a for op in ADMIN_OPERATIONS for a in ("--include-operation-id", op)],
                url=f"http://127.0.0.1:{admin_port}", authorization=basic("ops:schema-admin-secret-1"))
    # positive_data_acceptance is left out: schema-valid credentials for users that do not exist are rightly refused
    # (401). Passes: first every operation that keeps the token alive, then the ones that end it.
    ending = ["logout", "revokeAllSessions", "revokeSession", "browserLogin", "browserLogout", "browserLoginWithCode", "introspect",
              "revokeToken", "changePassword", *ADMIN_OPERATIONS]
    finish(*run("main", *[a for op in ending for a in ("--exclude-operation-id", op)]))
    # The browser routes (and a password change sent as a form: the account page's) answer a form post's every failure
    # with 303 ?error=<code> (the contract: a browser must land on a page), so "invalid data is rejected with a 4xx" does
    # not apply to them; every other check does. No generated current password is right, so the token lives on.
    finish(*run("browser", "--include-operation-id", "browserLogin", "--include-operation-id", "browserLogout",
                "--include-operation-id", "browserLoginWithCode", "--include-operation-id", "changePassword",
                exclude="positive_data_acceptance,negative_data_rejection"))
    finish(*run("ending", "--include-operation-id", "logout", "--include-operation-id", "revokeAllSessions",
                "--include-operation-id", "revokeSession"))
    # Introspection and revocation authenticate their callers as clients (HTTP Basic), not with the session token.
    finish(*run("client", "--include-operation-id", "introspect", "--include-operation-id", "revokeToken",
                authorization=basic("schema:schema-client-secret-1")))
    finish(*admin)
