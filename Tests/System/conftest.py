"""Fixtures of the system tests: real redis-servers, Sentinel and Cluster shapes, service instances, nginx, an OTLP
receiver and Prometheus, each started for the test that asks and stopped after it (support/processes.py).

The binaries: `SYSTEM_BIN_DIR` (scripts/test sets it to the folder of the build it just made); unset, the products are
built here first (`swift build`, debug) and a failed build stops the run — a stale binary is never used.

After every test, each session-service instance's log is checked (support/logcheck.py): one JSON entry per line with
the required fields, no credential the test used (`instances.secrets`) or that looks like one; `checks` is the soft
assertion a suite of many named checks uses (each printed, all counted, any failure fails the test).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from support.logcheck import check_logs  # noqa: E402
from support.processes import ROOT, Instance, Nginx, Ports, RedisServer, Shape, wait_http  # noqa: E402

PRODUCTS = ("session-service", "orders-example", "session-bench")


@pytest.fixture(scope="session")
def binaries():
    folder = os.environ.get("SYSTEM_BIN_DIR")
    if not folder:
        for product in PRODUCTS:
            result = subprocess.run(["swift", "build", "--product", product], cwd=ROOT, capture_output=True, text=True)
            if result.returncode != 0:
                pytest.exit(f"swift build --product {product} failed:\n{result.stdout[-4000:]}{result.stderr[-2000:]}", 2)
        folder = subprocess.run(["swift", "build", "--show-bin-path"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
    paths = {product: Path(folder) / product for product in PRODUCTS}
    missing = [str(p) for p in paths.values() if not os.access(p, os.X_OK)]
    if missing:
        pytest.exit(f"no binary at {', '.join(missing)} (SYSTEM_BIN_DIR={folder})", 2)
    return paths


@pytest.fixture(scope="session")
def ports():
    return Ports()


class Checks:
    """Named checks of one test: each printed as it is made; the test fails after its last one if any failed."""

    def __init__(self, prefix):
        self.prefix, self.results = prefix, []

    def __call__(self, name, ok, detail=""):
        self.results.append((name, bool(ok), detail))
        shown = str(detail) if not ok else str(detail)[:120]  # a passed check's detail is a hint, a failed one's evidence
        print(f"{self.prefix}: {'ok  ' if ok else 'FAIL'} {name}{' — ' + shown if shown else ''}", flush=True)
        return bool(ok)

    def equal(self, name, expected, actual):
        return self(name, expected == actual, "" if expected == actual else f"expected {expected!r}, got {actual!r}")

    def measure(self, text):
        print(f"{self.prefix}: measure {text}", flush=True)

    @property
    def failed(self):
        return [name for name, ok, _ in self.results if not ok]


@pytest.fixture
def checks(request, record_property):
    collected = Checks(request.node.name)
    yield collected
    record_property("checks", len(collected.results))
    record_property("failed_checks", len(collected.failed))
    print(f"{request.node.name}: {len(collected.results) - len(collected.failed)} passed, {len(collected.failed)} failed")
    if collected.failed:
        pytest.fail(f"{len(collected.failed)} of {len(collected.results)} checks failed: {'; '.join(collected.failed)}",
                    pytrace=False)


@pytest.fixture
def redis(tmp_path, ports):
    """redis(*redis-server arguments, password=None) → a started RedisServer, stopped after the test."""
    started = []

    def start(*arguments, password=None, name=None):
        server = RedisServer(tmp_path / (name or f"redis-{len(started) + 1}"), ports(), *arguments, password=password)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


class Instances:
    """Starts session-service instances (and the orders example) for one test; after it, stops them and checks every
    session-service log."""

    def __init__(self, folder, ports, binaries):
        self.folder, self.ports, self.binaries = folder, ports, binaries
        self.started, self.secrets, self.expect_requests = [], set(), 0

    def start(self, name=None, binary="session-service", wait=True, open_files=None, **env):
        """binary: a product's name, or a path to one."""
        name = name or f"instance-{len(self.started) + 1}"
        path = Path(self.binaries.get(binary, binary))
        instance = Instance(self.folder / name, path, self.ports(), {k: str(v) for k, v in env.items()},
                            open_files=open_files, ready_path="/readyz" if path.name == "session-service" else "/healthz")
        instance.product = path.name
        self.started.append(instance)
        return instance.start(wait=wait)

    def logs(self):
        return [i.log for i in self.started if i.product == "session-service" and i.log.exists()]


@pytest.fixture
def instances(tmp_path, ports, binaries):
    started = Instances(tmp_path, ports, binaries)
    yield started
    for instance in started.started:
        instance.stop()
    logs = started.logs()
    summary, bad = check_logs(logs, started.secrets, started.expect_requests)
    print(summary)
    if bad:
        pytest.fail("the instances' logs:\n" + "\n".join(bad), pytrace=False)


@pytest.fixture
def nginx(tmp_path, ports):
    """nginx(instances) → nginx load-balancing them with the auth_request locations of the cluster template."""
    started = []

    def start(upstream):
        server = Nginx(tmp_path / f"nginx-{len(started) + 1}", ports(), [i.port for i in upstream])
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def shape(tmp_path):
    """shape("sentinel" | "cluster") → a private shape (its own servers, free to be killed and frozen)."""
    started = []

    def start(kind):
        started.append(Shape(tmp_path / f"shape-{kind}", kind))
        return started[-1]

    yield start
    for one in started:
        one.stop()


@pytest.fixture
def otlp(tmp_path, ports):
    """An OTLP/HTTP trace receiver (support/otlp_receiver.py): (endpoint URL, the JSON-lines file of received spans)."""
    port, spans = ports(), tmp_path / "spans.jsonl"
    receiver = subprocess.Popen([sys.executable, str(Path(__file__).parent / "support/otlp_receiver.py"), str(port),
                                 str(spans)], stdout=subprocess.DEVNULL, stderr=open(tmp_path / "receiver.log", "w"))
    yield f"http://127.0.0.1:{port}", spans
    receiver.terminate()
    receiver.wait(5)


@pytest.fixture
def prometheus(tmp_path, ports):
    """prometheus(instances) → the URL of Debian's Prometheus scraping them every second, with the compose file's job."""
    started = []

    def start(targets):
        folder = tmp_path / "prometheus"
        folder.mkdir()
        text = (ROOT / "deploy/prometheus/prometheus.yml").read_text().replace("scrape_interval: 5s", "scrape_interval: 1s")
        listed = ", ".join(f'"127.0.0.1:{i.port}"' for i in targets)
        text = text.replace('["app1:8080", "app2:8080", "app3:8080"]', f"[{listed}]")
        (folder / "prometheus.yml").write_text(text)
        subprocess.run(["promtool", "check", "config", str(folder / "prometheus.yml")], check=True, capture_output=True)
        port = ports()
        started.append(subprocess.Popen(
            ["prometheus", f"--config.file={folder}/prometheus.yml", f"--storage.tsdb.path={folder}/data",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=open(folder / "log", "w")))
        wait_http(f"http://127.0.0.1:{port}/-/ready", 30)
        return f"http://127.0.0.1:{port}"

    yield start
    for process in started:
        process.terminate()
        process.wait(10)
