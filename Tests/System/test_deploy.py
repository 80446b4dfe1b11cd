"""The deployment files, checked without a Docker engine (none runs on our build machines):

- the image: the Dockerfile's build stage is replayed in an empty folder holding exactly the paths its COPY lines bring
  (less what .dockerignore keeps out), so a path missing from the context fails here, not at `docker compose up`; the
  context must resolve and hold every target path the manifest names. The runtime stage is checked against the one
  binary the run built from the same sources (`SYSTEM_BIN_DIR`; the Swift runtime libraries it loads from the toolchain
  are left out: the image links them statically): every shared library it loads comes from a package the stage
  installs, their dependencies or the slim base (Priority: required, and apt's); the HEALTHCHECK's program is installed
  by the stage and the command passes against the binary on a throwaway Redis. IMAGE_BUILD=1 replays the stage's own
  RUN commands instead (a release build, ~8 minutes here) and checks that binary.
- docker-compose config (both files, both HA profiles), hadolint, nginx -t on the compose nginx config (service names
  pointed at 127.0.0.1), promtool on the Prometheus configuration, the Grafana provisioning as compose mounts it.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from support.processes import ROOT

TOOLS = Path(sys.executable).parent


def dockerfile(*question):
    result = subprocess.run([sys.executable, str(Path(__file__).parent / "support/dockerfile.py"), str(ROOT / "Dockerfile"),
                             *question], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def run(*command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, command))}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result.stdout


def package_of(path):
    for candidate in (path, os.path.realpath(path), path.removeprefix("/usr")):
        result = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if result.returncode == 0:
            return result.stdout.split(":")[0]
    return None


def test_the_image_builds_from_its_context_and_runs(redis, instances, binaries, tmp_path, checks):
    image = dockerfile("base-image")[0]
    local = re.search(r"Swift version (\d+\.\d+)", run("swift", "--version")).group(1)
    checks(f"the build stage's image ({image}) is this machine's Swift ({local})", image.startswith(f"swift:{local}-"))
    context = tmp_path / "context"
    for line in dockerfile("build-copies"):
        source, destination = line.split("\t")
        target = context / destination.lstrip("/")
        if destination.endswith("/"):  # into that folder, as COPY does
            target = target / Path(source).name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, target, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(ROOT / source, target)
    dockerfile("prune", str(context))
    binary_path = dockerfile("runtime-binary")[0]
    out = tmp_path / "image-bin"
    out.mkdir()
    if os.environ.get("IMAGE_BUILD") == "1":
        for command in dockerfile("build-commands"):
            # Only the install location differs: the image's binary path is redirected into this folder.
            run("bash", "-euo", "pipefail", "-c", command.replace(os.path.dirname(binary_path) + "/", f"{out}/"), cwd=context)
        toolchain = None
    else:
        run("swift", "package", "resolve", cwd=context)
        described = json.loads(run("swift", "package", "describe", "--type", "json", cwd=context))
        missing = [t["path"] for t in described["targets"] if not (context / t["path"]).is_dir()]
        checks(f"the context holds every target the manifest names ({len(described['targets'])})", not missing, missing)
        shutil.copy2(binaries["session-service"], out / os.path.basename(binary_path))
        toolchain = os.path.dirname(os.path.dirname(os.path.realpath(shutil.which("swift"))))
    binary = out / os.path.basename(binary_path)
    assert os.access(binary, os.X_OK), f"the build stage's commands left no {binary.name}"

    # The runtime stage: the binary's shared libraries against the stage's packages and what they depend on.
    required = run("dpkg-query", "-W", "-f=${Package} ${Priority}\n").splitlines()
    provided = {line.split()[0].split(":")[0] for line in required if line.endswith(" required")}
    depends = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
                              "--no-breaks", "--no-replaces", "--no-enhances", "apt", *dockerfile("runtime-packages")],
                             capture_output=True, text=True).stdout
    provided |= {line.split(":")[0] for line in depends.splitlines() if line and not line.startswith(" ") and "<" not in line}
    unprovided, checked = [], []
    for line in run("ldd", str(binary)).splitlines():
        parts = line.split()
        library, path = (parts[0], parts[2]) if "=>" in line else (parts[0], parts[0])
        if not path.startswith("/") and path != "not":
            continue
        if toolchain and os.path.realpath(path).startswith(toolchain + "/"):
            continue
        owner = package_of(path) if path != "not" else None
        checked.append(f"{library} <- {owner}")
        if owner not in provided:
            unprovided.append(f"{library} ({path}) from {owner or 'no package'}")
    checks(f"every shared library the binary loads ({len(checked)} outside the toolchain) comes from the runtime stage's "
           "packages", checked and not unprovided, unprovided or checked)

    health = dockerfile("healthcheck")
    owner = package_of(shutil.which(health[0]))
    checks(f"the HEALTHCHECK's {health[0]} is installed by the runtime stage ({owner})", owner in provided)
    service = instances.start(name="health", binary=binary, REDIS_URL=redis().url)
    # The image listens on 8080; here it is the instance's port.
    result = subprocess.run([word.replace(":8080/", f":{service.port}/") for word in health], capture_output=True)
    checks("the HEALTHCHECK command passes against the built binary", result.returncode == 0, result.returncode)


def test_the_deployment_files(tmp_path, checks):
    for arguments in (["-f", "docker-compose.yml"], ["-f", "docker-compose.ha.yml", "--profile", "sentinel"],
                      ["-f", "docker-compose.ha.yml", "--profile", "cluster"]):
        result = subprocess.run(["docker-compose", *arguments, "config", "-q"], cwd=ROOT, capture_output=True, text=True)
        checks(f"docker-compose {' '.join(arguments)} config", result.returncode == 0, result.stderr[-500:])
    result = subprocess.run([str(TOOLS / "hadolint"), "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    checks("hadolint Dockerfile", result.returncode == 0, result.stdout[-1000:])

    text = (ROOT / "deploy/nginx/docker/nginx.conf").read_text()
    text = re.sub(r"(app[123]|backend):", "127.0.0.1:", text).replace("listen 80;", "listen 127.0.0.1:18080;")
    temp = " ".join(f"{kind}_temp_path {tmp_path}/{kind[0]};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    text = text.replace("http {", f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;\nhttp {{\n    {temp}", 1)
    (tmp_path / "nginx.conf").write_text(text)
    result = subprocess.run(["nginx", "-t", "-q", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
                            capture_output=True, text=True)
    checks("nginx -t deploy/nginx/docker/nginx.conf", result.returncode == 0, result.stderr[-500:])
    result = subprocess.run(["promtool", "check", "config", "deploy/prometheus/prometheus.yml"], cwd=ROOT,
                            capture_output=True, text=True)
    checks("promtool check config deploy/prometheus/prometheus.yml", result.returncode == 0, result.stdout[-500:])

    # Grafana provisioning and the dashboard as compose mounts them.
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in services["grafana"]["volumes"]}
    datasources = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"]
    providers = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/session-service.yml").read_text())["providers"]
    checks("compose mounts Grafana's provisioning", mounts.get("/etc/grafana/provisioning") == "./deploy/grafana/provisioning",
           mounts)
    checks("compose mounts the dashboards where the provider reads them",
           mounts.get(providers[0]["options"]["path"]) == "./deploy/grafana/dashboards", (mounts, providers))
    checks("the datasource is compose's Prometheus", datasources[0]["url"] == "http://prometheus:9090" and "prometheus" in services,
           datasources)
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    scraped = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
    apps = sorted(name for name, service in services.items() if service.get("image") == "session-service:latest")
    checks("Prometheus scrapes every instance compose runs", sorted(t.split(":")[0] for t in scraped) == apps, (scraped, apps))
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/session-service.json").read_text())
    uids = {d["uid"] for d in datasources}
    bad = [panel["title"] for panel in dashboard["panels"]
           if panel["datasource"]["uid"] not in uids or not panel["targets"]
           or not all(t["expr"].strip() and t["datasource"]["uid"] in uids for t in panel["targets"])]
    checks(f"every one of the dashboard's {len(dashboard['panels'])} panels queries the provisioned datasource", not bad, bad)
