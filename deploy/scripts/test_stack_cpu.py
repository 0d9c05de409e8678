"""Unit tests of the CPU accounting of stack_cpu.py / cpulib.py (run by make test's deploy
checks: python -m unittest discover -s deploy/scripts -p 'test_*.py')."""

import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cpulib  # noqa: E402
import stack_cpu  # noqa: E402


class TicksTest(unittest.TestCase):
    def test_a_gone_process_has_no_ticks(self):
        p = subprocess.Popen(["true"])
        p.wait()
        self.assertEqual(cpulib.ticks(p.pid), 0)

    def test_a_busy_process_counts_its_cpu(self):
        # A command name with ") " in it must not shift the fields.
        script = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n" \
                 "input()\n"
        with tempfile.TemporaryDirectory() as tmp:
            odd = os.path.join(tmp, "a) b c")
            os.symlink(sys.executable, odd)
            p = subprocess.Popen([odd, "-c", script], stdin=subprocess.PIPE)
        for _ in range(100):
            if cpulib.ticks(p.pid) >= 0.25 * cpulib.HZ:
                break
            subprocess.run(["sleep", "0.05"])
        got = cpulib.ticks(p.pid)
        with open(f"/proc/{p.pid}/stat") as f:
            self.assertIn("(a) b c)", f.read())
        p.communicate(b"\n")
        self.assertGreaterEqual(got, 0.25 * cpulib.HZ)
        self.assertLess(got, 5 * cpulib.HZ)


class UsedTest(unittest.TestCase):
    def snapshot(self, services, backends):
        snap = {svc: services for svc in cpulib.SERVICES}
        snap["backends"] = backends
        return snap

    def test_a_backend_started_during_the_run_counts_from_zero(self):
        hz = cpulib.HZ
        before = self.snapshot(0, {10: hz, 11: 2 * hz})
        after = self.snapshot(hz, {10: 2 * hz, 11: 2 * hz, 12: 3 * hz})
        used = stack_cpu.used(before, after)
        self.assertEqual(used["postgres"], 1 + 0 + 3)
        self.assertEqual(used["gateway"], 1)


if __name__ == "__main__":
    unittest.main()
