#!/usr/bin/env bash
# compose_config_test.sh [BUILD_DIR]: checks the deployment files without running them.
#   1. `docker-compose -f orchestration/docker-compose.yml config -q` (or `docker compose`):
#      the file is valid for Compose. This needs no Docker daemon.
#   2. The resolved file (`config` output) has the stack glassbox needs: the services
#      roudi, bus, the seven glassbox services, prometheus, grafana; every glassbox process
#      with restart: unless-stopped and host networking, in RouDi's IPC and PID namespaces,
#      with the state and tmp volumes and the config; /dev/kvm for vm-supervisor; roudi (and
#      bus) before the services; every bind-mounted file or folder present in the repo.
#   3. orchestration/compose/glassbox.toml parses as TOML (python3 tomllib) with
#      [metrics] base_port = 9470 and [compositor] window = "off"; when BUILD_DIR (default
#      <repo>/build) holds glassbox-vm-supervisor, glassbox's own parser loads it too
#      (--print-qemu-cmdline: reads the config, prints QEMU's command line, starts nothing).
# Without docker-compose and `docker compose` steps 1 and 2 print SKIP; exit 0 then if step
# 3 passes. Exit 1 on any failure, each one named on stderr.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${1:-$root/build}
compose_file=$root/orchestration/docker-compose.yml
toml=$root/orchestration/compose/glassbox.toml
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

dc=()
if command -v docker-compose >/dev/null 2>&1; then
  dc=(docker-compose)
elif command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
  dc=(docker compose)
fi

if ((${#dc[@]})); then
  echo "compose_config_test: ${dc[*]} -f orchestration/docker-compose.yml config -q"
  (cd "$root" && "${dc[@]}" -f "$compose_file" config -q)
  (cd "$root" && "${dc[@]}" -f "$compose_file" config) >"$tmp/resolved.yml"
  python3 - "$tmp/resolved.yml" "$root" <<'PY'
import os
import sys

try:
    import yaml  # Debian python3-yaml (a dependency of Debian's docker-compose)
except ImportError:
    print("compose_config_test: note: PyYAML not installed (Debian package python3-yaml);"
          " resolved stack not checked")
    sys.exit(0)

resolved, root = sys.argv[1], sys.argv[2]
with open(resolved, encoding="utf-8") as fh:
    doc = yaml.safe_load(fh)
services = doc.get("services") or {}
errors = []

GLASSBOX = ["vm-supervisor", "ram-snapshotter", "semantic-db", "trace-consumer",
            "pattern-miner", "smt-synthesizer", "compositor"]
PROCESSES = ["roudi", "bus"] + GLASSBOX
for name in PROCESSES + ["prometheus", "grafana"]:
    if name not in services:
        errors.append(f"service {name} missing")


def targets(svc):
    """Volume mounts as (source, target) pairs, from short or long syntax."""
    out = []
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            out.append((str(v.get("source", "")), str(v.get("target", ""))))
        else:
            parts = str(v).split(":")
            out.append((parts[0], parts[1] if len(parts) > 1 else parts[0]))
    return out


def depends(svc):
    d = svc.get("depends_on") or {}
    return set(d) if isinstance(d, (dict, list)) else set()


for name in PROCESSES:
    svc = services.get(name)
    if svc is None:
        continue
    if svc.get("restart") != "unless-stopped":
        errors.append(f"{name}: restart is {svc.get('restart')!r}, expected unless-stopped")
    if svc.get("network_mode") != "host":
        errors.append(f"{name}: network_mode is {svc.get('network_mode')!r}, expected host")
    mounted = {t for _, t in targets(svc)}
    for need in ("/state", "/tmp", "/etc/glassbox/glassbox.toml"):
        if need not in mounted:
            errors.append(f"{name}: nothing mounted at {need}")
    if name == "roudi":
        if svc.get("ipc") != "shareable":
            errors.append(f"roudi: ipc is {svc.get('ipc')!r}, expected shareable")
        if not svc.get("shm_size"):
            errors.append("roudi: no shm_size (the stack's /dev/shm)")
    else:
        for ns in ("ipc", "pid"):
            if svc.get(ns) != "service:roudi":
                errors.append(f"{name}: {ns} is {svc.get(ns)!r}, expected service:roudi")
        if "roudi" not in depends(svc):
            errors.append(f"{name}: does not depend on roudi")
        if name != "bus" and "bus" not in depends(svc):
            errors.append(f"{name}: does not depend on bus")

vm = services.get("vm-supervisor") or {}
if not any(str(d).endswith(":/dev/kvm") or str(d) == "/dev/kvm" for d in vm.get("devices") or []):
    errors.append("vm-supervisor: /dev/kvm is not passed through (devices)")

# Every bind mount's source must exist in the repository (resolved paths are absolute).
for name, svc in services.items():
    for source, target in targets(svc):
        if source.startswith("/") and not os.path.exists(source):
            errors.append(f"{name}: bind mount source {source} (for {target}) does not exist")

prom = services.get("prometheus") or {}
if not any(t == "/etc/prometheus/glassbox.yml" for _, t in targets(prom)):
    errors.append("prometheus: dashboards/prometheus/glassbox.yml not mounted")
graf = services.get("grafana") or {}
if not any(t == "/etc/grafana/provisioning" for _, t in targets(graf)):
    errors.append("grafana: provisioning folder not mounted")

for e in errors:
    print(f"compose_config_test: FAIL: {e}", file=sys.stderr)
if errors:
    sys.exit(1)
print(f"compose_config_test: resolved stack OK ({len(services)} services)")
PY
else
  echo "compose_config_test: SKIP: neither docker-compose nor 'docker compose' is installed" \
       "(Debian package docker-compose); compose file not validated"
fi

# 3. the config the containers use
python3 - "$toml" <<'PY'
import sys
import tomllib

path = sys.argv[1]
with open(path, "rb") as fh:
    cfg = tomllib.load(fh)
errors = []
if cfg.get("metrics", {}).get("base_port") != 9470:
    errors.append("[metrics] base_port is not 9470 (dashboards/prometheus/glassbox.yml)")
if cfg.get("compositor", {}).get("window") != "off":
    errors.append('[compositor] window is not "off" (containers have no display)')
for e in errors:
    print(f"compose_config_test: FAIL: {path}: {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY
if [[ -x $build/bin/glassbox-vm-supervisor ]]; then
  # --print-qemu-cmdline loads the config with glassbox's parser (unknown keys and bad
  # values are errors) and prints the TCG command line: no KVM probe, nothing started.
  if ! "$build/bin/glassbox-vm-supervisor" --config "$toml" --state-dir "$tmp/state" \
      --print-qemu-cmdline >"$tmp/qemu-cmdline" 2>"$tmp/err"; then
    echo "compose_config_test: FAIL: glassbox-vm-supervisor rejects $toml:" >&2
    cat "$tmp/err" >&2
    exit 1
  fi
  echo "compose_config_test: glassbox's parser accepts orchestration/compose/glassbox.toml"
else
  echo "compose_config_test: note: $build/bin/glassbox-vm-supervisor not built;" \
       "glassbox.toml checked as TOML only"
fi
echo "compose_config_test: OK"
