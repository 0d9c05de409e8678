"""Unit tests of backup.sh's retention (`backup.sh prune`): backups are kept by age
(BRAID_BACKUP_KEEP_DAYS) and the newest BRAID_BACKUP_KEEP always stay. Run by `make
deploy-check` with the other test_*.py; needs bash and GNU date, no database."""

import datetime
import os
import pathlib
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
        (self.root / (name(90) + ".partial")).mkdir()
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
        self.assertTrue((self.root / (name(90) + ".partial")).is_dir())
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


if __name__ == "__main__":
    unittest.main()
