"""Checks what LOG_FORMAT=json instances wrote: every line of every file is one JSON object with `time` (RFC 3339,
UTC, milliseconds), `level`, `logger` and `message`; every `request` line carries `request_id`, `http.method`,
`http.route`, a numeric `http.status` and `http.duration_ms`; no line holds a secret.

    check_logs(paths, secrets, expect_requests)     (the system tests' instances fixture, after every test)
    logcheck.py [--secret TEXT]… [--expect-requests N] LOG…

Returns (or prints) a one-line summary and the first bad lines.
"""

import argparse
import json
import re
import sys

TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
LEVELS = {"trace", "debug", "info", "notice", "warning", "error", "critical"}
# What a password hash or a credential looks like in this service, whatever the test knew to look for.
SECRET_SHAPES = [re.compile(p) for p in (r"bcrypt-hs256\$", r"\$2[aby]\$\d\d\$", r"(?i)bearer [0-9a-f-]{36}", r"(?i)authorization", r"(?i)cookie:")]


def problems(line, secrets):
    try:
        entry = json.loads(line)
    except ValueError as error:
        return [f"not JSON ({error})"]
    if not isinstance(entry, dict):
        return ["not a JSON object"]
    found = []
    if not TIME.match(str(entry.get("time", ""))):
        found.append(f"time {entry.get('time')!r} is not RFC 3339 UTC with milliseconds")
    if entry.get("level") not in LEVELS:
        found.append(f"level {entry.get('level')!r}")
    for key in ("logger", "message"):
        if not isinstance(entry.get(key), str) or not entry.get(key):
            found.append(f"no {key}")
    if entry.get("message") == "request":
        for key in ("request_id", "http.method", "http.route"):
            if not isinstance(entry.get(key), str) or not entry.get(key):
                found.append(f"request line without {key}")
        if not isinstance(entry.get("http.status"), int):
            found.append("request line without a numeric http.status")
        if not isinstance(entry.get("http.duration_ms"), (int, float)):
            found.append("request line without a numeric http.duration_ms")
    for secret in secrets:
        if secret and secret in line:
            found.append("holds a secret the test used")
    for shape in SECRET_SHAPES:
        if shape.search(line):
            found.append(f"looks like a credential ({shape.pattern})")
    return found


def check_logs(paths, secrets=(), expect_requests=0):
    """Reads every line of the logs; returns (summary, problems): problems name the first bad lines (at most 20)."""
    lines = requests = 0
    bad = []
    ids = set()
    for path in paths:
        for number, line in enumerate(open(path, encoding="utf-8", errors="replace"), 1):
            if not line.strip():
                continue
            lines += 1
            for problem in problems(line, secrets):
                bad.append(f"{path}:{number}: {problem}: {line.strip()[:200]}")
            try:
                entry = json.loads(line)
                if isinstance(entry, dict) and entry.get("message") == "request":
                    requests += 1
                    ids.add(entry.get("request_id"))
            except ValueError:
                pass
    if requests < expect_requests:
        bad.append(f"{requests} request lines, expected at least {expect_requests} (LOG_LEVEL=debug?)")
    summary = (f"logcheck: {lines} lines in {len(paths)} file(s) parse as JSON log entries ({requests} request lines, "
               f"{len(ids)} request ids)")
    return summary, bad[:20]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--secret", action="append", default=[])
    parser.add_argument("--expect-requests", type=int, default=0, help="at least this many request lines in all")
    parser.add_argument("logs", nargs="+")
    args = parser.parse_args()
    summary, bad = check_logs(args.logs, args.secret, args.expect_requests)
    if bad:
        sys.exit("logcheck:\n" + "\n".join(bad))
    print(summary)


if __name__ == "__main__":
    main()
