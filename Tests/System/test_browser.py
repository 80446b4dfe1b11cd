"""The account page in a real browser: headless Chromium (Debian's chromium + chromium-driver) driven by PyPI's
selenium, against two instances behind nginx, as a user would: sign in with the page's form, reload on the other
instance, see the sessions, sign one out from a second browser profile, sign out everywhere, change the password;
JavaScript cannot read the cookie; cross-site form posts are refused. Screenshots go to $SCREENSHOTS (default: the
test's folder; docs/ in the README came from `SCREENSHOTS=docs scripts/test --system -k browser`).
"""
import http.server
import json
import os
import tempfile
import threading
import time
import urllib.request
import uuid

import pyotp

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

import pytest

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery"


def make_browser(state):
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,900",
                     f"--user-data-dir={tempfile.mkdtemp(prefix='profile-', dir=state)}"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def wait_visible(driver, element_id, seconds=10):
    return WebDriverWait(driver, seconds).until(EC.visibility_of_element_located((By.ID, element_id)))


def test_account_page_in_chromium(redis, instances, nginx, tmp_path, checks):
    server = redis()
    # The cookie stays Secure: Chromium treats http://localhost as a secure context, as it does for development.
    nodes = [instances.start(REDIS_URL=server.url, ARGON2_MEMORY_KIB=1024, ARGON2_ITERATIONS=1, TRUSTED_PROXIES="127.0.0.1") for _ in range(2)]
    BASE = nginx(nodes).url.replace("127.0.0.1", "localhost")
    STATE = str(tmp_path)
    SHOTS = os.environ.get("SCREENSHOTS") or STATE
    os.makedirs(SHOTS, exist_ok=True)
    check = checks
    instances.secrets.add(PASSWORD)

    def api(method, path, body=None, token=None):
        request = urllib.request.Request(BASE + path, method=method, data=json.dumps(body).encode() if body is not None else None)
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", "Bearer " + token)
        try:
            with urllib.request.urlopen(request) as response:
                data = response.read()
                return response.status, json.loads(data) if data else None
        except urllib.error.HTTPError as error:
            return error.code, None


    def browser():
        return make_browser(STATE)


    def sign_in(driver, username):
        driver.get(BASE + "/account")
        wait_visible(driver, "signed-out")
        driver.find_element(By.ID, "username").send_keys(username)
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "sign-in").click()
        wait_visible(driver, "signed-in")
        WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "who").text == username)


    def session_items(driver):
        WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#sessions li"))
        return driver.find_elements(By.CSS_SELECTOR, "#sessions li")


    def own_session_id(driver):
        return driver.execute_async_script(
            "const done = arguments[0]; fetch('/v1/session').then(r => r.json()).then(j => done(j.session_id));")


    user = "page-" + uuid.uuid4().hex[:8]
    check("registered through the API", api("POST", "/v1/users", {"username": user, "password": PASSWORD})[0] == 201)

    first = browser()
    second = browser()
    try:
        # Signed out, then signed in through the page's own form (a real form post, a 303 back to /account).
        first.get(BASE + "/account")
        wait_visible(first, "signed-out")
        first.save_screenshot(os.path.join(SHOTS, "account-signed-out.png"))
        sign_in(first, user)
        check("the form signs in and the page shows who you are", first.find_element(By.ID, "who").text == user)
        cookie = first.execute_script("return document.cookie")
        check("JavaScript cannot read the session cookie", "session" not in cookie, repr(cookie))
        stored = [c for c in first.get_cookies() if "session" in c["name"]]
        check("the browser holds an HttpOnly, SameSite=Lax cookie", len(stored) == 1 and stored[0]["httpOnly"] and stored[0].get("sameSite") == "Lax",
              repr([{k: c[k] for k in ("name", "httpOnly", "secure") if k in c} for c in stored]))

        # Reload with instance 1 stopped: the other instance recognises the same cookie.
        nodes[0].stop()
        first.refresh()
        wait_visible(first, "signed-in")
        check("after a reload served by the other instance, still signed in", first.find_element(By.ID, "who").text == user)
        # Back up for the rest, so both instances serve again.
        nodes[0].start()

        # Three sessions: two more from API logins; the page lists them, this one marked.
        tokens = [api("POST", "/v1/login", {"username": user, "password": PASSWORD})[1]["token"] for _ in range(2)]
        first.refresh()
        items = session_items(first)
        check("the page lists the user's 3 sessions", len(items) == 3, f"{len(items)} listed")
        check("this device is marked", sum("this device" in item.text for item in items) == 1)
        check("each session says its device and address, last seen in words",
              all("127.0.0.1" in item.text and "last seen" in item.text and ("ago" in item.text or "just now" in item.text) for item in items)
              and any("Chrom" in item.text for item in items), " | ".join(item.text.replace("\n", " ") for item in items))
        first.save_screenshot(os.path.join(SHOTS, "account-signed-in.png"))
        first.set_window_size(390, 844)
        first.refresh()
        session_items(first)
        first.save_screenshot(os.path.join(SHOTS, "account-phone.png"))
        first.set_window_size(1100, 900)

        # A second browser profile signs in; the first signs that session out; the second is signed out.
        sign_in(second, user)
        victim = own_session_id(second)
        first.refresh()
        session_items(first)
        first.find_element(By.CSS_SELECTOR, f'#sessions li[data-session-id="{victim}"] button').click()
        WebDriverWait(first, 10).until(lambda d: not d.find_elements(By.CSS_SELECTOR, f'#sessions li[data-session-id="{victim}"]'))
        second.refresh()
        wait_visible(second, "signed-out")
        check("a session signed out from another browser is signed out there", second.find_element(By.ID, "signed-out").is_displayed())

        # A cross-site form post (a page on another origin) is refused before the cookie is looked at.
        class Evil(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                page = (f'<form id="f" method="post" action="{BASE}/v1/browser/logout"><button id="go">go</button></form>'
                        f'<form id="g" method="post" action="{BASE}/v1/browser/login"><input name="username" value="{user}">'
                        f'<input name="password" value="{PASSWORD}"><button id="login">login</button></form>').encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args):
                pass

        evil = http.server.HTTPServer(("127.0.0.1", 0), Evil)
        threading.Thread(target=evil.serve_forever, daemon=True).start()
        for button in ("go", "login"):
            first.get(f"http://127.0.0.1:{evil.server_address[1]}/")
            first.find_element(By.ID, button).click()
            WebDriverWait(first, 10).until(lambda d: "cross_origin_request" in d.page_source)
            check(f"a cross-site form post to /v1/browser/{'logout' if button == 'go' else 'login'} is refused (403)",
                  "cross_origin_request" in first.page_source)
        first.get(BASE + "/account")
        wait_visible(first, "signed-in")
        check("and the session it aimed at is still signed in", first.find_element(By.ID, "who").text == user)
        evil.shutdown()

        # Change the password from the page: a wrong current one is refused; the right one keeps this browser signed in
        # and ends the other sessions (the API ones).
        def change_password(current, new):
            first.find_element(By.ID, "current-password").send_keys(current)
            first.find_element(By.ID, "new-password").send_keys(new)
            first.find_element(By.ID, "change-password-submit").click()
            WebDriverWait(first, 10).until(lambda d: "password=" in d.current_url or "error=" in d.current_url)
            wait_visible(first, "signed-in")
            WebDriverWait(first, 10).until(lambda d: d.find_element(By.ID, "status").text)

        change_password("not my password", "a brand new password")
        check("a wrong current password is refused on the page", "current password is wrong" in first.find_element(By.ID, "status").text,
              first.find_element(By.ID, "status").text)
        first.get(BASE + "/account")
        wait_visible(first, "signed-in")
        change_password(PASSWORD, "a brand new password")
        check("the page says the password changed", "password was changed" in first.find_element(By.ID, "status").text,
              first.find_element(By.ID, "status").text)
        check("the other sessions ended with it", all(api("GET", "/v1/verify", token=t)[0] == 401 for t in tokens))
        check("this browser is still signed in", first.find_element(By.ID, "who").text == user)
        check("the new password logs in", api("POST", "/v1/login", {"username": user, "password": "a brand new password"})[0] == 200)
        first.save_screenshot(os.path.join(SHOTS, "account-password-changed.png"))

        # Sign out everywhere: every session of the user ends, API ones included.
        first.find_element(By.ID, "sign-out-everywhere").click()
        wait_visible(first, "signed-out")
        check("sign out everywhere ends every session", all(api("GET", "/v1/verify", token=t)[0] == 401 for t in tokens))
        check("and clears this browser's cookie", not [c for c in first.get_cookies() if "session" in c["name"]])
    finally:
        first.quit()
        second.quit()



