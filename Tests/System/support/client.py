"""One HTTP client for the system tests that need no more than a request and its answer."""
import json
import urllib.error
import urllib.parse
import urllib.request


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args):
        return None


def call(method, url, body=None, headers=None, form=None, timeout=30):
    """(status, headers, parsed JSON or raw bytes); never raises on an HTTP status or a refused connection (status 0).
    A redirect is not followed. body: sent as JSON; form: as application/x-www-form-urlencoded."""
    data = None
    request_headers = dict(headers or {})
    if body is not None:
        data, request_headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    elif form is not None:
        data = urllib.parse.urlencode(form).encode()
        request_headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(url, data=data, method=method, headers=request_headers)
    try:
        with urllib.request.build_opener(_NoRedirect).open(request, timeout=timeout) as response:
            status, answer_headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, answer_headers, raw = error.code, error.headers, error.read()
    except OSError:
        return 0, {}, b""
    try:
        return status, answer_headers, json.loads(raw) if raw else None
    except ValueError:
        return status, answer_headers, raw
