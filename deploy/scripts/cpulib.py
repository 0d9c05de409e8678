"""CPU accounting shared by the Python A/B and saturation scripts (stack_cpu.py,
saturation.py): the `make run` environment, a process's CPU from /proc, the load client's CPU."""

import os
import resource
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVICES = ["gateway", "ingest", "embedding", "vector-search", "text-search"]
HZ = os.sysconf("SC_CLK_TCK")


def stack_env():
    """The environment `make run` gives the services (model, PostgreSQL URL, ONNX Runtime)."""
    out = subprocess.run([f"{ROOT}/deploy/scripts/stack.sh", "env"], check=True,
                         capture_output=True, text=True).stdout
    env = {}
    for line in out.splitlines():
        if line.startswith("export ") and "=" in line:
            key, value = line[len("export "):].split("=", 1)
            env[key] = value
    return env


def ticks(pid):
    """utime + stime of a process in clock ticks (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def children_cpu():
    """CPU seconds of this process's finished children (the load client, once it has exited)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime
