"""Run each service's real config parser (`braid-<service> --check-config`) on exactly what a
deployment gives it: the image's ENV (deploy/Dockerfile), then the container's env and args,
with Secret/ConfigMap references resolved and mounted files written under a scratch root. A
key the service does not know, a value of the wrong type or a missing key file makes the
service exit 2 here, as it would in the pod.

usage:
  check_config.py BIN_DIR DOCKERFILE chart RENDERED_DIR     (written by check_chart.py)
  check_config.py BIN_DIR DOCKERFILE compose NAME CONFIG.json   (docker compose config --format json)
"""

import base64
import glob
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import yaml  # pulled in by kubernetes-validate

BINARIES = {
    "braid-gateway",
    "braid-ingest",
    "braid-embedding",
    "braid-vector-search",
    "braid-text-search",
}
# The migration Job's shell script starts these two with its env.
MIGRATE_BINARIES = ["braid-vector-search", "braid-ingest"]


def image_env(dockerfile: pathlib.Path) -> dict[str, dict[str, str]]:
    """ENV of each stage of the Dockerfile, with what a stage inherits (`FROM <stage> AS x`)."""
    lines, current = [], ""
    for raw in dockerfile.read_text().splitlines():
        if raw.lstrip().startswith("#"):
            continue
        current += raw.rstrip("\\").strip() + " "
        if not raw.rstrip().endswith("\\"):
            lines.append(current.strip())
            current = ""
    stages: dict[str, dict[str, str]] = {}
    stage = None
    for line in lines:
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if m:
            stage = m.group(2) or m.group(1)
            stages[stage] = dict(stages.get(m.group(1), {}))
        elif line.upper().startswith("ENV ") and stage:
            for k, v in re.findall(r'(\w+)=("[^"]*"|\S+)', line[4:]):
                stages[stage][k] = v.strip('"')
    return stages


