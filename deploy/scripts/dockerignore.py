"""Docker's `.dockerignore` semantics, as the builder applies them to a build context.

A port of moby/patternmatcher (`New`, `Pattern.compile`, `MatchesOrParentMatches`) and its
`ignorefile.ReadAll`, the code the classic builder and BuildKit's context transfer share:
  - `#` at the very start of a line is a comment; blanks around a pattern are trimmed;
  - each pattern is cleaned like Go's filepath.Clean (so `dir/` is `dir`, `./a` is `a`) and a
    leading `/` is dropped (patterns are relative to the context root);
  - `*` and `?` never cross `/`, `**` spans any number of directories, `[...]` classes and `\\`
    escapes are as in Go's filepath.Match;
  - a pattern matching one of a path's parent directories matches the path;
  - patterns apply in order, `!` re-includes, the last pattern that matches decides.
The exact / prefix / suffix shortcuts of Pattern.compile are kept as they are, since they are
what Docker does even where a regexp would say otherwise (`foo**` is a plain prefix).
"""

from __future__ import annotations

import dataclasses
import posixpath
import re

# Characters patternmatcher escapes when it builds the regexp (`shouldEscape`): regexp
# operators that are not filepath.Match operators. Every other character is copied as is.
_ESCAPED = set(".+()|{}$")


class PatternError(ValueError):
    pass


def go_clean(path: str) -> str:
    """Go's path.Clean: the shortest slash-separated path equivalent to `path`."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def read_ignore_file(text: str) -> list[str]:
    """The patterns of a .dockerignore file, as ignorefile.ReadAll returns them."""
    patterns = []
    for number, line in enumerate(text.splitlines()):
        if number == 0:
            line = line.removeprefix("\ufeff")
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = go_clean(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        patterns.append("!" + line if invert else line)
    return patterns


def _valid(pattern: str) -> bool:
    """Go's filepath.Match(pattern, ".") succeeds: no unterminated or empty `[...]`, no
    dangling `\\`."""
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if i + 1 >= n:
                return False
            i += 2
            continue
        if ch == "[":
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            if i < n and pattern[i] == "]":
                return False
            while i < n and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
            if i >= n:
                return False
        i += 1
    return True


@dataclasses.dataclass
class Pattern:
    text: str  # cleaned, without the `!`
    exclusion: bool  # a `!` pattern (re-includes)
    kind: str = "exact"  # exact | prefix | suffix | regexp, as patternmatcher decides
    regex: re.Pattern[str] | None = None

    @classmethod
    def parse(cls, raw: str) -> "Pattern":
        raw = go_clean(raw.strip())
        exclusion = raw.startswith("!")
        if exclusion:
            if len(raw) == 1:
                raise PatternError('illegal exclusion pattern: "!"')
            raw = raw[1:]
        if not _valid(raw):
            raise PatternError(f"syntax error in pattern {raw!r}")
        pattern = cls(text=raw, exclusion=exclusion)
        pattern._compile()
        return pattern

    def _compile(self) -> None:
        text, n = self.text, len(self.text)
        out, kind, i, token = "^", "exact", 0, 0
        while i < n:
            ch = text[i]
            i += 1
            if ch == "*" and i < n and text[i] == "*":
                i += 1
                if i < n and text[i] == "/":
                    i += 1  # "**/" is "**"
                if i == n:  # "**" at the end: everything below
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        out += ".*"
                        kind = "regexp"
                else:
                    out += "(.*/)?"
                    kind = "regexp"
                if token == 0:
                    kind = "suffix"
            elif ch == "*":
                out += "[^/]*"
                kind = "regexp"
            elif ch == "?":
                out += "[^/]"
                kind = "regexp"
            elif ch in _ESCAPED:
                out += "\\" + ch
            elif ch == "\\":
                if i < n:
                    out += "\\" + text[i]
                    i += 1
                    kind = "regexp"
                else:
                    out += "\\"
            elif ch in "[]":
                out += ch
                kind = "regexp"
            else:
                out += ch
            token += 1
        self.kind = kind
        if kind == "regexp":
            try:
                self.regex = re.compile(out + "$", re.DOTALL)
            except re.error as e:
                raise PatternError(f"syntax error in pattern {text!r}: {e}") from e

    def match(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            if path.endswith(suffix):
                return True
            return suffix.startswith("/") and path == suffix[1:]
        assert self.regex is not None
        return self.regex.match(path) is not None


class Matcher:
    """The patterns of one ignore file."""

    def __init__(self, patterns: list[str]):
        self.patterns = [Pattern.parse(p) for p in patterns if p.strip()]

    def decide(self, path: str) -> tuple[bool, Pattern | None]:
        """(excluded from the context?, the pattern that decided it, if any)."""
        path = go_clean(path)
        if path == ".":
            return False, None
        parent = posixpath.dirname(path) or "."
        parents = parent.split("/")
        matched, decider = False, None
        for pattern in self.patterns:
            # An inclusion is skipped once the path matched, an exclusion until it has.
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path)
            if not hit and parent != ".":
                hit = any(pattern.match("/".join(parents[: i + 1])) for i in range(len(parents)))
            if hit:
                matched, decider = not pattern.exclusion, pattern
        return matched, decider

    def excluded(self, path: str) -> bool:
        return self.decide(path)[0]


def load(text: str) -> Matcher:
    return Matcher(read_ignore_file(text))
