"""Passwords with real processes: Argon2id hashes that PyPI's argon2-cffi reads and writes, bcrypt hashes (and hashes
from before NFC) rehashed by a successful login, Unicode normalisation, the password rules, and the hashing pool's
memory bound and fairness under a flood of Argon2id hashes from one address.
"""
import base64
import hashlib
import hmac
import subprocess
import threading
import time
import unicodedata
import uuid

import argon2
import bcrypt
import pytest
from support.client import call
from support.processes import Shape

PASSWORD = "tr0ub4dor & three"
OWASP = dict(time_cost=2, memory_cost=19456, parallelism=1)


def legacy_bcrypt(password, rounds=4):
    """A hash as the service stored it before NFC: bcrypt of base64(HMAC-SHA-256(password as typed))."""
    prehash = base64.b64encode(hmac.new(b"session-service/password-prehash/v1", password.encode(), hashlib.sha256).digest())
    return "bcrypt-hs256$" + bcrypt.hashpw(prehash, bcrypt.gensalt(rounds=rounds, prefix=b"2b")).decode()


@pytest.mark.parametrize("kind", ["node", "cluster"])
def test_argon2id_interoperates_and_old_hashes_are_rehashed(kind, redis, shape, instances, checks):
    if kind == "node":
        server = redis()
        url, cli = server.url, server.cli
    else:
        cluster = shape("cluster")
        url = cluster.service_url

        def cli(*command):
            result = subprocess.run(["redis-cli", "-c", "--no-auth-warning", "-a", Shape.DATA_PASSWORD, "-p", str(cluster.ports[0]),
                                     *map(str, command)], capture_output=True, text=True, timeout=10)
            return result.stdout.strip()
    # The defaults: Argon2id at OWASP's baseline.
    service = instances.start(REDIS_URL=url)

    def register(password=PASSWORD):
        name = f"pw-{uuid.uuid4().hex[:10]}"
        status, _, body = call("POST", f"{service.url}/v1/users", {"username": name, "password": password})
        assert status == 201, (status, body)
        return name, body["user_id"]

    def stored(user_id):
        return cli("HGET", f"ss:u:{user_id}", "pw")

    def login(name, password=PASSWORD):
        return call("POST", f"{service.url}/v1/login", {"username": name, "password": password})[0]

    name, user_id = register()
    ours = stored(user_id)
    instances.secrets.update({PASSWORD, ours})
    checks("a new hash is an Argon2id PHC string at OWASP's baseline", ours.startswith("$argon2id$v=19$m=19456,t=2,p=1$"),
           ours.split("$")[1:4])
    checks("argon2-cffi verifies the service's hash", argon2.PasswordHasher(**OWASP).verify(ours, PASSWORD))
    checks("argon2-cffi sees no need to rehash it (same parameters)", not argon2.PasswordHasher(**OWASP).check_needs_rehash(ours))
    checks.equal("login with it", 200, login(name))

    # The reverse: a hash argon2-cffi made, at the same parameters and at others.
    theirs = argon2.PasswordHasher(**OWASP).hash(PASSWORD)
    cli("HSET", f"ss:u:{user_id}", "pw", theirs)
    checks.equal("login with argon2-cffi's hash", 200, login(name))
    checks("a hash made as configured is kept", stored(user_id) == theirs)
    costlier = argon2.PasswordHasher(time_cost=3, memory_cost=8192, parallelism=2).hash(PASSWORD)
    cli("HSET", f"ss:u:{user_id}", "pw", costlier)
    instances.secrets.update({theirs, costlier})
    checks.equal("login with argon2-cffi's hash of other parameters (m=8192, t=3, p=2)", 200, login(name))
    rehashed = stored(user_id)
    instances.secrets.add(rehashed)
    checks("that login rehashed it to the configured parameters", rehashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$"),
           rehashed.split("$")[1:4])
    checks.equal("wrong password against an argon2-cffi hash", 401, login(name, PASSWORD + "x"))

    # A bcrypt hash from before NFC, of a password typed decomposed: verified as made, then rehashed over NFC.
    decomposed = unicodedata.normalize("NFD", "Crème brûlée à la carte")
    composed = unicodedata.normalize("NFC", decomposed)
    name, user_id = register()
    old = legacy_bcrypt(decomposed)
    cli("HSET", f"ss:u:{user_id}", "pw", old)
    instances.secrets.update({decomposed, composed, old})
    checks.equal("a pre-NFC bcrypt hash refuses the composed form it was not made from", 401, login(name, composed))
    checks.equal("and accepts the password as it was typed", 200, login(name, decomposed))
    new = stored(user_id)
    instances.secrets.add(new)
    checks("that login rehashed it to Argon2id", new.startswith("$argon2id$v=19$m=19456,t=2,p=1$"), new[:40])
    checks("argon2-cffi verifies the rehash over the NFC form", argon2.PasswordHasher().verify(new, composed))
    checks.equal("now the composed form logs in", 200, login(name, composed))
    checks.equal("and the decomposed one still does", 200, login(name, decomposed))
    checks("the next login left the hash alone", stored(user_id) == new)

    # NFC from the start: registered composed, logs in decomposed.
    name, _ = register("Ångström façade 2024")
    checks.equal("registered composed, login decomposed", 200, login(name, unicodedata.normalize("NFD", "Ångström façade 2024")))

    # Unknown user and wrong password: the same answer.
    unknown = call("POST", f"{service.url}/v1/login", {"username": "nobody-" + uuid.uuid4().hex[:8], "password": PASSWORD})
    wrong = call("POST", f"{service.url}/v1/login", {"username": name, "password": PASSWORD + "!"})
    checks("unknown user and wrong password answer alike", (unknown[0], unknown[2]) == (wrong[0], wrong[2]) and unknown[0] == 401,
           (unknown[0], unknown[2], wrong[0], wrong[2]))