def test_two_step_verification_in_chromium(redis, instances, tmp_path, checks):
    """Turn TOTP on from the page (the secret and its otpauth:// link, a code from pyotp, the recovery codes once), sign
    in again with a code, be asked to confirm it's you once the login is older than REAUTH_MAX_AGE, turn it off."""
    service = instances.start(REDIS_URL=redis().url, ARGON2_MEMORY_KIB=1024, ARGON2_ITERATIONS=1, REAUTH_MAX_AGE=4)
    base = service.url.replace("127.0.0.1", "localhost")
    shots = os.environ.get("SCREENSHOTS") or str(tmp_path)
    username = "totp-" + uuid.uuid4().hex[:6]
    urllib.request.urlopen(urllib.request.Request(base + "/v1/users", method="POST", headers={"Content-Type": "application/json"},
                                                  data=json.dumps({"username": username, "password": PASSWORD}).encode()))
    instances.secrets.add(PASSWORD)
    driver = make_browser(str(tmp_path))
    try:
        def sign_in_with_password():
            driver.get(base + "/account")
            wait_visible(driver, "signed-out")
            driver.find_element(By.ID, "username").send_keys(username)
            driver.find_element(By.ID, "password").send_keys(PASSWORD)
            driver.find_element(By.ID, "sign-in").click()

        def status_text():
            return driver.find_element(By.ID, "status").text

        sign_in_with_password()
        wait_visible(driver, "signed-in")
        wait_visible(driver, "totp-off")
        driver.find_element(By.ID, "totp-enable").click()
        wait_visible(driver, "totp-enrol")
        secret = driver.find_element(By.ID, "totp-secret").text.replace(" ", "")
        uri = driver.find_element(By.ID, "totp-uri").get_attribute("href")
        instances.secrets.add(secret)
        checks("turning it on shows the secret and its otpauth:// link", len(secret) == 32 and uri.startswith("otpauth://totp/")
               and f"secret={secret}" in uri, uri.replace(secret, "<secret>"))
        driver.save_screenshot(os.path.join(shots, "account-totp-enrol.png"))
        totp = pyotp.TOTP(secret)
        driver.find_element(By.ID, "totp-confirm-code").send_keys(totp.now())
        driver.find_element(By.ID, "totp-confirm-submit").click()
        wait_visible(driver, "totp-recovery")
        codes = [item.text for item in driver.find_elements(By.CSS_SELECTOR, "#recovery-codes li")]
        instances.secrets.update(codes)
        checks("confirming with a pyotp code shows ten recovery codes once", len(codes) == 10, len(codes))
        driver.save_screenshot(os.path.join(shots, "account-totp-recovery-codes.png"))
        driver.find_element(By.ID, "recovery-saved").click()
        wait_visible(driver, "totp-on")
        checks("and then says it is on, the codes gone from the page",
               not driver.find_elements(By.CSS_SELECTOR, "#recovery-codes li"), status_text())

        # Sign out, sign in again: the password, then the code step.
        driver.find_element(By.ID, "sign-out").click()
        WebDriverWait(driver, 10).until(lambda d: not d.current_url.endswith("/account"))
        sign_in_with_password()
        wait_visible(driver, "totp-login")
        checks("the login form asks for a code, and the challenge left the address bar",
               "challenge=" not in driver.current_url and driver.current_url.endswith("/account?step=totp"), driver.current_url)
        driver.save_screenshot(os.path.join(shots, "account-totp-login.png"))
        driver.find_element(By.ID, "login-code").send_keys(totp.at(time.time() + 30))
        driver.find_element(By.ID, "verify-code").click()
        wait_visible(driver, "signed-in")
        cookie = driver.get_cookie("__Host-session")
        session = json.loads(urllib.request.urlopen(urllib.request.Request(
            base + "/v1/session", headers={"Cookie": f"__Host-session={cookie['value']}"})).read())
        instances.secrets.add(cookie["value"])
        checks.equal("signed in with the code: the session is aal2", ("aal2", ["pwd", "otp"]), (session["acr"], session["amr"]))

        # Later than REAUTH_MAX_AGE: turning the factor off asks to confirm it's you, then goes on.
        time.sleep(4.5)
        driver.find_element(By.ID, "totp-disable-code").send_keys(codes[0])
        driver.find_element(By.ID, "totp-disable-submit").click()
        wait_visible(driver, "reauthenticate")
        checks("an old login is asked to confirm it's you, with a code field", driver.find_element(By.ID, "reauth-code").is_displayed(),
               status_text())
        driver.save_screenshot(os.path.join(shots, "account-reauthenticate.png"))
        driver.find_element(By.ID, "reauth-password").send_keys(PASSWORD)
        driver.find_element(By.ID, "reauth-code").send_keys(codes[1])
        driver.find_element(By.ID, "reauth-submit").click()
        wait_visible(driver, "totp-off")
        checks("after confirming, the factor is turned off", "off" in status_text(), status_text())
        renewed = driver.get_cookie("__Host-session")["value"]
        instances.secrets.add(renewed)
        checks("re-authentication gave this browser a new session cookie", renewed != cookie["value"])
    finally:
        driver.quit()


