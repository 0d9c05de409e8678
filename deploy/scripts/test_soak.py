"""Unit tests of `make soak`'s growth rule (soak.py evaluate / call_failures) on synthetic
series. Run by `make deploy-check` with the other test_*.py; no stack needed."""

import pathlib
import sys
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import soak  # noqa: E402

SECONDS = 1800  # warm-up 120 s, windows of 300 s: first 120–420 s, last 1500–1800 s


def samples(rss=lambda t: 200.0, fds=lambda t: 40, threads=lambda t: 30, conns=lambda t: 4,
            pool_max=16, depth=lambda t: 3, final_depth=0, dead=lambda t: 0, pid=lambda t: 100, audit_final=0, audit_dropped=lambda t: 0):
    """One sample every 10 s of a 30 min load plus the final one after the drain; every
    service gets the same series (ingest also the queue)."""
    out = []
    for t in list(range(0, SECONDS + 1, 10)) + [SECONDS + 30]:
        final = t > SECONDS
        services = {}
        for svc in soak.SERVICES:
            e = {"pid": pid(t), "up": True, "rss_mib": rss(t), "fds": fds(t), "threads": threads(t),
                 "db_connections": conns(t), "db_pool_max": pool_max}
            if svc == "ingest":
                e["queue_depth"] = final_depth if final else depth(t)
                e["dead_jobs"] = dead(t)
            if svc == "gateway":
                # The gateway exports no pool maximum (its default, 8, applies).
                del e["db_pool_max"]
                e["audit_queue_depth"] = audit_final if final else 1
                e["audit_dropped"] = audit_dropped(t)
            services[svc] = e
        s = {"t": t, "services": services}
        if final:
            s["final"] = True
        out.append(s)
    return out


def failed(rows, label):
    return [r for r in rows if r[1] == label and not r[6]]


class GrowthRule(unittest.TestCase):
    def test_flat_series_pass(self):
        rows, failures = soak.evaluate(samples(), SECONDS)
        self.assertEqual(failures, [])
        self.assertTrue(all(r[6] for r in rows))
        # Every service has RSS, fds and threads rows; ingest also queue and dead jobs.
        self.assertEqual(len([r for r in rows if r[1] == "RSS MiB"]), 5)
        self.assertEqual(len([r for r in rows if r[1] == "queue depth"]), 1)

    def test_rss_growing_past_the_bound_fails(self):
        # 200 MiB growing 100 MiB over the run: bound max(40, 50) = 50 MiB.
        rows, failures = soak.evaluate(samples(rss=lambda t: 200 + 100 * t / SECONDS), SECONDS)
        self.assertEqual(len(failed(rows, "RSS MiB")), 5)
        self.assertTrue(any("RSS MiB grew" in f for f in failures))

    def test_rss_growth_within_the_bound_passes(self):
        # +40 MiB on 200: under 50 MiB.
        rows, failures = soak.evaluate(samples(rss=lambda t: 200 + 40 * t / SECONDS), SECONDS)
        self.assertEqual(failures, [])
        # A large process may grow by 20 % between the medians: 1000 MiB + 180 over the run
        # passes (+138 between the windows), + 320 does not (+246 > 208).
        _, failures = soak.evaluate(samples(rss=lambda t: 1000 + 180 * t / SECONDS), SECONDS)
        self.assertEqual(failures, [])
        rows, _ = soak.evaluate(samples(rss=lambda t: 1000 + 320 * t / SECONDS), SECONDS)
        self.assertEqual(len(failed(rows, "RSS MiB")), 5)

    def test_a_spike_in_the_middle_is_not_growth(self):
        rows, failures = soak.evaluate(samples(rss=lambda t: 900 if 800 < t < 900 else 200), SECONDS)
        self.assertEqual(failures, [])
        self.assertEqual([r[4] for r in rows if r[1] == "RSS MiB"], [900] * 5)

    def test_shrinking_is_not_growth(self):
        _, failures = soak.evaluate(samples(rss=lambda t: 400 - 150 * t / SECONDS,
                                            fds=lambda t: 80 - t // 60), SECONDS)
        self.assertEqual(failures, [])

    def test_leaking_file_descriptors_fail(self):
        # One fd a minute: +25 between the windows' medians.
        rows, _ = soak.evaluate(samples(fds=lambda t: 40 + t // 60), SECONDS)
        self.assertEqual(len(failed(rows, "open fds")), 5)
        rows, _ = soak.evaluate(samples(fds=lambda t: 40 + t // 120), SECONDS)
        self.assertEqual(failed(rows, "open fds"), [])

    def test_connections_past_the_pools_fail(self):
        rows, _ = soak.evaluate(samples(conns=lambda t: 17 if t == 600 else 4), SECONDS)
        self.assertEqual(len(failed(rows, "DB connections")), 5)

    def test_the_gateway_pools_default_and_its_audit_queue(self):
        rows, failures = soak.evaluate(samples(conns=lambda t: 8), SECONDS)
        self.assertEqual(failures, [])
        rows, _ = soak.evaluate(samples(conns=lambda t: 9), SECONDS)
        self.assertEqual([r[0] for r in rows if r[1] == "DB connections" and not r[6]], ["gateway"])
        rows, _ = soak.evaluate(samples(audit_final=3), SECONDS)
        self.assertEqual(len(failed(rows, "audit queue depth")), 1)
        rows, _ = soak.evaluate(samples(audit_dropped=lambda t: t // 600), SECONDS)
        self.assertEqual(len(failed(rows, "audit records dropped")), 1)

    def test_a_queue_not_drained_fails_and_a_busy_one_does_not(self):
        rows, failures = soak.evaluate(samples(depth=lambda t: 500, final_depth=0), SECONDS)
        self.assertEqual(failures, [])
        rows, failures = soak.evaluate(samples(final_depth=2), SECONDS)
        self.assertEqual(len(failed(rows, "queue depth")), 1)
        self.assertTrue(any("queue depth 2" in f for f in failures))

    def test_dead_letters_growing_fail(self):
        rows, _ = soak.evaluate(samples(dead=lambda t: 1 if t > 1000 else 0), SECONDS)
        self.assertEqual(len(failed(rows, "dead jobs")), 1)

    def test_a_restart_fails(self):
        _, failures = soak.evaluate(samples(pid=lambda t: 100 if t < 900 else 101), SECONDS)
        self.assertEqual(len(failures), 5)
        self.assertTrue(all("restarted" in f for f in failures))

    def test_short_runs_scale_the_windows(self):
        self.assertEqual(soak.windows(1800), (120, 300))
        self.assertEqual(soak.windows(180), (30, 50))

    def test_any_failed_call_fails(self):
        ok = {"ingested": 1790, "ingest_failed": 0}
        counts, failures = soak.call_failures({"errors": 0, "degraded": 0}, ok, SECONDS)
        self.assertEqual(failures, [])
        _, failures = soak.call_failures({"errors": 0, "degraded": 3}, ok, SECONDS)
        self.assertEqual(failures, ["3 degraded answers"])
        _, failures = soak.call_failures({"errors": 2, "degraded": 0}, dict(ok, delete_failed=1), SECONDS)
        self.assertEqual(failures, ["2 search errors", "1 trickle delete failures"])

    def test_a_trickle_that_stopped_fails(self):
        # The first live run's trickle died after one document (its sleep failed).
        _, failures = soak.call_failures({"errors": 0, "degraded": 0}, {"ingested": 1}, SECONDS)
        self.assertEqual(failures, ["the trickle sent 1 documents in 1800 s (stopped or stalled)"])


if __name__ == "__main__":
    unittest.main()
