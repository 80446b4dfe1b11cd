"""Observability with real processes: three instances exporting traces over OTLP/HTTP to a receiver (the `otlp`
fixture, decoding with PyPI's opentelemetry-proto), behind nginx with auth_request, and a real Prometheus (Debian's)
scraping them. Checks the spans (parents across nginx's auth_request, attributes, no secrets), that /metrics names
every series, and that every query of the Grafana dashboard (deploy/grafana) returns data; the instances fixture then
checks every log line as LOG_FORMAT=json.
"""

import json
import os
import re
import secrets
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request


from support.processes import ROOT, service_acl
from support.webhook_receiver import Receiver


def test_traces_metrics_and_the_dashboard(redis, instances, nginx, otlp, prometheus, ports, checks):
    server = redis(*service_acl())
    endpoint, spans_file = otlp
    receiver = Receiver(ports())  # the webhook panels' series
    instances.secrets.add(receiver.secret)
    nodes = [instances.start(REDIS_URL=f"redis://session-service:svc-pass@127.0.0.1:{server.port}/0", ARGON2_MEMORY_KIB=1024, ARGON2_ITERATIONS=1,
                             WEBHOOK_URL=receiver.url, WEBHOOK_SECRET=receiver.secret,
                             TRUSTED_PROXIES="127.0.0.1", LOG_LEVEL="debug", LOGIN_MAX_FAILURES=3,
                             OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_BSP_SCHEDULE_DELAY=100,
                             OTEL_SERVICE_NAME=f"session-service-{i}") for i in (1, 2, 3)]
    LB = nginx(nodes).url
    PROMETHEUS = prometheus(nodes)
    SPANS, DASHBOARD, REDIS_PORT = str(spans_file), ROOT / "deploy/grafana/dashboards/session-service.json", str(server.port)
    INSTANCES = [node.url for node in nodes]
    PASSWORD = "correct horse " + secrets.token_hex(4)
    SECRETS = [PASSWORD]
    instances.secrets.add(PASSWORD)
    instances.expect_requests = 50
    check = checks

    def call(method, url, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()


    def traceparent():
        trace, parent = secrets.token_hex(16), secrets.token_hex(8)
        return trace, parent, f"00-{trace}-{parent}-01"


    def spans_of(trace, wait_for=lambda spans: True, seconds=10):
        deadline = time.time() + seconds
        found = []
        while time.time() < deadline:
            found = []
            if os.path.exists(SPANS):
                for line in open(SPANS, encoding="utf-8"):
                    span = json.loads(line)
                    if span["trace_id"] == trace:
                        found.append(span)
            if found and wait_for(found):
                return found
            time.sleep(0.1)
        return found


    def named(spans, name):
        return [s for s in spans if s["name"] == name]


    # --- Traces ------------------------------------------------------------------------------------------------------
    print("traces (OTLP/HTTP to scripts/lib/otlp_receiver.py)")
    user = "obs-" + secrets.token_hex(4)
    status, _, body = call("POST", LB + "/v1/users", {"username": user, "password": PASSWORD})
    user_id = json.loads(body)["user_id"]

    trace, parent, header = traceparent()
    status, _, body = call("POST", LB + "/v1/login", {"username": user, "password": PASSWORD}, {"traceparent": header})
    token = json.loads(body)["token"]
    SECRETS.append(token)
    instances.secrets.add(token)
    spans = spans_of(trace, lambda s: named(s, "POST /v1/login") and named(s, "password.verify"))
    login = named(spans, "POST /v1/login")
    check("login: a server span POST /v1/login continues the caller's traceparent",
          len(login) == 1 and login[0]["parent_span_id"] == parent and login[0]["kind"] == "SPAN_KIND_SERVER", spans)
    if login:
        children = [s for s in spans if s["parent_span_id"] == login[0]["span_id"]]
        check("login: password.verify is its child (argon2id, its cost, no hash)",
              any(s["name"] == "password.verify" and s["attributes"].get("password.hash.algorithm") == "argon2id"
                  and s["attributes"].get("password.hash.cost") == "m=1024,t=1,p=1" for s in children), children)
        redis_children = [s for s in children if s["attributes"].get("db.system.name") == "redis"]
        check("login: its Redis commands and scripts are children (kind client, db.operation.name)",
              len(redis_children) >= 3 and all(s["kind"] == "SPAN_KIND_CLIENT" and s["attributes"].get("db.operation.name") for s in redis_children),
              [s["name"] for s in children])
        check("login: the script that creates the session is named (EVALSHA create)", any(s["name"] == "EVALSHA create" for s in redis_children),
              [s["name"] for s in redis_children])
        attributes = login[0]["attributes"]
        check("login: HTTP semantic conventions on the server span",
              attributes.get("http.request.method") == "POST" and attributes.get("http.route") == "/v1/login"
              and attributes.get("http.response.status_code") == 200 and attributes.get("url.path") == "/v1/login", attributes)

    # nginx auth_request: the gateway's request carries a traceparent; the verification subrequest (fast path) continues it.
    fresh_status, _, fresh_body = call("POST", LB + "/v1/login", {"username": user, "password": PASSWORD})
    fresh = json.loads(fresh_body)["token"]
    SECRETS.append(fresh)
    instances.secrets.add(fresh)
    trace, parent, header = traceparent()
    status, headers, _ = call("GET", LB + "/protected/page", headers={"Authorization": "Bearer " + fresh, "traceparent": header})
    check("auth_request: the protected page is served", status == 200, status)
    spans = spans_of(trace, lambda s: named(s, "GET /v1/verify") and len(s) >= 3)
    verify = named(spans, "GET /v1/verify")
    check("auth_request: the verification (fast path) joins the gateway request's trace as its child",
          len(verify) == 1 and verify[0]["parent_span_id"] == parent, [(s["name"], s["parent_span_id"]) for s in spans])
    if verify:
        redis_children = [s for s in spans if s["parent_span_id"] == verify[0]["span_id"]]
        check("auth_request: the Redis read of a first verification is the verification's child",
              len(redis_children) == 1 and redis_children[0]["attributes"].get("db.system.name") == "redis", [s["name"] for s in spans])
        attributes = verify[0]["attributes"]
        check("auth_request: the span names the user and session, route and status",
              attributes.get("user.id") == user_id and len(attributes.get("session.id", "")) == 32
              and attributes.get("http.route") == "/v1/verify" and attributes.get("http.response.status_code") == 200, attributes)
        check("auth_request: the span carries nginx's request id, the one the backend answered with",
              attributes.get("http.request.header.x-request-id") == [headers.get("X-Request-Id")], (attributes, headers.get("X-Request-Id")))
    check("auth_request: the backend request is in the same trace", len(named(spans, "GET /healthz")) == 1, [s["name"] for s in spans])


    def show(spans, parent, depth):
        for span in sorted((s for s in spans if s["parent_span_id"] == parent), key=lambda s: s["start_ns"]):
            shown = {k: v for k, v in span["attributes"].items() if k in (
                "http.route", "http.response.status_code", "user.id", "session.id", "http.request.header.x-request-id", "db.system.name",
                "db.operation.name", "db.stored_procedure.name", "db.operation.batch.size")}
            took = (span["end_ns"] - span["start_ns"]) / 1e6
            print(f"    {'  ' * depth}└─ {span['name']}  [{span['kind'][10:].lower()}, span {span['span_id']}, {took:.2f} ms] {shown}")
            show(spans, span["span_id"], depth + 1)


    print(f"    the gateway's span {parent} in trace {trace} (traceparent sent through nginx):")
    show(spans, parent, 0)

    # A cached verification: no Redis span, still a server span.
    trace, parent, header = traceparent()
    call("GET", INSTANCES[0] + "/v1/verify", headers={"Authorization": "Bearer " + fresh})
    call("GET", INSTANCES[0] + "/v1/verify", headers={"Authorization": "Bearer " + fresh, "traceparent": header})
    spans = spans_of(trace, lambda s: named(s, "GET /v1/verify"))
    check("a verification answered by the near cache: one server span, no Redis child",
          len(spans) == 1 and spans[0]["name"] == "GET /v1/verify", [s["name"] for s in spans])

    # Sampling is decided at the head: a caller's unsampled traceparent makes no span at all. A sampled request sent after
    # it on the same instance is awaited, so the unsampled one's spans (if any) would have been exported by then.
    unsampled, parent, _ = traceparent()
    call("GET", INSTANCES[0] + "/v1/verify", headers={"Authorization": "Bearer " + fresh, "traceparent": f"00-{unsampled}-{parent}-00"})
    call("GET", INSTANCES[0] + "/v1/session", headers={"Authorization": "Bearer " + fresh, "traceparent": f"00-{unsampled}-{parent}-00"})
    trace, parent, header = traceparent()
    call("GET", INSTANCES[0] + "/v1/verify", headers={"Authorization": "Bearer " + fresh, "traceparent": header})
    spans_of(trace, lambda s: named(s, "GET /v1/verify"))
    check("an unsampled traceparent makes no span, on the fast path or the router", not spans_of(unsampled, seconds=0.5),
          [s["name"] for s in spans_of(unsampled, seconds=0.5)])

    # The router path, and a request without a traceparent (a new root).
    trace, parent, header = traceparent()
    call("GET", LB + "/v1/sessions", headers={"Authorization": "Bearer " + fresh, "traceparent": header})
    spans = spans_of(trace, lambda s: named(s, "GET /v1/sessions") and len(s) >= 2)
    listing = named(spans, "GET /v1/sessions")
    check("router: GET /v1/sessions continues the trace, its Redis script a child",
          len(listing) == 1 and listing[0]["parent_span_id"] == parent
          and any(s["parent_span_id"] == listing[0]["span_id"] and s["name"] == "EVALSHA list" for s in spans), [s["name"] for s in spans])
    status, headers, _ = call("GET", INSTANCES[1] + "/healthz")
    time.sleep(1)
    roots = [json.loads(line) for line in open(SPANS, encoding="utf-8")]
    check("without a traceparent a request starts its own trace (a root span)",
          any(s["name"] == "GET /healthz" and s["parent_span_id"] == "" for s in roots))
    bad = [(s["name"], k, v) for s in roots for k, v in s["attributes"].items() for secret in SECRETS + ["Bearer", "bcrypt-hs256", "$argon2id$"]
           if secret in json.dumps(v)]
    check(f"no token, password, hash or Authorization in any attribute of {len(roots)} spans", not bad, bad[:5])
    keys = sorted({k for s in roots for k in s["attributes"]})
    check("no attribute holds a query, a header other than the request id, or a Redis key",
          not [k for k in keys if k.startswith(("url.query", "db.query", "db.statement")) or (k.startswith("http.request.header.") and k != "http.request.header.x-request-id")],
          keys)

    # --- Metrics -----------------------------------------------------------------------------------------------------
    print("metrics (/metrics of each instance)")
    for _ in range(4):  # LOGIN_MAX_FAILURES=3: the fourth is throttled
        status, _, _ = call("POST", LB + "/v1/login", {"username": user, "password": "wrong password"})
    check("a fourth failed login is throttled", status == 429, status)
    for _ in range(3):
        call("GET", LB + "/v1/verify", headers={"Authorization": "Bearer " + fresh})
        call("GET", LB + "/v1/session", headers={"Authorization": "Bearer " + fresh})
    subprocess.run(["redis-cli", "-p", REDIS_PORT, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"], check=True, capture_output=True)
    time.sleep(1.5)
    texts = [call("GET", url + "/metrics")[2].decode() for url in INSTANCES]


    def samples(name, labels=None):
        found = []
        for text in texts:
            for line in text.splitlines():
                match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$", line)
                if not match or match.group(1) != name:
                    continue
                pairs = dict(re.findall(r'(\w+)="([^"]*)"', match.group(3) or ""))
                if all(pairs.get(k) == v for k, v in (labels or {}).items()):
                    found.append((pairs, float(match.group(4))))
        return found


    def total(name, labels=None):
        return sum(value for _, value in samples(name, labels))


    expected = {
        "hb_requests": {"http_route": "/v1/login"},
        "http_server_request_duration_bucket": {"http_route": "/v1/verify"},
        "http_server_active_requests": {},
        "redis_command_duration_seconds_bucket": {"operation": "authenticate"},
        "redis_commands_in_flight": {},
        "redis_connections": {},
        "redis_reconnects_total": {},
        "session_password_hash_queue_depth": {},
        "session_near_cache_hits_total": {},
    }
    for name, labels in expected.items():
        check(f"/metrics has {name}{labels or ''}", samples(name, labels), name)
    for result in ("ok", "failed", "throttled"):
        check(f"logins by result: session_logins_total{{result={result}}} counted", total("session_logins_total", {"result": result}) >= 1)
    for path in ("fast_path", "router"):
        check(f"verifications by result and path: {{result=ok,path={path}}} counted",
              total("session_verifications_total", {"result": "ok", "path": path}) >= 1)
    check("throttle hits: session_login_throttle_hits_total{limit=user_address} counted",
          total("session_login_throttle_hits_total", {"limit": "user_address"}) >= 1)
    check("connections lost and made again: redis_reconnects_total counted", total("redis_reconnects_total") >= 1)
    check("Redis latency: redis_command_duration_seconds_count{operation=authenticate} counted",
          total("redis_command_duration_seconds_count", {"operation": "authenticate"}) >= 1)
    errors = samples("hb_request_errors")
    check("hb_request_errors only for statuses >= 400 (no error_type=\"200\")",
          errors and all(int(labels["error_type"]) >= 400 for labels, _ in errors), [l for l, _ in errors])

    # --- Prometheus and the dashboard --------------------------------------------------------------------------------
    print("Prometheus (Debian's) scraping the three instances; the dashboard's queries")
    deadline = time.time() + 30
    up = []
    while time.time() < deadline:
        targets = json.loads(call("GET", PROMETHEUS + "/api/v1/targets")[2])["data"]["activeTargets"]
        up = [t for t in targets if t["health"] == "up"]
        if len(up) == len(INSTANCES):
            break
        time.sleep(0.5)
    check(f"Prometheus scrapes all {len(INSTANCES)} instances", len(up) == len(INSTANCES), [t.get("lastError") for t in targets])
    for _ in range(40):  # some traffic across a few scrapes
        call("GET", LB + "/v1/verify", headers={"Authorization": "Bearer " + fresh})
        time.sleep(0.05)
    time.sleep(2.5)
    dashboard = json.load(open(DASHBOARD, encoding="utf-8"))
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            query = target["expr"].replace("$__rate_interval", "30s")
            answer = json.loads(call("GET", PROMETHEUS + "/api/v1/query?" + urllib.parse.urlencode({"query": query}))[2])
            result = answer.get("data", {}).get("result", [])
            check(f"dashboard: {panel['title']} / {target['legendFormat']}: {len(result)} series",
                  answer.get("status") == "success" and result, answer.get("error") or query)

