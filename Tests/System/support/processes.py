"""The real processes the system tests run, as plain processes on loopback: ports, redis-server, service instances,
nginx, the HA shapes (through scripts/lib/test-servers, the one definition the Swift tests use too), and the one
readiness wait. Every process is a child of the test process and dies with it (PR_SET_PDEATHSIG), so an interrupted run
leaves nothing behind; the fixtures in conftest.py stop them after each test.
"""

import ctypes
import os
import random
import re
import resource
import shlex
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _dies_with_parent(open_files=None):
    def prepare():
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if open_files:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    return prepare


class Ports:
    """The one port allocator: a TCP port on 127.0.0.1 that nothing uses now, below the kernel's ephemeral range (which
    it hands out as source ports: a port taken from there can be some client's by the time a server binds it), never the
    same one twice in a run. With `bus=True`, port + 10000 is free too (a cluster node's bus port)."""

    def __init__(self):
        low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
        self.candidates = list(range(max(1024, low - 12000 - 10000), low - 10000))
        random.shuffle(self.candidates)
        self.given = set()

    @staticmethod
    def _free(port):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return True
            except OSError:
                return False

    def __call__(self, bus=False):
        while self.candidates:
            port = self.candidates.pop()
            if port in self.given or (bus and port + 10000 in self.given):
                continue
            if self._free(port) and (not bus or self._free(port + 10000)):
                self.given.update({port, port + 10000} if bus else {port})
                return port
        raise RuntimeError("no free port below the ephemeral range")


def wait_http(url, seconds=30, status=200):
    """The one readiness wait: until `url` answers `status`; raises with what it saw last."""
    deadline, last = time.monotonic() + seconds, None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == status:
                    return
                last = response.status
        except urllib.error.HTTPError as error:
            last = error.code
        except OSError as error:
            last = error
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer {status} within {seconds} s (last: {last})")


