"""Unit tests of check_docs.py (run by `make deploy-check` with the other test_*.py)."""

import pathlib
import tempfile
import unittest

import check_docs

LONG = ("word " * 30).strip()


class Wrap(unittest.TestCase):
    def test_long_prose_is_cut_at_word_boundaries_and_keeps_its_words(self):
        text = f"Intro {LONG} end.\n"
        wrapped = check_docs.wrap_text(text)
        self.assertTrue(all(len(line) <= check_docs.WIDTH for line in wrapped.splitlines()))
        self.assertEqual(wrapped.split(), text.split())
        self.assertEqual(check_docs.wrap_text(wrapped), wrapped)

    def test_no_line_starts_with_markup_after_a_wrap(self):
        # Each of these words, put at the start of a line, would make a list, a quote, a
        # heading, a setext underline or an ordered list.
        for word in ["-", "+", "*", ">", "#", "---", "==", "1.", "12)"]:
            text = "a " + ("x" * 97) + f" {word} after\n"
            lines = check_docs.wrap_text(text).splitlines()
            self.assertEqual(check_docs.wrap_text(text).split(), text.split())
            for line in lines[1:]:
                self.assertIsNone(check_docs.MARKUP_START.match(line.split()[0]), (word, lines))

    def test_list_items_keep_their_continuation_indent(self):
        lines = check_docs.wrap_text(f"- {LONG}\n").splitlines()
        self.assertTrue(lines[0].startswith("- "))
        self.assertTrue(all(line.startswith("  ") for line in lines[1:]), lines)

    def test_tables_code_headings_and_comments_are_left_alone(self):
        text = (
            f"| {LONG} |\n```\n{LONG}\n```\n# {LONG}\n<!-- {LONG} -->\n    {LONG}\n"
        )
        self.assertEqual(check_docs.wrap_text(text), text)


class Links(unittest.TestCase):
    def test_slugs_follow_github(self):
        self.assertEqual(check_docs.slug("Ingest → outbox → legs"), "ingest--outbox--legs")
        self.assertEqual(
            check_docs.slug("PostgreSQL at scale: read replica, PgBouncer, TLS"),
            "postgresql-at-scale-read-replica-pgbouncer-tls",
        )
        self.assertEqual(check_docs.slug("`crates/core` (braid-core)"), "cratescore-braid-core")

    def test_missing_files_and_headings_are_reported(self):
        with tempfile.TemporaryDirectory() as tmp:
            root = pathlib.Path(tmp)
            (root / "docs").mkdir()
            (root / "docs/a.md").write_text("# A\n\n## Two words\n")
            (root / "README.md").write_text(
                "[ok](docs/a.md#two-words) [gone](docs/b.md) [bad](docs/a.md#three)\n"
                "`[not a link](nowhere.md)` [web](https://example.com/x.md)\n"
            )
            problems = check_docs.check_links(root, ["README.md", "docs/a.md"])
        self.assertEqual(len(problems), 2, problems)
        self.assertIn("docs/b.md: no such file", problems[0])
        self.assertIn("docs/a.md#three: no such heading", problems[1])


if __name__ == "__main__":
    unittest.main()
