#!/usr/bin/env python3
"""Soak run: the whole pipeline on the reference guest for --minutes (default 30), with every
service's resident memory (VmRSS from /proc) sampled every --interval seconds. After a warm-up
(--warmup minutes, excluded), a least-squares line through each service's samples must rise by
less than --max-growth-mib over the whole run (default 16 MiB: flat within allocator noise).
Bounded: `glassbox up --for` ends the run even if this script dies.

Not part of the default suite (ctest -L soak, or run it directly):
    tests/soak/soak.py --build build --minutes 30 --json soak.json
Exit status: 0 flat, 1 a service grew or died, 2 usage or start-up error.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

SERVICES = ["vm-supervisor", "ram-snapshotter", "semantic-db", "trace-consumer",
            "pattern-miner", "smt-synthesizer", "compositor"]


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def slope_per_s(points):
    """Least-squares slope of (t, y) points."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return 0.0 if den == 0 else sum((t - mt) * (y - my) for t, y in points) / den


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--build", default="build", help="build directory (bin/glassbox)")
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=5.0, help="minutes excluded from the fit")
    ap.add_argument("--interval", type=float, default=30.0, help="seconds between samples")
    ap.add_argument("--max-growth-mib", type=float, default=16.0)
    ap.add_argument("--json", help="write samples and verdicts here")
    a = ap.parse_args()
    if a.minutes <= a.warmup:
        print("soak: --minutes must exceed --warmup", file=sys.stderr)
        return 2
    glassbox = os.path.join(a.build, "bin", "glassbox")
    state = tempfile.mkdtemp(prefix="gb-soak-")
    cfg = os.path.join(state, "glassbox.toml")
    with open(cfg, "w") as f:
        f.write(f'[instance]\nname = "soak{os.getpid()}"\n[vm]\naccel = "tcg"\n'
                f'[up]\nservices = {json.dumps(SERVICES)}\n'
                '[trace]\nmode = "counts"\n[compositor]\nwindow = "off"\nfps = 10\n')
    total_s = a.minutes * 60
    up = subprocess.Popen([glassbox, "up", "--state-dir", state, "--config", cfg,
                           "--for", str(int(total_s + 120))],
                          stdout=open(os.path.join(state, "up.out"), "w"), stderr=subprocess.STDOUT)
    samples = {s: [] for s in SERVICES}
    pids = {}
    verdict = 0
    try:
        start = time.monotonic()
        while time.monotonic() - start < total_s:
            time.sleep(a.interval)
            r = subprocess.run([glassbox, "status", "--json", "--state-dir", state],
                               capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                continue
            st = json.loads(r.stdout)
            t = time.monotonic() - start
            for svc in st.get("services", []):
                name, pid = svc["name"], svc["pid"]
                if name in samples and pid > 0:
                    if name in pids and pids[name] != pid:
                        print(f"soak: {name} restarted (pid {pids[name]} -> {pid})", file=sys.stderr)
                        verdict = 1
                    pids[name] = pid
                    kib = rss_kib(pid)
                    if kib is not None:
                        samples[name].append((t, kib))
            print(f"soak: t={t:.0f}s " + " ".join(
                f"{n}={samples[n][-1][1] // 1024}MiB" for n in SERVICES if samples[n]), flush=True)
    finally:
        subprocess.run([glassbox, "down", "--state-dir", state], capture_output=True, timeout=120)
        up.wait(timeout=120)
    report = {"minutes": a.minutes, "warmup_minutes": a.warmup, "services": {}}
    for name, pts in samples.items():
        fit = [(t, kib) for t, kib in pts if t >= a.warmup * 60]
        growth_mib = slope_per_s(fit) * (total_s - a.warmup * 60) / 1024
        ok = len(fit) >= 2 and growth_mib < a.max_growth_mib
        report["services"][name] = {"samples": pts, "growth_mib_over_run": growth_mib,
                                    "first_mib": pts[0][1] / 1024 if pts else None,
                                    "last_mib": pts[-1][1] / 1024 if pts else None, "flat": ok}
        print(f"soak: {name:16} {growth_mib:+8.2f} MiB over the run "
              f"({'flat' if ok else 'GROWS or no samples'})")
        if not ok:
            verdict = 1
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
    return verdict


if __name__ == "__main__":
    sys.exit(main())
