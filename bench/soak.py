"""Mixed traffic for scripts/soak: logins, verifies, session reads, logouts and revoke-alls through nginx.

Each worker: register once, then loop: login, ~40 verifies/session reads, then logout (or, one time in five,
revoke-all). Statuses are counted per endpoint; 503 is expected only inside the Redis restart window (written by
scripts/soak to RESTART_WINDOW_FILE as "start end" epoch seconds), anything else unexpected is listed.
"""
import http.client, json, os, random, sys, threading, time

base_port, minutes, workers = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
deadline = time.time() + minutes * 60
lock = threading.Lock()
counts, latencies, unexpected = {}, {}, []


def restart_window():
    try:
        start, end = open(os.environ["RESTART_WINDOW_FILE"]).read().split()
        return float(start), float(end) + 3
    except (OSError, ValueError, KeyError):
        return None


def record(endpoint, status, elapsed, expected):
    with lock:
        counts[(endpoint, status)] = counts.get((endpoint, status), 0) + 1
        latencies.setdefault(endpoint, []).append(elapsed)
        if status not in expected:
            unexpected.append((endpoint, status, time.time()))


def worker(index):
    conn = http.client.HTTPConnection("127.0.0.1", base_port, timeout=10)
    name, password = f"soak-{os.getpid()}-{index}", "correct horse battery"

    def call(method, path, endpoint, expected, body=None, token=None):
        nonlocal conn
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        start = time.perf_counter()
        try:
            conn.request(method, path, json.dumps(body) if body else None, headers)
            response = conn.getresponse()
            data = response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", base_port, timeout=10)
            status, data = 0, b""
        record(endpoint, status, time.perf_counter() - start, expected)
        return status, data

    call("POST", "/v1/users", "register", {201, 409}, {"username": name, "password": password})
    while time.time() < deadline:
        status, data = call("POST", "/v1/login", "login", {200}, {"username": name, "password": password})
        if status != 200:
            time.sleep(0.2)
            continue
        token = json.loads(data)["token"]
        for i in range(40):
            if time.time() >= deadline:
                break
            if i % 8 == 7:
                call("GET", "/v1/session", "session", {200}, token=token)
            else:
                call("GET", "/v1/verify", "verify", {200}, token=token)
        if random.random() < 0.2:
            status, _ = call("DELETE", "/v1/sessions", "revoke-all", {204}, token=token)
        else:
            status, _ = call("POST", "/v1/logout", "logout", {204}, token=token)
        if status == 204:
            # A revoked token must be refused, everywhere, at once.
            call("GET", "/v1/verify", "verify-revoked", {401}, token=token)
        else:
            # The revocation itself failed (Redis down: 503), so the session still lives and must still work.
            call("GET", "/v1/verify", "verify-after-failed-revoke", {200, 503}, token=token)


threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
for t in threads:
    t.start()
for t in threads:
    t.join()
# 503 is expected while Redis restarts (the window is known only once the restart is over).
window = restart_window()
during_restart = [u for u in unexpected if u[1] == 503 and window and window[0] - 1 <= u[2] <= window[1]]
unexpected = [u for u in unexpected if u not in during_restart]
total = sum(counts.values())
print("| endpoint | status | requests | endpoint p99 |\n|---|---|---|---|")
p99 = {}
for endpoint, values in latencies.items():
    values.sort()
    p99[endpoint] = values[int(len(values) * 0.99)] * 1000
for (endpoint, status), n in sorted(counts.items()):
    print(f"| {endpoint} | {status} | {n} | {p99[endpoint]:.1f} ms |")
print(f"\ntotal requests: {total}; 503 during the Redis restart (expected): {len(during_restart)}; unexpected statuses: {len(unexpected)}")
if window:
    print(f"Redis was down {window[1] - 3 - window[0]:.1f} s; first 503 → last 503: "
          f"{(max(u[2] for u in during_restart) - min(u[2] for u in during_restart)) if during_restart else 0:.1f} s")
for item in unexpected[:20]:
    print("  unexpected:", item)
sys.exit(1 if unexpected else 0)
