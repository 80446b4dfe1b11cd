"""A webhook receiver for the system tests: a real HTTP server (a thread of the test process) that verifies every
delivery with PyPI's `standardwebhooks` as is, records it, and answers as told — 204, 500, or not at all (down: its
port refuses connections)."""
import base64
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook


class Receiver:
    def __init__(self, port):
        self.port = port
        self.secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
        self.verifier = Webhook(self.secret)
        self.deliveries = []  # (webhook-id, payload dict, raw body text), verified ones only
        self.bad = []  # deliveries whose signature or shape failed
        self.status = 204
        self.location = None  # sent with a 3xx status
        self.paths = []  # every request's path, verified or not
        self.lock = threading.Lock()
        self.server = None
        self.up()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/hooks/session"

    def up(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver.lock:
                    receiver.paths.append(self.path)
                try:
                    payload = receiver.verifier.verify(body, headers)
                    with receiver.lock:
                        receiver.deliveries.append((headers["webhook-id"], payload, body.decode()))
                        status = receiver.status
                except Exception as error:  # a delivery that does not verify is evidence, not a crash
                    with receiver.lock:
                        receiver.bad.append(f"{type(error).__name__}: {error}")
                    status = 400
                self.send_response(status)
                if receiver.location and 300 <= status < 400:
                    self.send_header("location", receiver.location)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self):
        self.server.shutdown()
        self.server.server_close()

    def events(self):
        """The events delivered (the payloads' `data`), each once, by webhook-id."""
        with self.lock:
            seen = {}
            for webhook_id, payload, _ in self.deliveries:
                seen.setdefault(webhook_id, payload["data"])
            return seen

    def wait_for(self, condition, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition(self.events()):
                return True
            time.sleep(0.2)
        return condition(self.events())

    def duplicates(self):
        """webhook-ids delivered more than once, and whether every copy carried the same event."""
        with self.lock:
            bodies = {}
            for webhook_id, payload, _ in self.deliveries:
                bodies.setdefault(webhook_id, []).append(json.dumps(payload["data"], sort_keys=True))
        return {k: len(set(v)) == 1 for k, v in bodies.items() if len(v) > 1}
