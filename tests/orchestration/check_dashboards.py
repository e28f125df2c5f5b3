#!/usr/bin/env python3
"""Checks the Grafana dashboards and the Prometheus config against what glassbox exports.

Usage: tests/orchestration/check_dashboards.py [--root REPO]

Checks, each failure printed on its own line naming the file (and the metric or panel):
  1. Every glassbox_* metric name used in dashboards/grafana/dashboards/*.json (queries,
     variables, descriptions: the whole file) and in dashboards/prometheus/glassbox.yml (and
     any rule files it names) is exported by a service: it appears as the string
     literal "glassbox_..." in a C++ source under services/, shared/ or compositor/.
     prometheus-cpp exports a counter under the name it is given (the literal includes
     _total). A histogram's _bucket, _sum and _count series, and a summary's _sum and
     _count, count as exported when the base name is a literal registered as a histogram
     (summary): the nearest metric builder before the literal is BuildHistogram
     (BuildSummary) or a call histogram(...) (summary(...)).
  2. Each dashboard JSON parses; every panel (rows' nested panels included) has a unique
     id; every panel other than a row has a datasource and at least one target with a
     non-empty expr and a refId unique in the panel; every datasource uid a panel, target
     or variable names is one provisioned in dashboards/grafana/provisioning/datasources/.
  3. The provisioning YAML files parse (PyYAML when installed, else a minimal check).
  4. dashboards/prometheus/glassbox.yml parses, has scrape_configs, and its targets list
     the 8 glassbox ports 9470..9477 ([metrics] base_port 9470: glassbox up, then
     vm-supervisor .. compositor). When promtool is installed, `promtool check config`
     must pass too (skipped with a note otherwise).
  5. With promtool installed, every dashboard query parses as PromQL: the queries, with
     Grafana's variables replaced ($__rate_interval and other $__ intervals by 1m,
     $instance by a name), go through `promtool check rules` as recording rules; a
     failure names the panel and refId of each query promtool rejected.
Exit status: 0 all good, 1 a check failed, 2 usage error (a file or folder missing).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

try:
    import yaml  # PyYAML (Debian python3-yaml)
except ImportError:  # pragma: no cover - depends on the host
    yaml = None

SOURCE_DIRS = ("services", "shared", "compositor")
SOURCE_EXTS = (".cpp", ".cc", ".hpp", ".h")
METRIC_USE = re.compile(r"\bglassbox_[a-z0-9_]*[a-z0-9]\b")
METRIC_LITERAL = re.compile(r'"(glassbox_[a-z0-9_]+)"')
BUILDER = re.compile(
    r"Build(Counter|Gauge|Histogram|Summary)\b|\b(counter|gauge|histogram|summary)\s*\(")
BASE_PORT = 9470
PORTS = list(range(BASE_PORT, BASE_PORT + 8))


class Checker:
    def __init__(self, root):
        self.root = root
        self.errors = []
        self.notes = []
        self.queries = []  # (where, PromQL) of every dashboard target

    def fail(self, msg):
        self.errors.append(msg)

    def rel(self, path):
        return os.path.relpath(path, self.root)

    # ---- what the services export ------------------------------------------------------
    def exported_metrics(self):
        """{name: kind} for every "glassbox_..." literal; kind is counter, gauge, histogram,
        summary, or unknown when no builder precedes it."""
        kinds = {}
        for d in SOURCE_DIRS:
            top = os.path.join(self.root, d)
            if not os.path.isdir(top):
                raise FileNotFoundError(f"{self.rel(top)}: no such directory")
            for dirpath, _, files in os.walk(top):
                for f in sorted(files):
                    if not f.endswith(SOURCE_EXTS):
                        continue
                    with open(os.path.join(dirpath, f), encoding="utf-8", errors="replace") as fh:
                        text = fh.read()
                    for m in METRIC_LITERAL.finditer(text):
                        before = text[max(0, m.start() - 400):m.start()]
                        builders = list(BUILDER.finditer(before))
                        kind = "unknown"
                        if builders:
                            b = builders[-1]
                            kind = (b.group(1) or b.group(2)).lower()
                        name = m.group(1)
                        # A name registered once as a histogram stays one even if it is
                        # also mentioned elsewhere (a comment, a status key).
                        if kinds.get(name) not in ("histogram", "summary"):
                            kinds[name] = kind
        return kinds

    @staticmethod
    def is_exported(name, kinds):
        if name in kinds:
            return True
        for suffix, allowed in (("_bucket", ("histogram",)),
                                ("_sum", ("histogram", "summary")),
                                ("_count", ("histogram", "summary"))):
            if name.endswith(suffix) and kinds.get(name[: -len(suffix)]) in allowed:
                return True
        return False

    def check_names(self, path, text, kinds):
        used = sorted(set(METRIC_USE.findall(text)))
        for name in used:
            if not self.is_exported(name, kinds):
                self.fail(f"{self.rel(path)}: metric {name} is not exported by any service "
                          f"(no string literal \"{name}\" in {', '.join(d + '/' for d in SOURCE_DIRS)})")
        return used

    # ---- YAML ----------------------------------------------------------------------------
    def load_yaml(self, path):
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        if yaml is not None:
            try:
                return text, yaml.safe_load(text)
            except yaml.YAMLError as e:
                self.fail(f"{self.rel(path)}: YAML does not parse: {e}")
                return text, None
        # Minimal check without PyYAML: no tabs in indentation, and top-level keys present.
        for i, line in enumerate(text.splitlines(), 1):
            if line[: len(line) - len(line.lstrip())].count("\t"):
                self.fail(f"{self.rel(path)}:{i}: tab in indentation")
        self.notes.append(f"{self.rel(path)}: PyYAML not installed, minimal YAML check only")
        return text, None

    def provisioned_datasource_uids(self):
        folder = os.path.join(self.root, "dashboards/grafana/provisioning/datasources")
        uids = set()
        for f in sorted(os.listdir(folder)):
            if not f.endswith((".yml", ".yaml")):
                continue
            path = os.path.join(folder, f)
            text, data = self.load_yaml(path)
            if data is not None:
                for ds in data.get("datasources") or []:
                    if not ds.get("uid"):
                        self.fail(f"{self.rel(path)}: datasource {ds.get('name')!r} has no uid")
                    else:
                        uids.add(ds["uid"])
            else:
                uids.update(re.findall(r"^\s*uid:\s*['\"]?([A-Za-z0-9_-]+)", text, re.M))
        if not uids:
            self.fail(f"{self.rel(folder)}: no datasource with a uid is provisioned")
        return uids

    def check_dashboard_providers(self):
        folder = os.path.join(self.root, "dashboards/grafana/provisioning/dashboards")
        found = False
        for f in sorted(os.listdir(folder)):
            if not f.endswith((".yml", ".yaml")):
                continue
            found = True
            path = os.path.join(folder, f)
            _, data = self.load_yaml(path)
            if data is not None:
                providers = data.get("providers") or []
                if not providers:
                    self.fail(f"{self.rel(path)}: no providers")
                for p in providers:
                    if not (p.get("options") or {}).get("path"):
                        self.fail(f"{self.rel(path)}: provider {p.get('name')!r} has no "
                                  "options.path")
        if not found:
            self.fail(f"{self.rel(folder)}: no dashboard provider file")

    # ---- Grafana dashboards --------------------------------------------------------------
    @staticmethod
    def ds_uid(ds):
        if isinstance(ds, dict):
            return ds.get("uid")
        if isinstance(ds, str):
            return ds
        return None

    def check_dashboard(self, path, kinds, ds_uids):
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        used = self.check_names(path, text, kinds)
        try:
            dash = json.loads(text)
        except json.JSONDecodeError as e:
            self.fail(f"{self.rel(path)}: JSON does not parse: {e}")
            return used
        where = self.rel(path)
        if not dash.get("uid"):
            self.fail(f"{where}: dashboard has no uid")

        def check_ds(ds, what):
            uid = self.ds_uid(ds)
            if uid is None:
                self.fail(f"{where}: {what} has no datasource")
            elif uid.startswith("$"):
                pass  # a datasource variable: resolved by Grafana
            elif uid not in ds_uids and uid != "-- Grafana --":
                self.fail(f"{where}: {what} names datasource uid {uid!r}, not provisioned "
                          f"(have: {', '.join(sorted(ds_uids))})")

        ids = {}

        def walk(panels):
            for p in panels:
                title = p.get("title", "")
                pid = p.get("id")
                label = f"panel {pid} {title!r}"
                if pid is None:
                    self.fail(f"{where}: panel {title!r} has no id")
                elif pid in ids:
                    self.fail(f"{where}: panel id {pid} used twice ({ids[pid]!r} and {title!r})")
                else:
                    ids[pid] = title
                if "gridPos" not in p:
                    self.fail(f"{where}: {label} has no gridPos")
                if p.get("type") == "row":
                    if p.get("targets"):
                        self.fail(f"{where}: row {label} has targets")
                    walk(p.get("panels") or [])
                    continue
                check_ds(p.get("datasource"), label)
                targets = p.get("targets") or []
                if not targets:
                    self.fail(f"{where}: {label} has no targets")
                refids = set()
                for t in targets:
                    ref = t.get("refId")
                    if not ref:
                        self.fail(f"{where}: {label}: a target has no refId")
                    elif ref in refids:
                        self.fail(f"{where}: {label}: refId {ref} used twice")
                    refids.add(ref)
                    if not (t.get("expr") or "").strip():
                        self.fail(f"{where}: {label}: target {ref} has no expr")
                    else:
                        self.queries.append((f"{os.path.basename(path)} panel {pid} "
                                             f"{title!r} target {ref}", t["expr"]))
                    if "datasource" in t:
                        check_ds(t["datasource"], f"{label} target {ref}")

        panels = dash.get("panels")
        if not panels:
            self.fail(f"{where}: no panels")
        walk(panels or [])
        for var in (dash.get("templating") or {}).get("list") or []:
            if var.get("type") == "query":
                check_ds(var.get("datasource"), f"variable {var.get('name')!r}")
        return used

    # ---- Prometheus ----------------------------------------------------------------------
    def check_prometheus(self, kinds):
        path = os.path.join(self.root, "dashboards/prometheus/glassbox.yml")
        text, data = self.load_yaml(path)
        used = self.check_names(path, text, kinds)
        where = self.rel(path)
        targets = []
        rule_files = []
        if data is not None:
            jobs = data.get("scrape_configs") or []
            if not jobs:
                self.fail(f"{where}: no scrape_configs")
            names = [j.get("job_name") for j in jobs]
            for n in set(names):
                if names.count(n) > 1:
                    self.fail(f"{where}: job_name {n!r} used twice")
            for j in jobs:
                for sc in j.get("static_configs") or []:
                    targets.extend(str(t) for t in sc.get("targets") or [])
            rule_files = data.get("rule_files") or []
        else:
            if "scrape_configs:" not in text:
                self.fail(f"{where}: no scrape_configs")
            targets = re.findall(r"[\w.\-]+:\d+", text)
        ports = set()
        for t in targets:
            m = re.search(r":(\d+)$", t)
            if m:
                ports.add(int(m.group(1)))
        missing = [p for p in PORTS if p not in ports]
        if missing:
            self.fail(f"{where}: no scrape target on port(s) {', '.join(map(str, missing))} "
                      f"(expected {PORTS[0]}..{PORTS[-1]}: base_port {BASE_PORT} + 0..7)")
        for rf in rule_files:
            rpath = os.path.join(os.path.dirname(path), rf)
            if not os.path.isfile(rpath):
                self.fail(f"{where}: rule file {rf} not found")
                continue
            with open(rpath, encoding="utf-8") as fh:
                used += self.check_names(rpath, fh.read(), kinds)
            self.load_yaml(rpath)
        promtool = shutil.which("promtool")
        if promtool:
            r = subprocess.run([promtool, "check", "config", path], capture_output=True,
                               text=True, check=False)
            if r.returncode != 0:
                self.fail(f"{where}: promtool check config failed:\n{r.stdout}{r.stderr}")
        else:
            self.notes.append("promtool not installed (Debian package prometheus): "
                              "promtool check config skipped")
        return used

    def check_promql(self):
        promtool = shutil.which("promtool")
        if not promtool or not self.queries:
            return
        rules = []
        for i, (where, expr) in enumerate(self.queries):
            e = re.sub(r"\$__[a-z_]+interval|\$__range", "1m", expr)
            e = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", "x", e)
            rules.append({"record": f"dashboard_query_{i}", "expr": e})
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as fh:
            json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, fh)  # JSON is YAML
            tmp = fh.name
        try:
            r = subprocess.run([promtool, "check", "rules", tmp], capture_output=True,
                               text=True, check=False)
        finally:
            os.unlink(tmp)
        if r.returncode != 0:
            out = r.stdout + r.stderr
            bad = sorted({int(n) for n in re.findall(r"dashboard_query_(\d+)", out)})
            named = "; ".join(self.queries[n][0] for n in bad if n < len(self.queries))
            self.fail(f"dashboard queries that are not valid PromQL ({named or 'see below'}):"
                      f"\n{out}")

    def run(self):
        kinds = self.exported_metrics()
        if not kinds:
            self.fail("no \"glassbox_...\" string literal found in the sources")
        ds_uids = self.provisioned_datasource_uids()
        self.check_dashboard_providers()
        used = set()
        folder = os.path.join(self.root, "dashboards/grafana/dashboards")
        jsons = sorted(f for f in os.listdir(folder) if f.endswith(".json"))
        if not jsons:
            self.fail(f"{self.rel(folder)}: no dashboard JSON")
        for f in jsons:
            used.update(self.check_dashboard(os.path.join(folder, f), kinds, ds_uids))
        used.update(self.check_prometheus(kinds))
        self.check_promql()
        for n in self.notes:
            print(f"note: {n}")
        for e in self.errors:
            print(f"FAIL: {e}")
        if self.errors:
            print(f"check_dashboards: {len(self.errors)} problem(s)")
            return 1
        print(f"check_dashboards: OK: {len(jsons)} dashboard(s), {len(used)} glassbox series "
              f"names used, all exported ({len(kinds)} metrics exported in all); Prometheus config "
              f"scrapes ports {PORTS[0]}..{PORTS[-1]}")
        return 0


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.path.normpath(os.path.join(here, "..", "..")),
                    help="repository root (default: two levels above this script)")
    args = ap.parse_args()
    try:
        return Checker(os.path.abspath(args.root)).run()
    except FileNotFoundError as e:
        print(f"check_dashboards: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