def test_bcrypt_stays_available_and_rehashes_to_it(redis, instances, checks):
    server = redis()
    service = instances.start(REDIS_URL=server.url, PASSWORD_HASH="bcrypt", BCRYPT_COST=5)
    status, _, body = call("POST", f"{service.url}/v1/users", {"username": "bcrypt-user", "password": PASSWORD})
    hash_ = server.cli("HGET", f"ss:u:{body['user_id']}", "pw")
    instances.secrets.update({PASSWORD, hash_})
    checks("PASSWORD_HASH=bcrypt stores bcrypt of the NFC pre-hash", status == 201 and hash_.startswith("bcrypt-nfc$$2b$05$"), hash_[:20])
    argon = argon2.PasswordHasher(**OWASP).hash(PASSWORD)
    server.cli("HSET", f"ss:u:{body['user_id']}", "pw", argon)
    instances.secrets.add(argon)
    status = call("POST", f"{service.url}/v1/login", {"username": "bcrypt-user", "password": PASSWORD})[0]
    after = server.cli("HGET", f"ss:u:{body['user_id']}", "pw")
    instances.secrets.add(after)
    checks("an Argon2id hash logs in under bcrypt and is rehashed to bcrypt", status == 200 and after.startswith("bcrypt-nfc$$2b$05$"),
           (status, after[:20]))


def test_the_password_rules(redis, instances, checks):
    service = instances.start(REDIS_URL=redis().url, PASSWORD_MIN_LENGTH=12, ARGON2_MEMORY_KIB=1024, ARGON2_ITERATIONS=1,
                              REGISTRATION_MAX_PER_ADDRESS=1000)

    def refusal(username, password):
        status, _, body = call("POST", f"{service.url}/v1/users", {"username": username, "password": password})
        return status, (body or {}).get("error"), (body or {}).get("message")

    for password, rule in (("eleven char", "password must be at least 12 characters"),
                           ("x" * 257, "password must be at most 256 characters"),
                           ("QWERTY123456", "password is one of the 10,000 most common passwords"),
                           ("1qaz2wsx3edc", "password is one of the 10,000 most common passwords"),
                           ("Rule.Tester@Example", "password must not be the username")):
        checks.equal(f"registration with {password[:20]!r}", (400, "invalid_request", rule), refusal("rule.tester@example", password))
    # Twelve characters, counted as Unicode scalars of the NFC form: twelve decomposed é are twelve, not 24.
    checks.equal("twelve decomposed é are twelve characters", 201,
                 call("POST", f"{service.url}/v1/users", {"username": "rule-nfc", "password": "e\u0301" * 12})[0])
    status, _, body = call("POST", f"{service.url}/v1/users", {"username": "rule-ok", "password": "a long passphrase"})
    token = call("POST", f"{service.url}/v1/login", {"username": "rule-ok", "password": "a long passphrase"})[2]["token"]
    status, _, body = call("POST", f"{service.url}/v1/password", {"current_password": "a long passphrase", "new_password": "leavemealone"},
                           headers={"Authorization": f"Bearer {token}"})
    checks.equal("a password change to a common password", (400, "password is one of the 10,000 most common passwords"),
                 (status, (body or {}).get("message")))


