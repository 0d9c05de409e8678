"""Alert routing drill for `make deploy-check`: runs Alertmanager (Debian's
prometheus-alertmanager) with deploy/alertmanager/alertmanager.yml and the webhook receiver
deploy/alertmanager/sink.py on loopback ports, posts one `page` and one `ticket` alert through
Alertmanager's API and waits until each arrives at its own receiver (and not at the other).

    python3 alert_drill.py ROOT WORKDIR
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

DEADLINE_S = 60


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, check, deadline):
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"alert drill: {what} within {DEADLINE_S} s: no")


def received(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [a["labels"]["alertname"] for line in f for a in json.loads(line)["alerts"]]


def main(root, work):
    sink_port, am_port = free_port(), free_port()
    alerts_dir = os.path.join(work, "alerts")
    with open(os.path.join(root, "deploy/alertmanager/alertmanager.yml"), encoding="utf-8") as f:
        config = f.read()
    assert "http://alert-sink:9095/" in config, "receivers no longer post to alert-sink:9095"
    # Same routes and receivers; the sink on loopback, and no 10-30 s grouping wait.
    config = config.replace("http://alert-sink:9095/", f"http://127.0.0.1:{sink_port}/")
    config = config.replace("group_wait: 30s", "group_wait: 1s").replace("group_wait: 10s", "group_wait: 1s")
    config_path = os.path.join(work, "alertmanager-drill.yml")
    with open(config_path, "w", encoding="utf-8") as f:
        f.write(config)
    log = open(os.path.join(work, "alert-drill.log"), "w", encoding="utf-8")
    procs = [
        subprocess.Popen(
            [sys.executable, os.path.join(root, "deploy/alertmanager/sink.py"),
             "--host", "127.0.0.1", "--port", str(sink_port), "--dir", alerts_dir],
            stdout=log, stderr=log),
        subprocess.Popen(
            ["prometheus-alertmanager", f"--config.file={config_path}",
             f"--storage.path={os.path.join(work, 'alertmanager-data')}",
             f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
            stdout=log, stderr=log),
    ]
    try:
        deadline = time.monotonic() + DEADLINE_S
        base = f"http://127.0.0.1:{am_port}"
        wait_for("Alertmanager ready",
                 lambda: urllib.request.urlopen(base + "/-/ready", timeout=2).status == 200, deadline)
        wait_for("sink ready",
                 lambda: urllib.request.urlopen(f"http://127.0.0.1:{sink_port}/healthz", timeout=2).status == 200,
                 deadline)
        body = json.dumps([
            {"labels": {"alertname": "DrillPage", "severity": "page", "service": "gateway"}},
            {"labels": {"alertname": "DrillTicket", "severity": "ticket", "service": "ingest"}},
        ]).encode()
        req = urllib.request.Request(base + "/api/v2/alerts", data=body,
                                     headers={"Content-Type": "application/json"})
        assert urllib.request.urlopen(req, timeout=5).status == 200
        page, ticket = (os.path.join(alerts_dir, n + ".jsonl") for n in ("page", "ticket"))
        wait_for("a page at the page receiver and a ticket at the ticket receiver",
                 lambda: "DrillPage" in received(page) and "DrillTicket" in received(ticket), deadline)
        if "DrillTicket" in received(page) or "DrillPage" in received(ticket):
            sys.exit(f"alert drill: misrouted: page got {received(page)}, ticket got {received(ticket)}")
        print(f"alert drill: page -> page receiver, ticket -> ticket receiver (Alertmanager on :{am_port})")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
