"""Unit tests of dockerignore.py (Docker's .dockerignore rules) and build_context.py.

Run: python -m unittest discover -s deploy/scripts -p 'test_*.py' (make deploy-check does).

Every expected verdict of MATCHES, RULES and IGNORE_FILES is what moby/patternmatcher's
MatchesOrParentMatches (and ignorefile.ReadAll) return for the same input: they were checked
against that Go code, the builder's own.
"""

import pathlib
import subprocess
import tempfile
import textwrap
import unittest

import build_context
import dockerignore

# (pattern, path, excluded?) — one pattern alone.
MATCHES = [
    ("*", "Cargo.toml", True),
    ("*", "crates/core/src/lib.rs", True),  # via the parent "crates"
    ("*.rs", "src/lib.rs", False),  # `*` stops at `/`
    ("src/*.rs", "src/lib.rs", True),
    ("src/*.rs", "src/bin/main.rs", False),
    ("src/?.rs", "src/a.rs", True),
    ("src/?.rs", "src/ab.rs", False),
    ("**/target", "target/debug/braid", True),
    ("**/target", "services/ingest/target/x", True),
    ("**/target", "targets/x", False),
    ("**/*.onnx", "model.onnx", True),
    ("**/*.onnx", "models/all-MiniLM-L6-v2/model.onnx", True),
    ("**/*.onnx", "model.onnx.sha256", False),
    ("docs/**", "docs", False),
    ("docs/**", "docs/a/b.md", True),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("foo**", "foobar/baz", True),  # Docker's prefix shortcut: not "foo/**"
    ("abc.def", "abcZdef", False),  # `.` is literal
    ("a(b)c", "a(b)c", True),
    ("[a-c]x", "bx", True),
    ("[^a-c]x", "bx", False),
    ("[^a-c]x", "dx", True),
    ("\\*x", "*x", True),
    ("\\*x", "ax", False),
]

