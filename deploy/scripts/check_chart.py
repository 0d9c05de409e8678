"""Lint and render helm/braid with the real Helm engine (helm-python-sdk) for several value
sets and write every rendered manifest to OUT_DIR/<value set>/ for kubernetes-validate.

usage: check_chart.py CHART_DIR OUT_DIR

OUT_DIR/expect.json says, per value set, whether the services must accept the configuration
the chart gives them (check_config.py runs their real config parser on it) and which Secrets
and ConfigMaps the operator is assumed to have created.

Every rendering must also follow chart_rules.py (probes, Secrets that are not hooks, checksum
annotations that roll pods, backups through a direct connection); some value sets must be
refused, some with a given message.
"""

import json
import pathlib
import sys

import chart_rules
import helm_python as helm

# Every installation names the key signing calls between the services and how the gateway
# verifies end users (the Secret `braid-jwt` is created by the operator: see EXTERNAL).
AUTH = {
    "internalAuth": {"key": "check-internal-key-0123456789abcdef"},
    "gatewayAuth": {"hs256": {"existingSecret": "braid-jwt"}},
}
DB = {"database": {"url": "postgres://braid@postgres:5432/braid"}, **AUTH}
ES = {
    "backend": "elasticsearch",
    "elasticsearch": {
        "urls": ["https://es-0.es:9200", "https://es-1.es:9200"],
        "shards": 3,
        "replicas": 1,
        "refreshInterval": "5s",
        "auth": {"existingSecret": "braid-es", "apiKeyKey": "api-key"},
        "tls": {"caConfigMap": "braid-es-ca"},
    },
}

# Secrets and ConfigMaps the operator creates outside the chart, as check_config.py gives them
# to the services (values the services' config parser must accept).
EXTERNAL = {
    "secrets": {
        "braid-jwt": {"hs256": "check-jwt-key-0123456789abcdef-0123"},
        "braid-internal": {"key": "check-internal-key-0123456789abcdef"},
        "braid-database": {
            "url": "postgres://braid:pw@pgbouncer:6432/braid",
            "direct": "postgres://braid:pw@postgres:5432/braid",
            "replica": "postgres://braid:pw@postgres-replica:5432/braid",
        },
        "braid-redis": {"url": "redis://:pw@redis:6379/0"},
        "braid-replication": {"url": "postgres://braid_wal:pw@postgres:5432/postgres"},
        "braid-es": {"api-key": "aWQ6a2V5", "password": "pw"},
        "braid-pg-ca": {"ca.crt": "-----BEGIN CERTIFICATE-----"},
        "braid-redis-ca": {"ca.crt": "-----BEGIN CERTIFICATE-----"},
        "braid-es-ca": {"ca.crt": "-----BEGIN CERTIFICATE-----"},
        "braid-gateway-tls": {"tls.crt": "-----BEGIN CERTIFICATE-----", "tls.key": "key"},
        "braid-internal-tls": {
            "tls.crt": "-----BEGIN CERTIFICATE-----",
            "tls.key": "key",
            "ca.crt": "-----BEGIN CERTIFICATE-----",
        },
    },
    "configMaps": {"braid-es-ca": {"ca.crt": "-----BEGIN CERTIFICATE-----"}},
}

