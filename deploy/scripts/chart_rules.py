"""Rules every rendering of helm/braid must follow, checked by check_chart.py on each value set:

- probes: startup on the process being up (`GET /livez` on the admin port, which never depends
  on other services), readiness on the service's own dependency-gated gRPC health status
  (`GET /healthz` on the admin port, the same status, for a service serving gRPC over TLS),
  liveness on `/livez`; so a pod that starts during a database outage is kept out of the
  endpoints instead of being killed in a loop;
- Secrets: the ones the chart creates are normal release resources (not hooks), referenced by
  every workload; a hook (the migration Job) reads only Secrets that exist when it runs: the
  operator's, or a hook-scoped twin created just before it and deleted when it succeeds;
- pods roll when their configuration changes: `checksum/config` and `checksum/secret`
  annotations on every workload's pod template (rolls_on_change() renders twice to prove it);
- backups go through a direct (non-pooled) connection: with `database.pooler: transaction` the
  backup CronJob reads the migrate URL, never the PgBouncer one, and gets the database TLS
  settings (PGSSLMODE, PGSSLROOTCERT on a mounted CA).
"""

from __future__ import annotations

from typing import Any, Callable

import yaml  # pulled in by kubernetes-validate

Doc = dict[str, Any]

WORKLOAD_KINDS = ("Deployment", "StatefulSet")


def parse(rendered: dict[str, str]) -> list[Doc]:
    return [
        d
        for path, text in sorted(rendered.items())
        if path.endswith(".yaml")
        for d in yaml.safe_load_all(text)
        if d
    ]


def _pod_spec(doc: Doc) -> Doc | None:
    spec = doc.get("spec") or {}
    if doc["kind"] == "Pod":
        return spec
    if doc["kind"] == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    return spec.get("template", {}).get("spec")


def _hook(doc: Doc) -> tuple[set[str], int, set[str]] | None:
    """(hook events, weight, delete policies) of a Helm hook; None for a release resource."""
    ann = doc["metadata"].get("annotations") or {}
    if "helm.sh/hook" not in ann:
        return None
    events = {e.strip() for e in ann["helm.sh/hook"].split(",")}
    policies = {p.strip() for p in ann.get("helm.sh/hook-delete-policy", "").split(",") if p}
    return events, int(ann.get("helm.sh/hook-weight", "0")), policies


def referenced_secrets(pod: Doc) -> set[str]:
    names = set()
    for c in [*pod.get("containers", []), *pod.get("initContainers", [])]:
        for e in c.get("env") or []:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                names.add(ref["name"])
        for src in c.get("envFrom") or []:
            if "secretRef" in src:
                names.add(src["secretRef"]["name"])
    for v in pod.get("volumes") or []:
        if "secret" in v:
            names.add(v["secret"]["secretName"])
        for s in (v.get("projected") or {}).get("sources", []):
            if "secret" in s:
                names.add(s["secret"]["name"])
    return names


def check_probes(docs: list[Doc]) -> list[str]:
    problems = []
    for d in docs:
        if d["kind"] not in WORKLOAD_KINDS:
            continue
        labels = d["spec"]["template"]["metadata"].get("labels") or {}
        if labels.get("app.kubernetes.io/component") == "wal-receiver":
            problems += _check_wal_receiver(d)
            continue
        for c in _pod_spec(d)["containers"]:
            where = f"{d['kind']}/{d['metadata']['name']}"
            admin = {p["name"]: p["containerPort"] for p in c.get("ports", [])}.get("admin")
            for probe in ("startupProbe", "livenessProbe"):
                get = (c.get(probe) or {}).get("httpGet") or {}
                if get.get("path") != "/livez" or get.get("port") not in ("admin", admin):
                    problems.append(
                        f"{where}: {probe} must be GET /livez on the admin port (the process "
                        f"is up, whatever its dependencies), not {c.get(probe)}"
                    )
            readiness = c.get("readinessProbe") or {}
            grpc = readiness.get("grpc") or {}
            get = readiness.get("httpGet") or {}
            serves_tls = any(
                e["name"].endswith("__SERVER__TLS__CERT_FILE") for e in c.get("env") or []
            )
            if serves_tls:
                # The kubelet's gRPC probe speaks no TLS: the same status on the admin port.
                if get.get("path") != "/healthz" or get.get("port") not in ("admin", admin):
                    problems.append(
                        f"{where}: serves gRPC over TLS, so readinessProbe must be GET /healthz "
                        f"on the admin port (the gRPC probe cannot do TLS), not {readiness}"
                    )
            elif not str(grpc.get("service", "")).startswith("braid.v1."):
                problems.append(
                    f"{where}: readinessProbe must ask the service's own gRPC health status "
                    f"(dependency-gated), not {readiness}"
                )
    return problems


def _check_wal_receiver(d: Doc) -> list[str]:
    """The WAL receiver serves nothing: its probes ask backup.sh whether its replication slot
    is active (it streams); one replica, replaced (never two on one slot)."""
    where = f"{d['kind']}/{d['metadata']['name']}"
    problems = []
    if d["spec"].get("replicas") != 1 or (d["spec"].get("strategy") or {}).get("type") != "Recreate":
        problems.append(f"{where}: one replica, strategy Recreate (one receiver per slot)")
    for c in _pod_spec(d)["containers"]:
        for probe in ("readinessProbe", "livenessProbe"):
            command = ((c.get(probe) or {}).get("exec") or {}).get("command") or []
            if command[-1:] != ["wal-check"]:
                problems.append(f"{where}: {probe} must run backup.sh wal-check, not {command}")
    return problems


def check_secrets(docs: list[Doc]) -> list[str]:
    problems = []
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    for name, s in secrets.items():
        hook = _hook(s)
        if hook is None:
            continue
        events, _, policies = hook
        twin = secrets.get(name.removesuffix("-migrate"))
        if not name.endswith("-migrate") or twin is None or _hook(twin) is not None:
            problems.append(
                f"Secret/{name} is a Helm hook: the Secrets the chart creates must be release "
                "resources (only a migration hook's `<secret>-migrate` twin may be a hook)"
            )
        elif twin.get("stringData") != s.get("stringData"):
            problems.append(f"Secret/{name} differs from its twin Secret/{twin['metadata']['name']}")
        elif "hook-succeeded" not in policies or "before-hook-creation" not in policies:
            problems.append(
                f"Secret/{name}: a hook-scoped copy of credentials must be deleted when the "
                "hook succeeds (hook-delete-policy before-hook-creation,hook-succeeded)"
            )
    for d in docs:
        pod = _pod_spec(d)
        if pod is None:
            continue
        where = f"{d['kind']}/{d['metadata']['name']}"
        hook = _hook(d)
        for name in sorted(referenced_secrets(pod) & secrets.keys()):
            secret_hook = _hook(secrets[name])
            if hook is None and secret_hook is not None:
                problems.append(f"{where} reads Secret/{name}, which is a hook")
            if hook is not None and hook[0] & {"pre-install", "pre-upgrade"}:
                # A hook runs before the release's resources exist (pre-install) or are updated
                # (pre-upgrade): the Secrets it reads must be hooks created before it.
                if secret_hook is None:
                    problems.append(
                        f"{where} is a {','.join(sorted(hook[0]))} hook but reads the release's "
                        f"Secret/{name}, which does not exist yet on install"
                    )
                elif not (hook[0] <= secret_hook[0] and secret_hook[1] < hook[1]):
                    problems.append(f"{where} runs before its Secret/{name} is created")
    return problems


def check_checksums(docs: list[Doc]) -> list[str]:
    problems = []
    for d in docs:
        if d["kind"] not in WORKLOAD_KINDS:
            continue
        ann = d["spec"]["template"]["metadata"].get("annotations") or {}
        for key in ("checksum/config", "checksum/secret"):
            if len(str(ann.get(key, ""))) != 64:
                problems.append(
                    f"{d['kind']}/{d['metadata']['name']}: pod template has no {key} "
                    "annotation (pods would not roll when it changes)"
                )
    return problems


def _pod_checksums(docs: list[Doc]) -> dict[str, dict[str, str]]:
    return {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"].get("annotations") or {}
        for d in docs
        if d["kind"] in WORKLOAD_KINDS
    }


def rolls_on_change(render: Callable[[dict], list[Doc]], values: dict) -> list[str]:
    """Renders `values`, then with a changed inline Secret value and a changed ConfigMap:
    every workload's pod template must change with each (and not without)."""
    problems = []
    base = _pod_checksums(render(values))
    if _pod_checksums(render(values)) != base:
        problems.append("pod template annotations differ between two identical renders")
    secret = _pod_checksums(render({**values, "internalAuth": {"key": "another-internal-key-0123456789abcdef01"}}))
    config = _pod_checksums(
        render({**values, "services": {"gateway": {"config": "[search]\nrrf_k = 61\n"}}})
    )
    for name, ann in base.items():
        if secret[name].get("checksum/secret") == ann.get("checksum/secret"):
            problems.append(f"{name}: checksum/secret does not change with internalAuth.key")
        if config[name].get("checksum/config") == ann.get("checksum/config"):
            problems.append(f"{name}: checksum/config does not change with a service config")
    return problems


def check_backup(docs: list[Doc], values: dict) -> list[str]:
    db = values.get("database", {})
    jobs = [d for d in docs if d["kind"] == "CronJob" and d["metadata"]["name"].endswith("-backup")]
    problems = []
    for d in jobs:
        pod = _pod_spec(d)
        [c] = pod["containers"]
        env = {e["name"]: e for e in c.get("env") or []}
        ref = (env.get("BRAID_BACKUP_DATABASE_URL", {}).get("valueFrom") or {}).get(
            "secretKeyRef", {}
        )
        if db.get("pooler") == "transaction":
            direct = db.get("migrateUrlSecretKey") if db.get("existingSecret") else "migrate-url"
            if ref.get("key") != direct:
                problems.append(
                    f"CronJob/{d['metadata']['name']}: with pooler=transaction pg_dump must use "
                    f"the direct URL (key {direct!r}), not key {ref.get('key')!r} (PgBouncer)"
                )
        tls = db.get("tls") or {}
        if tls.get("sslMode") and env.get("PGSSLMODE", {}).get("value") != tls["sslMode"]:
            problems.append(f"CronJob/{d['metadata']['name']}: PGSSLMODE is not {tls['sslMode']}")
        if tls.get("rootCertSecret"):
            path = env.get("PGSSLROOTCERT", {}).get("value", "")
            mounts = [m["mountPath"] for m in c.get("volumeMounts") or []]
            if not any(path.startswith(m + "/") for m in mounts) or tls["rootCertSecret"] not in (
                referenced_secrets(pod)
            ):
                problems.append(
                    f"CronJob/{d['metadata']['name']}: PGSSLROOTCERT must point at the mounted "
                    f"{tls['rootCertSecret']} CA, not {path!r}"
                )
    return problems


def check(docs: list[Doc], values: dict) -> list[str]:
    return check_probes(docs) + check_secrets(docs) + check_checksums(docs) + check_backup(
        docs, values
    )
