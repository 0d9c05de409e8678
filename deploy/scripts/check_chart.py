"""Lint and render helm/braid with the real Helm engine (helm-python-sdk) for several value
sets and write every rendered manifest to OUT_DIR/<value set>/ for kubernetes-validate.

usage: check_chart.py CHART_DIR OUT_DIR
"""

import pathlib
import sys

import helm_python as helm

DB = {"database": {"url": "postgres://braid@postgres:5432/braid"}}

# name -> values (merged over the chart defaults).
VALUE_SETS = {
    "defaults": DB,
    "elasticsearch": {
        **DB,
        "textSearch": {"backend": "elasticsearch", "elasticsearch": {"url": "http://es:9200"}},
        "services": {"textSearch": {"replicas": 3, "autoscaling": {"enabled": True}}},
    },
    "headless": {**DB, "balancing": "headless", "redis": {"existingSecret": "braid-redis"}},
    "prometheus-operator": {
        "database": {"existingSecret": "braid-database"},
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "otlpEndpoint": "http://otel-collector:4317",
        "services": {
            "gateway": {
                "autoscaling": {"enabled": True},
                "config": "[search]\nrrf_k = 60\n",
                "extraEnv": [{"name": "RUST_BACKTRACE", "value": "1"}],
            }
        },
        "extraEnvFrom": [{"secretRef": {"name": "braid-extra"}}],
    },
    "backup": {**DB, "backup": {"enabled": True, "schedule": "0 */6 * * *", "keep": 14}},
    "backup-existing-claim": {
        "database": {"existingSecret": "braid-database"},
        "backup": {
            "enabled": True,
            "timeZone": "Europe/Berlin",
            "persistence": {"existingClaim": "braid-backups-bucket"},
        },
    },
}

# Value sets that must be refused (by the schema or by a template `fail`).
MUST_FAIL = {
    "tantivy-replicas": {**DB, "services": {"textSearch": {"replicas": 2}}},
    "bad-balancing": {**DB, "balancing": "roundrobin"},
    "unknown-key": {**DB, "servics": {}},
    "backup-keep-zero": {**DB, "backup": {"enabled": True, "keep": 0}},
    "backup-unknown-key": {**DB, "backup": {"enabled": True, "retention": 7}},
}


def main() -> int:
    chart_dir, out_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    failed = False
    chart = helm.Chart.load(chart_dir)
    for name, values in VALUE_SETS.items():
        report = helm.lint(str(chart_dir), values, strict=True, kube_version="v1.31.0")
        problems = [m for m in report.get("messages") or [] if m.get("severity", 0) >= 2]
        problems += report.get("errors") or []
        if problems:
            print(f"helm lint ({name}): {problems}")
            failed = True
        chart.validate_schema(values)
        rendered = chart.render(values, name="braid", namespace="braid", is_install=True)
        target = out_dir / name
        target.mkdir(parents=True, exist_ok=True)
        count = 0
        for path, text in sorted(rendered.items()):
            if not text.strip() or path.endswith("NOTES.txt"):
                continue
            (target / path.replace("/", "__")).write_text(text)
            count += 1
        print(f"rendered {name}: {count} templates")
    for name, values in MUST_FAIL.items():
        try:
            chart.validate_schema(values)
            chart.render(values, name="braid", namespace="braid", is_install=True)
        except helm.HelmError as e:
            print(f"refused {name}: {str(e).splitlines()[0][:160]}")
            continue
        print(f"value set {name} should have been refused but rendered")
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
