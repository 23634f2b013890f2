#!/usr/bin/env python3
"""Checks of the deploy kit that no off-the-shelf validator makes.

    check_kit.py compose COMPOSE_FILE SCHEMA_JSON
        The Compose file against the Compose specification's JSON schema (draft 7), then:
        every depends_on names a service, the dependency graph has no cycle, and every
        relative bind-mount source that the repository provides exists.
    check_kit.py metrics METRICS_RS FILE...
        Every authgate_* metric an alert or dashboard uses is registered in metrics.rs
        (histogram series may add _bucket, _sum or _count).
    check_kit.py dashboard DASHBOARD_JSON
        The Grafana dashboard parses, its panel ids are unique, every query panel has a
        PromQL expression, and it uses only its own variables.
    check_kit.py rules PROMETHEUSRULE_YAML OUT_RULES_YAML
        Writes spec.groups of the PrometheusRule as a Prometheus rule file (for promtool).
    check_kit.py configs MANIFESTS_YAML OUT_DIR HOSTS_FILE
        Writes the gateway.yaml and app files of the rendered ConfigMaps authgate-config and
        authgate-apps under OUT_DIR (paths /etc/authgate/... rewritten to OUT_DIR/...), a copy
        of the TLS files every certificate entry names, and HOSTS_FILE mapping every upstream
        host to 127.0.0.1, so that `authgate check` can load them.
"""

import json
import pathlib
import re
import shutil
import sys

import jsonschema
import yaml


def compose(path, schema_path):
    doc = yaml.safe_load(pathlib.Path(path).read_text())
    schema = json.loads(pathlib.Path(schema_path).read_text())
    errors = [
        f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(doc)
    ]
    services = doc.get("services", {})
    graph = {}
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        deps = list(deps) if isinstance(deps, (list, dict)) else []
        for d in deps:
            if d not in services:
                errors.append(f"services.{name}.depends_on: no service {d}")
        graph[name] = deps
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
            # certs/dev is made by certs/make-dev-certs.sh on the user's machine.
            if source.startswith(".") and "certs/dev" not in source:
                if not (pathlib.Path(path).parent / source).exists():
                    errors.append(f"services.{name}.volumes: {source} does not exist")
    state = {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        if state.get(node) == "open":
            errors.append(f"depends_on cycle: {' -> '.join(trail + [node])}")
            return
        state[node] = "open"
        for d in graph.get(node, []):
            visit(d, trail + [node])
        state[node] = "done"

    for name in graph:
        visit(name, [])
    return report(f"compose {path}", errors, len(services))


def metrics(metrics_rs, files):
    registered = set(re.findall(r'"(authgate_[a-z0-9_]+)"', pathlib.Path(metrics_rs).read_text()))
    errors = []
    used = 0
    for f in files:
        for name in sorted(set(re.findall(r"\b(authgate_[a-z0-9_]+)", pathlib.Path(f).read_text()))):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if name in registered or base in registered:
                used += 1
            else:
                errors.append(f"{f}: {name} is not a metric of {metrics_rs}")
    return report("metric names", errors, used)


def dashboard(path):
    dash = json.loads(pathlib.Path(path).read_text())
    errors = []
    variables = {v["name"] for v in dash.get("templating", {}).get("list", [])} | {
        "__rate_interval", "__interval", "__range"}
    ids = set()
    panels = [p for p in dash["panels"]]
    for p in panels:
        if p["id"] in ids:
            errors.append(f"panel id {p['id']} repeated")
        ids.add(p["id"])
        if p["type"] == "row":
            continue
        if not p.get("targets"):
            errors.append(f"panel {p['title']!r} has no query")
        for t in p.get("targets", []):
            expr = t.get("expr", "")
            if not expr.strip():
                errors.append(f"panel {p['title']!r} target {t.get('refId')} has no expr")
            for var in re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", expr):
                if var not in variables:
                    errors.append(f"panel {p['title']!r}: unknown variable ${var}")
    for key in ("title", "uid", "schemaVersion"):
        if key not in dash:
            errors.append(f"missing {key}")
    return report(f"dashboard {path}", errors, len(panels))


def rules(path, out):
    docs = [d for d in yaml.safe_load_all(pathlib.Path(path).read_text()) if d]
    groups = [g for d in docs if d.get("kind") == "PrometheusRule" for g in d["spec"]["groups"]]
    pathlib.Path(out).write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return report(f"rules {path}", [] if groups else ["no PrometheusRule"], len(groups))


def configs(manifests, out_dir, hosts_file):
    docs = [d for d in yaml.safe_load_all(pathlib.Path(manifests).read_text()) if d]
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d.get("kind") == "ConfigMap"}
    out = pathlib.Path(out_dir)
    main = maps["authgate-config"]["gateway.yaml"].replace("/etc/authgate/", f"{out}/")
    (out / "gateway.yaml").write_text(main)
    apps = out / "apps.d"
    apps.mkdir(parents=True, exist_ok=True)
    hosts = set()
    for key, text in maps["authgate-apps"].items():
        (apps / key).write_text(text)
        for upstream in yaml.safe_load(text).get("upstreams", []):
            host = re.sub(r"^[a-z]+://", "", upstream).rsplit(":", 1)[0]
            hosts.add(host)
    dev = pathlib.Path(__file__).resolve().parents[2] / "certs" / "dev"
    for cert in yaml.safe_load(main)["tls"]["certificates"]:
        for field, source in (("cert_file", "example.com.fullchain.crt"), ("key_file", "example.com.key")):
            target = pathlib.Path(cert[field])
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(dev / source, target)
    pathlib.Path(hosts_file).write_text(
        "127.0.0.1 localhost\n" + "".join(f"127.0.0.1 {h}\n" for h in sorted(hosts)))
    return report(f"configs of {manifests}", [], len(maps["authgate-apps"]))


def report(what, errors, count):
    for e in errors:
        print(f"FAIL {what}: {e}")
    if not errors:
        print(f"ok   {what} ({count} checked)")
    return 1 if errors else 0


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "compose":
        return compose(*args)
    if cmd == "metrics":
        return metrics(args[0], args[1:])
    if cmd == "dashboard":
        return dashboard(*args)
    if cmd == "rules":
        return rules(*args)
    if cmd == "configs":
        return configs(*args)
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
