#!/usr/bin/env python3
"""Soak run: the whole pipeline on the reference guest for --minutes (default 30), with every
service's memory sampled every --interval seconds from /proc/PID/status: RssAnon (its private
heap and stacks: where a leak shows) and RssShmem (shared memory it has touched: the guest's
RAM file, iceoryx's pools; grows until every page was touched once, bounded by their sizes).
After a warm-up (--warmup minutes, excluded), a least-squares line through each service's
RssAnon samples must rise by less than --max-growth-mib over the whole run (default 16 MiB:
flat within allocator noise).
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


def mem_kib(pid):
    """(RssAnon, RssShmem) in KiB, or None."""
    anon = shmem = None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    anon = int(line.split()[1])
                elif line.startswith("RssShmem:"):
                    shmem = int(line.split()[1])
    except OSError:
        return None
    return None if anon is None else (anon, shmem or 0)


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
                    kib = mem_kib(pid)
                    if kib is not None:
                        samples[name].append((t, kib[0], kib[1]))
            print(f"soak: t={t:.0f}s anon/shmem MiB " + " ".join(
                f"{n}={samples[n][-1][1] // 1024}/{samples[n][-1][2] // 1024}"
                for n in SERVICES if samples[n]), flush=True)
    finally:
        subprocess.run([glassbox, "down", "--state-dir", state], capture_output=True, timeout=120)
        up.wait(timeout=120)
    report = {"minutes": a.minutes, "warmup_minutes": a.warmup, "services": {}}
    for name, pts in samples.items():
        fit = [(t, anon) for t, anon, _ in pts if t >= a.warmup * 60]
        growth_mib = slope_per_s(fit) * (total_s - a.warmup * 60) / 1024
        ok = len(fit) >= 2 and growth_mib < a.max_growth_mib
        report["services"][name] = {
            "samples_t_anon_shmem_kib": pts, "anon_growth_mib_over_run": growth_mib,
            "anon_first_mib": pts[0][1] / 1024 if pts else None,
            "anon_last_mib": pts[-1][1] / 1024 if pts else None,
            "shmem_last_mib": pts[-1][2] / 1024 if pts else None, "flat": ok}
        print(f"soak: {name:16} heap {pts[0][1] / 1024 if pts else 0:7.1f} -> "
              f"{pts[-1][1] / 1024 if pts else 0:7.1f} MiB, fit {growth_mib:+7.2f} MiB over the run "
              f"({'flat' if ok else 'GROWS or no samples'})")
        if not ok:
            verdict = 1
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
    return verdict


if __name__ == "__main__":
    sys.exit(main())