def test_recent_activity_in_chromium(redis, instances, tmp_path, checks):
    """The account page's "Recent activity": a failed sign-in, sign-ins from two devices (the second one new), a sign-out
    from another device — each in words, with device, address and time, newest first."""
    service = instances.start(REDIS_URL=redis().url, ARGON2_MEMORY_KIB=1024, ARGON2_ITERATIONS=1, TRUSTED_PROXIES="127.0.0.1")
    base = service.url.replace("127.0.0.1", "localhost")
    shots = os.environ.get("SCREENSHOTS") or str(tmp_path)
    username = "activity-" + uuid.uuid4().hex[:6]
    instances.secrets.add(PASSWORD)

    def post(path, body, headers=None, token=None):
        headers = {"Content-Type": "application/json", **(headers or {})}
        if token:
            headers["Authorization"] = "Bearer " + token
        request = urllib.request.Request(base + path, method="POST", headers=headers, data=json.dumps(body).encode())
        try:
            with urllib.request.urlopen(request) as response:
                raw = response.read()
                return json.loads(raw) if raw else None
        except urllib.error.HTTPError:
            return None

    post("/v1/users", {"username": username, "password": PASSWORD})
    phone = {"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Mobile/15E148 "
                           "Safari/604.1", "X-Forwarded-For": "198.51.100.23"}
    token = post("/v1/login", {"username": username, "password": PASSWORD}, headers=phone)["token"]
    instances.secrets.add(token)
    post("/v1/logout", {}, headers=phone, token=token)
    post("/v1/login", {"username": username, "password": "not the password"}, headers={"X-Forwarded-For": "192.0.2.66"})
    driver = make_browser(str(tmp_path))
    try:
        driver.get(base + "/account")
        wait_visible(driver, "signed-out")
        driver.find_element(By.ID, "username").send_keys(username)
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "sign-in").click()
        wait_visible(driver, "signed-in")
        WebDriverWait(driver, 10).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#activity li")) >= 4)
        items = [li.text.replace("\n", " | ") for li in driver.find_elements(By.CSS_SELECTOR, "#activity li")]
        checks.measure(f"activity as shown: {items}")
        checks("newest first: this sign-in (Chrome on Linux, a new device), the failed one, the phone's sign-out and sign-in",
               len(items) == 4 and items[0].startswith("Signed in from a new device | Chrome on Linux")
               and items[1].startswith("Failed sign-in: wrong password") and "192.0.2.66" in items[1]
               and items[2].startswith("Signed out | Safari on iPhone") and items[3].startswith("Signed in from a new device | Safari on iPhone")
               and "198.51.100.23" in items[3], items)
        checks("times in words", all("just now" in item or "ago" in item for item in items), items)
        failed = driver.find_element(By.CSS_SELECTOR, "#activity li[data-type='login.failed'] .what")
        checks("a failed sign-in stands out", "notable" in failed.get_attribute("class"))
        driver.execute_script("document.getElementById('activity').scrollIntoView()")
        driver.save_screenshot(os.path.join(shots, "account-activity.png"))
    finally:
        driver.quit()