@pytest.mark.alone
def test_argon2id_memory_stays_within_threads_times_memory_and_the_pool_stays_fair(redis, instances, checks):
    """HASH_THREADS=2 × 64 MiB: a flood of 40 concurrent registrations from one address may raise the process' memory by
    about 128 MiB and no more, gets 503 + Retry-After beyond its share, and a login from another address still gets in."""
    memory_kib, threads = 65536, 2
    service = instances.start(REDIS_URL=redis().url, ARGON2_MEMORY_KIB=memory_kib, HASH_THREADS=threads,
                              TRUSTED_PROXIES="127.0.0.1", REGISTRATION_MAX_PER_ADDRESS=1000000, LOG_LEVEL="warning")
    call("POST", f"{service.url}/v1/users", {"username": "quiet-user", "password": PASSWORD},
         headers={"X-Forwarded-For": "10.0.0.2"})

    def rss_mib():
        with open(f"/proc/{service.pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024

    # Quiet first: the decoy hash the instance makes at start (64 MiB here) may still be running beside the registration.
    time.sleep(1)
    samples = []
    for _ in range(10):
        samples.append(rss_mib())
        time.sleep(0.05)
    base, peak, sampling = min(samples), [0.0], [True]

    def sample():
        while sampling[0]:
            peak[0] = max(peak[0], rss_mib())
            time.sleep(0.005)

    answers = []

    def flood(i):
        status, headers, _ = call("POST", f"{service.url}/v1/users", {"username": f"flood-{i}", "password": PASSWORD},
                                  headers={"X-Forwarded-For": "10.0.0.1"})
        answers.append((status, headers.get("Retry-After") if headers else None))

    sampler = threading.Thread(target=sample)
    sampler.start()
    floods = [threading.Thread(target=flood, args=(i,)) for i in range(40)]
    for thread in floods:
        thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    quiet = call("POST", f"{service.url}/v1/login", {"username": "quiet-user", "password": PASSWORD},
                 headers={"X-Forwarded-For": "10.0.0.2"})[0]
    quiet_seconds = time.monotonic() - started
    for thread in floods:
        thread.join()
    sampling[0] = False
    sampler.join()
    grew = peak[0] - base
    bound = threads * memory_kib / 1024
    checks.measure(f"RSS {base:.0f} MiB before, {peak[0]:.0f} MiB at the peak (+{grew:.0f}); bound {bound:.0f} MiB")
    checks("the flood raised memory by more than one hash's 64 MiB (both threads hashed at once)", grew > bound / 2 + 8, f"+{grew:.0f} MiB")
    checks(f"and by no more than {threads} × 64 MiB (+32 MiB of slack)", grew < bound + 32, f"+{grew:.0f} MiB")
    statuses = sorted({status for status, _ in answers})
    checks("every flood answer is 201 or 503", set(statuses) <= {201, 503} and len(answers) == 40, statuses)
    refused = [retry for status, retry in answers if status == 503]
    checks("beyond its share the address gets 503 with Retry-After", refused and all(refused), f"{len(refused)} refused")
    checks(f"a login from another address got in during the flood ({quiet_seconds:.2f} s)", quiet == 200, quiet)
