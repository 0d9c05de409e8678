#!/usr/bin/env python3
"""Checks the repository's Markdown (part of `make deploy-check`):

- every relative link (`[text](path)`, `[text](path#anchor)`, `[text](#anchor)`) names a file
  or folder that exists, and an anchor names a heading of that file (GitHub's slugs);
- every alert of deploy/prometheus/rules.yml appears in docs/operations.md with its runbook;
- no prose line of BENCHMARKS.md or docs/ is longer than 100 characters (tables, code blocks,
  headings and HTML comments may be).

`check_docs.py --wrap FILE...` re-wraps prose lines longer than 100 characters in place (the
benchmark writers call it after rewriting their sections of BENCHMARKS.md).

Usage: check_docs.py [--root DIR]      check, exit 1 listing every problem
       check_docs.py --wrap FILE...    wrap long prose lines
"""

import pathlib
import re
import subprocess
import sys

WIDTH = 100
LINK = re.compile(r"(?<!\!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")
# A line starting with one of these would change meaning if a wrap put it there.
# (One word: a list marker, a setext underline, a quote, a heading, a table row, HTML, a fence.)
MARKUP_START = re.compile(r"^([-*+]$|[-=]+$|>|#{1,6}$|\||<|```|~~~|\d+[.)]$)")


def markdown_files(root):
    out = subprocess.run(
        ["git", "-C", str(root), "ls-files", "*.md", "**/*.md"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    # Files about to be committed count too (a new docs/ page before `git add`).
    extra = subprocess.run(
        ["git", "-C", str(root), "ls-files", "--others", "--exclude-standard", "*.md", "**/*.md"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    return sorted({f for f in out + extra if (root / f).is_file() and "fuzz-corpus" not in f})


def slug(heading):
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to -."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = text.lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def outside_code(text):
    """(number, line) of every line outside fenced code blocks (the fences left out too)."""
    in_code = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            in_code = not in_code
            continue
        if not in_code:
            yield number, line


def anchors(path):
    seen = {}
    result = set()
    for _, line in outside_code(path.read_text()):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            result.add(base if n == 0 else f"{base}-{n}")
    return result


def prose_lines(text):
    """(number, line) of every line outside code fences that is prose."""
    for number, line in outside_code(text):
        stripped = line.lstrip()
        if not stripped or stripped.startswith(("|", "#", "<")) or line.startswith("    "):
            continue
        yield number, line


def check_links(root, files):
    problems = []
    cache = {}
    for name in files:
        path = root / name
        text = path.read_text()
        for number, line in outside_code(text):
            line = re.sub(r"`[^`]*`", "", line)
            for target in LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, mailto:, ...
                    continue
                file_part, _, anchor = target.partition("#")
                dest = (path.parent / file_part).resolve() if file_part else path
                if not dest.exists():
                    problems.append(f"{name}:{number}: link to {target}: no such file")
                    continue
                if anchor and dest.is_file() and dest.suffix == ".md":
                    if dest not in cache:
                        cache[dest] = anchors(dest)
                    if anchor not in cache[dest]:
                        problems.append(f"{name}:{number}: link to {target}: no such heading")
    return problems


def check_alerts(root):
    rules = (root / "deploy/prometheus/rules.yml").read_text()
    names = re.findall(r"^\s*-\s*alert:\s*(\S+)", rules, re.M)
    ops = (root / "docs/operations.md").read_text()
    if not names:
        return ["deploy/prometheus/rules.yml: no alerts found"]
    return [
        f"docs/operations.md: alert {n} (deploy/prometheus/rules.yml) is not in the alert table"
        for n in names
        if f"| `{n}` |" not in ops
    ]


def check_widths(root, files):
    problems = []
    for name in files:
        if not (name == "BENCHMARKS.md" or name.startswith("docs/")):
            continue
        for number, line in prose_lines((root / name).read_text()):
            if len(line) > WIDTH:
                problems.append(
                    f"{name}:{number}: prose line of {len(line)} characters (> {WIDTH}; "
                    f"deploy/scripts/check_docs.py --wrap {name})"
                )
    return problems


def wrap_line(line):
    """A long prose line as several lines of at most WIDTH characters (a word longer than
    that stays whole); list items keep their continuation indent."""
    indent = len(line) - len(line.lstrip())
    marker = re.match(r"^(\s*)([-*+]|\d+[.)])\s+", line)
    prefix, rest_prefix = line[:indent], " " * (marker.end() if marker else indent)
    lines, words = [], []
    for word in line.split():
        if not words or len(prefix + " ".join(words + [word])) <= WIDTH:
            words.append(word)
        elif MARKUP_START.match(word):
            # It must not begin a line: the word before it moves down with it.
            if len(words) > 1:
                lines.append(prefix + " ".join(words[:-1]))
                prefix, words = rest_prefix, words[-1:]
            words.append(word)
        else:
            lines.append(prefix + " ".join(words))
            prefix, words = rest_prefix, [word]
    lines.append(prefix + " ".join(words))
    return lines


def wrap_text(text):
    out = []
    long_ones = {n for n, line in prose_lines(text) if len(line) > WIDTH}
    for number, line in enumerate(text.splitlines(), 1):
        out.extend(wrap_line(line) if number in long_ones else [line])
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def main(argv):
    if argv[:1] == ["--wrap"]:
        for name in argv[1:]:
            path = pathlib.Path(name)
            text = path.read_text()
            wrapped = wrap_text(text)
            if wrapped != text:
                path.write_text(wrapped)
        return 0
    root = pathlib.Path(argv[1] if argv[:1] == ["--root"] else ".").resolve()
    files = markdown_files(root)
    problems = check_links(root, files) + check_alerts(root) + check_widths(root, files)
    for p in problems:
        print(p, file=sys.stderr)
    print(f"docs: {len(files)} Markdown files, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