def stop(process, seconds=5):
    """SIGTERM, then SIGKILL after `seconds`; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGCONT)
        process.terminate()
        try:
            return process.wait(seconds)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


class RedisServer:
    """One redis-server (no persistence unless asked), its data and log in its own folder."""

    def __init__(self, folder, port, *arguments, password=None):
        self.folder, self.port, self.arguments, self.password = Path(folder), port, list(arguments), password
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = None
        self.start()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
                   "--save", "", "--logfile", str(self.folder / "redis.log"), *self.arguments]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, preexec_fn=_dies_with_parent())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server on {self.port} exited (see {self.folder}/redis.log)")
            if re.search(r"PONG|NOAUTH", self.cli("PING")):
                return self
            time.sleep(0.05)
        raise TimeoutError(f"redis-server on {self.port} did not start")

    def cli(self, *command):
        env = dict(os.environ, REDISCLI_AUTH=self.password) if self.password else os.environ
        result = subprocess.run(["redis-cli", "--no-auth-warning", "-p", str(self.port), *map(str, command)],
                                capture_output=True, text=True, env=env, timeout=10)
        return result.stdout.strip() + result.stderr.strip()

    def shutdown(self):
        """A clean SHUTDOWN (an AOF is written), waited for."""
        self.cli("SHUTDOWN")
        self.process.wait(10)

    def stop(self):
        stop(self.process)


class Instance:
    """One session-service (or orders-example) process; its log is JSON (LOG_FORMAT=json) in its folder."""

    def __init__(self, folder, binary, port, env, open_files=None, ready_path="/readyz"):
        self.folder, self.binary, self.port, self.env = Path(folder), str(binary), port, dict(env)
        self.open_files, self.ready_path = open_files, ready_path
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log = self.folder / "service.log"
        self.process = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self):
        return self.process.pid

    @property
    def name(self):
        return self.folder.name

    def command(self):
        """The environment and binary, as one shell command (what a test that restarts it by hand runs)."""
        return " ".join(shlex.quote(f"{k}={v}") for k, v in self.full_env().items()) + " " + shlex.quote(self.binary)

    def full_env(self):
        return {"PORT": str(self.port), "HOST": "127.0.0.1", "LOG_FORMAT": "json",
                # Suites register many users from one address: the registration throttle is lifted unless set.
                "REGISTRATION_MAX_PER_ADDRESS": "1000000", **self.env}

    def start(self, wait=True):
        with open(self.log, "a") as log:
            self.process = subprocess.Popen([self.binary], env={**os.environ, **self.full_env()}, stdout=log,
                                            stderr=subprocess.STDOUT, preexec_fn=_dies_with_parent(self.open_files))
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, seconds=30):
        try:
            wait_http(self.url + self.ready_path, seconds)
        except TimeoutError:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.binary} on {self.port} is not ready; its log ends:\n{tail}") from None

    def restart(self, **env):
        self.stop()
        self.env.update(env)
        return self.start()

    def kill(self, sig=signal.SIGKILL):
        self.process.send_signal(sig)
        return self.process.wait(10)

    def stop(self):
        return stop(self.process) if self.process else None

    def alive(self):
        return self.process is not None and self.process.poll() is None


class Nginx:
    """deploy/nginx/cluster.conf.template filled in (listen port, upstream instances) and run as a plain process."""

    def __init__(self, folder, port, upstream_ports, template=ROOT / "deploy/nginx/cluster.conf.template"):
        self.folder, self.port = Path(folder), port
        (self.folder / "tmp").mkdir(parents=True, exist_ok=True)
        servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in upstream_ports)
        text = Path(template).read_text().replace("@LISTEN@", str(port)).replace("@STATE@", str(self.folder))
        self.conf = self.folder / "nginx.conf"
        self.conf.write_text(text.replace("@SERVERS@", servers))
        subprocess.run(["nginx", "-t", "-q", "-c", str(self.conf), "-p", str(self.folder)], check=True,
                       capture_output=True)
        # Not daemonized, so it is this process's child and dies with it.
        self.process = subprocess.Popen(["nginx", "-c", str(self.conf), "-p", str(self.folder), "-g", "daemon off;"],
                                        stderr=subprocess.DEVNULL, preexec_fn=_dies_with_parent())
        wait_http(self.url + "/healthz", 10)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        stop(self.process)


class Shape:
    """A private Sentinel or Cluster shape started by scripts/lib/test-servers (the Swift tests' own definition),
    as the service's least-privilege ACL user `session-service`/`svc-pass`; a drill may kill, freeze and restart its
    nodes (each node's folder holds its `restart` command)."""

    DATA_PASSWORD, SENTINEL_PASSWORD = "ha-data-pass", "ha-sentinel-pass"

    def __init__(self, folder, kind):
        self.folder, self.kind = Path(folder), kind
        result = subprocess.run([str(ROOT / "scripts/lib/test-servers"), str(self.folder), str(os.getpid()), kind],
                                capture_output=True, text=True, timeout=180)
        if result.returncode != 0:
            raise RuntimeError(f"test-servers {kind} failed:\n{result.stderr[-3000:]}")
        self.variables = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
        url = self.variables["TEST_SENTINEL_URL" if kind == "sentinel" else "TEST_CLUSTER_URL"]
        self.ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", url)]
        # The service's URL: the ACL user instead of the data password.
        self.service_url = url.replace(f":{self.DATA_PASSWORD}@", "session-service:svc-pass@")
        self.state = self.folder / kind

    def stop(self):
        pids = []
        for pidfile in self.folder.rglob("redis.pid"):
            try:
                pid = int(pidfile.read_text())
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGTERM)
                pids.append(pid)
            except (ValueError, OSError):
                pass
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if _alive(p)]
            time.sleep(0.1)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


# The least-privilege Redis ACL the service needs (README: "Redis ACL"), as scripts/lib/common.sh spells it for bash.
def service_acl(user="session-service", password="svc-pass"):
    text = subprocess.run(["bash", "-c", f"source '{ROOT}/scripts/lib/common.sh' && service_acl_args {user} {password}"],
                          capture_output=True, text=True, check=True).stdout
    return text.splitlines()