# (patterns in file order, path, excluded?) — order, `!` re-includes, the last match decides.
RULES = [
    (["*", "!proto/"], "proto/braid/v1/search.proto", False),
    (["*", "!proto/"], "Cargo.toml", True),
    (["*", "!deploy/scripts/export_onnx.py"], "deploy/scripts/export_onnx.py", False),
    (["*", "!deploy/scripts/export_onnx.py"], "deploy/scripts/quantize_onnx.py", True),
    (["*", "!crates/", "**/target/"], "crates/core/target/debug/x", True),
    (["*", "!crates/", "**/target/"], "crates/core/src/lib.rs", False),
    (["*.md", "!README*.md", "README-secret.md"], "README.md", False),
    (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
    (["*.md", "!README*.md", "README-secret.md"], "CHANGES.md", True),
    (["!a.go", "*.go"], "a.go", True),  # a re-include before the exclusion does nothing
    (["*.go", "!a.go"], "a.go", False),
    (["docs", "!docs/README.md"], "docs/README.md", False),
    (["docs", "!docs/README.md"], "docs/other.md", True),
    (["**", "!util/docker/web"], "util/docker/web/foo", False),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    (["/secrets"], "secrets/key", False),  # a raw leading `/` only goes when read from a file
]

# .dockerignore text -> the patterns ignorefile.ReadAll returns.
IGNORE_FILES = [
    ("# comment\n\n  *  \n", ["*"]),
    ("\ufeff*\n", ["*"]),
    ("/secrets\n!/secrets/public/\n", ["secrets", "!secrets/public"]),
    ("./a/../b/\n! c \n", ["b", "!c"]),
    (" # not a comment\n", ["# not a comment"]),
]


class DockerignoreTest(unittest.TestCase):
    def test_single_patterns(self):
        for pattern, path, excluded in MATCHES:
            with self.subTest(pattern=pattern, path=path):
                self.assertEqual(dockerignore.Matcher([pattern]).excluded(path), excluded)

    def test_order_and_reincludes(self):
        for patterns, path, excluded in RULES:
            with self.subTest(patterns=patterns, path=path):
                self.assertEqual(dockerignore.Matcher(patterns).excluded(path), excluded)

    def test_reading_the_file(self):
        for text, patterns in IGNORE_FILES:
            with self.subTest(text=text):
                self.assertEqual(dockerignore.read_ignore_file(text), patterns)

    def test_a_leading_slash_is_the_context_root(self):
        matcher = dockerignore.load("/secrets\n")
        self.assertTrue(matcher.excluded("secrets/key"))
        self.assertFalse(matcher.excluded("deploy/secrets/key"))

    def test_the_deciding_pattern_is_reported(self):
        excluded, decider = dockerignore.load("*\n!deploy/\ndeploy/*.py\n").decide("deploy/x.py")
        self.assertTrue(excluded)
        self.assertEqual(decider.text, "deploy/*.py")

    def test_bad_patterns_are_errors(self):
        for bad in ["!", "[", "a[]b", "x\\"]:
            with self.subTest(pattern=bad), self.assertRaises(dockerignore.PatternError):
                dockerignore.Matcher([bad])


class DockerfileTest(unittest.TestCase):
    def test_sources(self):
        text = textwrap.dedent(
            """\
            # syntax=docker/dockerfile:1
            ARG DIR=crates
            ARG FEATURES=x
            FROM rust AS build
            ARG DIR
            COPY Cargo.toml \\
            # a comment inside the continuation
                 Cargo.lock ./
            COPY ["proto/", "proto/"]
            COPY ${DIR}/core/ crates/core/
            COPY ${FEATURES:-none}/ /f/
            COPY --from=deps /out /out
            COPY --chmod=0755 --link deploy/scripts/a.sh /a.sh
            ADD https://example.com/x.tar.gz /x
            RUN <<EOF
            COPY not/an/instruction /x
            EOF
            COPY <<EOT /etc/config
            inline
            EOT
            RUN --mount=type=bind,source=tests,target=/t --mount=type=cache,target=/c true
            ENV SRC=services
            COPY $SRC/ services/
            """
        )
        got = [(s.line, s.instruction, s.path) for s in build_context.sources(text)]
        self.assertEqual(
            got,
            [
                (6, "COPY", "Cargo.toml"),
                (6, "COPY", "Cargo.lock"),
                (9, "COPY", "proto/"),
                (10, "COPY", "crates/core/"),
                # FEATURES was not re-declared in the stage: empty there.
                (11, "COPY", "none/"),
                (13, "COPY", "deploy/scripts/a.sh"),
                (21, "RUN --mount", "tests"),
                (23, "COPY", "services/"),
            ],
        )

    def test_build_args_override_defaults(self):
        text = "ARG SRC=a\nFROM x\nARG SRC\nCOPY $SRC /s\n"
        self.assertEqual([s.path for s in build_context.sources(text, {"SRC": "b"})], ["b"])

    def test_documented_command_lines(self):
        dockerfile, context, args = build_context.parse_docker_build(
            " -f deploy/Dockerfile --target service -t braid:dev --build-arg A=1 .  trailing"
        )
        self.assertEqual((dockerfile, context, args), ("deploy/Dockerfile", ".", {"A": "1"}))


class CheckTest(unittest.TestCase):
    """The whole check on a scratch git repository."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.root = pathlib.Path(self.dir.name).resolve()
        subprocess.run(["git", "init", "-q", str(self.root)], check=True)
        self.write("deploy/scripts/export.py", "")
        self.write("deploy/scripts/quantize.py", "")
        self.write("src/main.rs", "")
        self.write(
            "deploy/Dockerfile",
            "FROM x\nCOPY src/ src/\n"
            "COPY deploy/scripts/export.py deploy/scripts/quantize.py /t/\n",
        )
        self.write("README.md", "Build: `docker build -f deploy/Dockerfile .`\n")

    def tearDown(self):
        self.dir.cleanup()

    def write(self, name, text):
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def problems(self):
        files = build_context.repo_files(self.root)
        builds = build_context.all_builds(self.root, files)
        self.assertEqual(len(builds), 1, [b.origin for b in builds])
        return build_context.check(builds[0], self.root, files)[0]

    def test_a_copied_file_that_dockerignore_excludes_fails(self):
        self.write(".dockerignore", "*\n!src/\n!deploy/scripts/export.py\n")
        [problem] = self.problems()
        self.assertIn("deploy/Dockerfile:3 COPY deploy/scripts/quantize.py", problem)
        self.assertIn("excluded by .dockerignore (pattern '*')", problem)

    def test_re_including_it_passes(self):
        self.write(
            ".dockerignore",
            "*\n!src/\n!deploy/scripts/export.py\n!deploy/scripts/quantize.py\n",
        )
        self.assertEqual(self.problems(), [])

    def test_an_excluded_directory_fails(self):
        self.write(".dockerignore", "src\n")
        [problem] = self.problems()
        self.assertIn("COPY src/", problem)
        self.assertIn("every file below it is excluded", problem)

    def test_a_missing_or_git_ignored_file_fails(self):
        self.write(".gitignore", "deploy/scripts/quantize.py\n")
        [problem] = self.problems()
        self.assertIn("quantize.py", problem)
        self.assertIn("not in the build context", problem)

    def test_the_dockerfile_own_ignore_file_wins(self):
        self.write(".dockerignore", "")
        self.write("deploy/Dockerfile.dockerignore", "deploy/scripts/quantize.py\n")
        [problem] = self.problems()
        self.assertIn("excluded by deploy/Dockerfile.dockerignore", problem)

    def test_wildcards_need_a_surviving_match(self):
        self.write("deploy/Dockerfile", "FROM x\nCOPY deploy/scripts/*.py /t/\n")
        self.write(".dockerignore", "deploy/scripts/*.py\n")
        [problem] = self.problems()
        self.assertIn("every match is excluded", problem)
        self.write(".dockerignore", "deploy/scripts/q*.py\n")
        self.assertEqual(self.problems(), [])


if __name__ == "__main__":
    unittest.main()