def check(binaries: list[str], env: dict[str, str], args: list[str], files: dict[str, str],
          bin_dir: pathlib.Path, label: str) -> tuple[bool, str]:
    """Runs `binary --check-config` for each binary; (accepted, output)."""
    with tempfile.TemporaryDirectory() as root:
        mounts = sorted({str(pathlib.PurePosixPath(p).parent) for p in files}, key=len, reverse=True)

        def local(value: str) -> str:
            for m in mounts:
                if value == m or value.startswith(m + "/"):
                    return root + value
            return value

        for path, content in files.items():
            target = pathlib.Path(root + path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        run_env = {"PATH": "/usr/bin:/bin", "HOME": root}
        run_env.update({k: local(v) for k, v in env.items()})
        outputs, accepted = [], True
        for binary in binaries:
            cmd = [str(bin_dir / binary), *[local(a) for a in args], "--check-config"]
            r = subprocess.run(cmd, env=run_env, cwd=root, capture_output=True, text=True)
            out = (r.stdout + r.stderr).strip()
            if r.returncode not in (0, 2):
                raise SystemExit(f"{label}: {binary} exited {r.returncode} (a crash?): {out}")
            accepted &= r.returncode == 0
            outputs.append(out)
        return accepted, " | ".join(outputs)


def chart_pods(set_dir: pathlib.Path, external: dict):
    """(label, binaries, stage, env, args, files) of every Braid container of a rendered set."""
    docs = [d for f in sorted(glob.glob(str(set_dir / "*.yaml")))
            for d in yaml.safe_load_all(open(f)) if d]
    secrets = {k: dict(v) for k, v in external["secrets"].items()}
    config_maps = {k: dict(v) for k, v in external["configMaps"].items()}
    for d in docs:
        name = d["metadata"]["name"]
        if d["kind"] == "Secret":
            data = {k: base64.b64decode(v).decode() for k, v in (d.get("data") or {}).items()}
            secrets[name] = {**data, **(d.get("stringData") or {})}
        elif d["kind"] == "ConfigMap":
            config_maps[name] = dict(d.get("data") or {})

    def lookup(store: dict, kind: str, name: str, key: str, where: str) -> str:
        if name not in store or key not in store[name]:
            raise SystemExit(f"{where}: {kind} {name} has no key {key!r} (neither rendered nor "
                             f"among the external ones in check_chart.py)")
        return store[name][key]

    for d in docs:
        spec = (d.get("spec") or {}).get("template", {}).get("spec")
        if d["kind"] not in ("Deployment", "StatefulSet", "Job") or not spec:
            continue
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for c in spec["containers"]:
            label = f"{d['kind']}/{d['metadata']['name']}/{c['name']}"
            command = c.get("command") or []
            if command and command[0] in BINARIES:
                binaries, args = [command[0]], c.get("args") or []
            elif c["name"] == "migrate":
                binaries, args = MIGRATE_BINARIES, []
            else:
                continue
            env = {}
            for e in c.get("env") or []:
                if "value" in e:
                    env[e["name"]] = str(e["value"])
                    continue
                ref = e["valueFrom"]
                if "secretKeyRef" in ref:
                    r = ref["secretKeyRef"]
                    env[e["name"]] = lookup(secrets, "Secret", r["name"], r["key"], label)
                elif "configMapKeyRef" in ref:
                    r = ref["configMapKeyRef"]
                    env[e["name"]] = lookup(config_maps, "ConfigMap", r["name"], r["key"], label)
            files = {}
            for m in c.get("volumeMounts") or []:
                # Not in `volumes`: a StatefulSet's volumeClaimTemplates (an empty volume).
                v = volumes.get(m["name"], {})
                sources = []
                if "secret" in v:
                    sources = [{"secret": {"name": v["secret"]["secretName"], **v["secret"]}}]
                elif "configMap" in v:
                    sources = [{"configMap": v["configMap"]}]
                elif "projected" in v:
                    sources = v["projected"]["sources"]
                for s in sources:
                    kind, store = ("Secret", secrets) if "secret" in s else ("ConfigMap", config_maps)
                    src = s.get("secret") or s.get("configMap")
                    items = src.get("items") or [
                        {"key": k, "path": k} for k in store.get(src["name"], {})]
                    for it in items:
                        files[f"{m['mountPath']}/{it['path']}"] = lookup(
                            store, kind, src["name"], it["key"], label)
            stage = "embedding" if binaries == ["braid-embedding"] else "service"
            yield label, binaries, stage, env, args, files


def compose_services(config: dict):
    for name, svc in sorted(config["services"].items()):
        command = svc.get("command") or []
        if not command or command[0] not in BINARIES:
            continue
        stage = (svc.get("build") or {}).get("target", "service")
        env = {k: "" if v is None else str(v) for k, v in (svc.get("environment") or {}).items()}
        yield f"compose/{name}", [command[0]], stage, env, command[1:], {}


def main() -> int:
    bin_dir, dockerfile, mode = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
    stages = image_env(dockerfile)
    for stage in ("service", "embedding"):
        if stage not in stages:
            raise SystemExit(f"{dockerfile}: no stage {stage}")
    # (set name, what must happen, containers)
    runs = []
    if mode == "chart":
        rendered = pathlib.Path(sys.argv[4])
        expect = json.loads((rendered / "expect.json").read_text())
        for name, outcome in expect["sets"].items():
            runs.append((name, outcome, list(chart_pods(rendered / name, expect["external"]))))
    elif mode == "compose":
        name, config = sys.argv[4], json.loads(pathlib.Path(sys.argv[5]).read_text())
        runs.append((f"compose {name}", "accepted", list(compose_services(config))))
    else:
        raise SystemExit(__doc__)
    failed = False
    for name, outcome, pods in runs:
        if len(pods) < 5:
            print(f"{name}: only {len(pods)} Braid containers found")
            failed = True
        refusals = []
        for label, binaries, stage, env, args, files in pods:
            ok, out = check(binaries, {**stages[stage], **env}, args, files, bin_dir, label)
            if not ok:
                refusals.append(f"  {label}: {out}")
        if outcome == "accepted" and refusals:
            print(f"{name}: the services refuse the configuration they are given:")
            print("\n".join(refusals))
            failed = True
        elif outcome == "refused" and not refusals:
            print(f"{name}: every service accepted a configuration that must be refused")
            failed = True
        elif outcome == "refused":
            print(f"{name}: refused as it must be:\n" + "\n".join(refusals))
        else:
            print(f"{name}: {sum(len(p[1]) for p in pods)} service configurations accepted")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