# name -> values (merged over the chart defaults).
VALUE_SETS = {
    "defaults": DB,
    "elasticsearch": {
        **DB,
        "textSearch": ES,
        "services": {"textSearch": {"replicas": 3, "autoscaling": {"enabled": True}}},
    },
    "elasticsearch-basic-auth": {
        **DB,
        "textSearch": {
            "backend": "elasticsearch",
            "elasticsearch": {
                "urls": ["http://elasticsearch:9200"],
                "replicas": 0,
                "bulkRefreshInterval": "30s",
                "auth": {
                    "existingSecret": "braid-es",
                    "username": "braid",
                    "passwordKey": "password",
                },
                "tls": {"caSecret": "braid-es-ca"},
            },
        },
        "services": {"textSearch": {"replicas": 2}},
    },
    # PgBouncer in transaction mode with a direct URL for migrations, a read replica, TLS to
    # PostgreSQL and Redis, the audit trail, JWKS at the gateway.
    "postgres-at-scale": {
        "database": {
            "url": "postgres://braid:pw@pgbouncer:6432/braid",
            "pooler": "transaction",
            "migrateUrl": "postgres://braid:pw@postgres:5432/braid",
            "readUrl": "postgres://braid:pw@postgres-replica:5432/braid",
            "maxReplicaLagMs": 2000,
            "tls": {"sslMode": "verify-full", "rootCertSecret": "braid-pg-ca"},
        },
        "audit": {"enabled": True, "queryText": "redact"},
        "redis": {
            "url": "rediss://:pw@redis:6380/0",
            "tls": {"caSecret": "braid-redis-ca"},
        },
        "internalAuth": {"existingSecret": "braid-internal"},
        "gatewayAuth": {"jwksUrl": "https://idp.example/.well-known/jwks.json"},
        "migrations": {"enabled": False},
    },
    "postgres-existing-secret": {
        "database": {
            "existingSecret": "braid-database",
            "pooler": "transaction",
            "migrateUrlSecretKey": "direct",
            "readUrlSecretKey": "replica",
        },
        **{k: v for k, v in AUTH.items() if k != "internalAuth"},
        "internalAuth": {"existingSecret": "braid-internal"},
        "audit": {"enabled": True},
    },
    "headless": {
        **DB,
        "balancing": "headless",
        "redis": {"existingSecret": "braid-redis"},
        "services": {"embedding": {"autoscaling": {"enabled": True}}},
    },
    "cluster-ip": {
        **DB,
        "balancing": "clusterIP",
        "services": {"ingest": {"autoscaling": {"enabled": True}}},
    },
    "prometheus-operator": {
        **AUTH,
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
    # TLS at the gateway, mutual TLS between the services (cert-manager Secrets).
    "grpc-tls": {
        **DB,
        "grpcTls": {
            "gateway": {"secret": "braid-gateway-tls"},
            "internal": {"secret": "braid-internal-tls"},
        },
    },
    "grpc-tls-headless-no-client-certs": {
        **DB,
        "balancing": "headless",
        "grpcTls": {"internal": {"secret": "braid-internal-tls", "requireClientCert": False}},
    },
    "backup": {**DB, "backup": {"enabled": True, "schedule": "0 */6 * * *", "keep": 14}},
    # PgBouncer in transaction mode: pg_dump goes through the direct URL, with the TLS settings.
    "backup-transaction-pooler": {
        **AUTH,
        "database": {
            "url": "postgres://braid:pw@pgbouncer:6432/braid",
            "pooler": "transaction",
            "migrateUrl": "postgres://braid:pw@postgres:5432/braid",
            "tls": {"sslMode": "verify-full", "rootCertSecret": "braid-pg-ca"},
        },
        "backup": {"enabled": True},
    },
    "backup-transaction-pooler-existing-secret": {
        **AUTH,
        "database": {
            "existingSecret": "braid-database",
            "pooler": "transaction",
            "migrateUrlSecretKey": "direct",
        },
        "backup": {"enabled": True},
    },
    "backup-existing-claim": {
        **AUTH,
        "database": {"existingSecret": "braid-database"},
        "backup": {
            "enabled": True,
            "timeZone": "Europe/Berlin",
            "persistence": {"existingClaim": "braid-backups-bucket"},
        },
    },
    # Point-in-time recovery: a WAL receiver and base backups, on a claim of the chart's.
    "pitr": {
        **DB,
        "backup": {"pitr": {"enabled": True, "existingSecret": "braid-replication"}},
    },
    # ... beside the dumps, on an existing (bucket-backed) claim, with TLS to PostgreSQL.
    "pitr-existing-claim-tls": {
        **AUTH,
        "database": {
            "existingSecret": "braid-database",
            "tls": {"sslMode": "verify-full", "rootCertSecret": "braid-pg-ca"},
        },
        "backup": {
            "enabled": True,
            "pitr": {
                "enabled": True,
                "existingSecret": "braid-replication",
                "keepDays": 14,
                "persistence": {
                    "existingClaim": "braid-pitr-bucket",
                    "accessModes": ["ReadWriteMany"],
                },
            },
        },
    },
}

# Value sets that render, but that a service must refuse at start-up (check_config.py runs the
# real config parser on them): proof that the config check can fail.
REFUSED_BY_SERVICES = {
    "config-unknown-key": {
        **DB,
        "services": {"gateway": {"config": "[search]\nrrf_kk = 60\n"}},
    },
    "config-root-cert-without-verify": {
        **DB,
        "database": {
            "url": "postgres://braid@postgres:5432/braid",
            "tls": {"sslMode": "require", "rootCertSecret": "braid-pg-ca"},
        },
    },
}

# Value sets that must be refused (by the schema or by a template `fail`).
MUST_FAIL = {
    "tantivy-replicas": {**DB, "services": {"textSearch": {"replicas": 2}}},
    "bad-balancing": {**DB, "balancing": "roundrobin"},
    "cluster-ip-autoscaled-embedding": {
        **DB,
        "balancing": "clusterIP",
        "services": {"embedding": {"autoscaling": {"enabled": True}}},
    },
    "unknown-key": {**DB, "servics": {}},
    "backup-keep-zero": {**DB, "backup": {"enabled": True, "keep": 0}},
    "backup-unknown-key": {**DB, "backup": {"enabled": True, "retention": 7}},
    "pitr-without-secret": {**DB, "backup": {"pitr": {"enabled": True}}},
    "pitr-bad-slot": {
        **DB,
        "backup": {"pitr": {"enabled": True, "existingSecret": "s", "slot": "Braid-PITR"}},
    },
    "elasticsearch-without-urls": {**DB, "textSearch": {"backend": "elasticsearch"}},
    "elasticsearch-password-in-values": {
        **DB,
        "textSearch": {**ES, "elasticsearch": {**ES["elasticsearch"], "password": "pw"}},
    },
    "elasticsearch-bad-refresh": {
        **DB,
        "textSearch": {**ES, "elasticsearch": {**ES["elasticsearch"], "refreshInterval": "1"}},
    },
    "transaction-pooler-without-migrate-url": {
        **DB,
        "database": {"url": "postgres://braid@pgbouncer:6432/braid", "pooler": "transaction"},
    },
    "backup-through-transaction-pooler": {
        **DB,
        "database": {"url": "postgres://braid@pgbouncer:6432/braid", "pooler": "transaction"},
        "backup": {"enabled": True},
    },
    "no-internal-key": {"database": DB["database"], "gatewayAuth": AUTH["gatewayAuth"]},
    "no-gateway-key": {"database": DB["database"], "internalAuth": AUTH["internalAuth"]},
}


# Refusals whose message must say why (a substring of the error).
REFUSAL_MESSAGES = {
    "backup-through-transaction-pooler": "backup",
    "transaction-pooler-without-migrate-url": "direct",
}


def main() -> int:
    chart_dir, out_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    failed = False
    chart = helm.Chart.load(chart_dir)
    expect = {"external": EXTERNAL, "sets": {}}
    for name, values in [*VALUE_SETS.items(), *REFUSED_BY_SERVICES.items()]:
        expect["sets"][name] = "refused" if name in REFUSED_BY_SERVICES else "accepted"
        report = helm.lint(str(chart_dir), values, strict=True, kube_version="v1.31.0")
        problems = [m for m in report.get("messages") or [] if m.get("severity", 0) >= 2]
        problems += report.get("errors") or []
        if problems:
            print(f"helm lint ({name}): {problems}")
            failed = True
        chart.validate_schema(values)
        rendered = chart.render(values, name="braid", namespace="braid", is_install=True)
        for problem in chart_rules.check(chart_rules.parse(rendered), values):
            print(f"{name}: {problem}")
            failed = True
        target = out_dir / name
        target.mkdir(parents=True, exist_ok=True)
        count = 0
        for path, text in sorted(rendered.items()):
            if not text.strip() or path.endswith("NOTES.txt"):
                continue
            (target / path.replace("/", "__")).write_text(text)
            count += 1
        print(f"rendered {name}: {count} templates")
    (out_dir / "expect.json").write_text(json.dumps(expect, indent=1))

    def render(values: dict) -> list[dict]:
        out = chart.render(values, name="braid", namespace="braid", is_install=True)
        return chart_rules.parse(out)

    for problem in chart_rules.rolls_on_change(render, VALUE_SETS["defaults"]):
        print(f"defaults: {problem}")
        failed = True
    for name, values in MUST_FAIL.items():
        try:
            chart.validate_schema(values)
            chart.render(values, name="braid", namespace="braid", is_install=True)
        except helm.HelmError as e:
            print(f"refused {name}: {str(e).splitlines()[0][:160]}")
            why = REFUSAL_MESSAGES.get(name)
            if why and why not in str(e):
                print(f"  the refusal of {name} should say {why!r}")
                failed = True
            continue
        print(f"value set {name} should have been refused but rendered")
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
