"""Checks every Docker build of the repository the way the builder sees its context: each
`COPY`/`ADD` source (and `RUN --mount=type=bind` source) of a Dockerfile must exist in the
build context AND survive `.dockerignore`. No Docker engine is needed.

usage: build_context.py [REPO_ROOT]

The builds are taken from:
  - every `build:` of docker-compose.yml / compose.yaml (context, dockerfile, args);
  - every `docker build` / `docker buildx build` command line in the top-level *.md files,
    docs/, deploy/, helm/ and the Dockerfiles' own comments (-f, --build-arg, the context);
  - every other Dockerfile of the repository, with its own directory as the context (what
    `docker build <dir>` does).
Every stage is checked, whatever the target: a broken stage is a broken Dockerfile.

The context holds what a fresh clone holds: tracked files plus new files git does not ignore
(`git ls-files --cached --others --exclude-standard`). `.dockerignore` is applied with Docker's
own rules (dockerignore.py); BuildKit's per-Dockerfile ignore file (`<Dockerfile>.dockerignore`)
takes precedence over the context's `.dockerignore`. Sources are expanded as the builder
expands them (ARG defaults, build args, ENV); `--from=` copies, heredocs and URLs are not
context files and are skipped; a wildcard source needs at least one match.

Exit status 1 with one line per problem; 0 with one summary line per build.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import posixpath
import re
import shlex
import subprocess
import sys

import dockerignore

# --- Dockerfiles ----------------------------------------------------------------------------


@dataclasses.dataclass
class Source:
    line: int
    instruction: str  # COPY, ADD or RUN --mount
    path: str  # variables expanded


_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9_-]*)\s*=\s*(.*?)\s*$")
_HEREDOC = re.compile(r"<<(-?)([\"']?)([A-Za-z_][A-Za-z0-9_]*)\2")
_VAR = re.compile(
    r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))"
)
_URL = re.compile(r"^(https?://|git@|git://|ssh://)")


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, instruction) with continuations joined, comments dropped and
    heredoc bodies skipped; honours the `# escape=` parser directive."""
    lines = text.splitlines()
    escape = "\\"
    for raw in lines:  # parser directives come first or not at all
        m = _DIRECTIVE.match(raw.strip())
        if not m:
            break
        if m.group(1).lower() == "escape" and m.group(2) in ("\\", "`"):
            escape = m.group(2)
    out: list[tuple[int, str]] = []
    i, n = 0, len(lines)
    while i < n:
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        start, parts = i + 1, []
        while i < n:
            line = lines[i].rstrip()
            i += 1
            if not line.endswith(escape):
                parts.append(line)
                break
            parts.append(line[: -len(escape)])
            # Empty and comment lines inside a continuation are skipped.
            while i < n and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
                i += 1
        instruction = " ".join(p.strip() for p in parts)
        for m in _HEREDOC.finditer(instruction):
            strip_tabs, word = m.group(1) == "-", m.group(3)
            while i < n:
                body = lines[i].lstrip("\t") if strip_tabs else lines[i]
                i += 1
                if body == word:
                    break
        out.append((start, instruction))
    return out


def expand(word: str, env: dict[str, str]) -> str:
    """$VAR, ${VAR}, ${VAR:-default}, ${VAR:+alternative} (and the forms without `:`)."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(5)
        colon, op, alt = m.group(2), m.group(3), m.group(4)
        value = env.get(name)
        unset = value is None or (colon == ":" and value == "")
        if op == "-":
            return alt if unset else value
        if op == "+":
            return "" if unset else alt
        return value or ""

    return _VAR.sub(sub, word)


def _words(rest: str) -> list[str]:
    rest = rest.strip()
    if rest.startswith("["):
        try:
            parsed = json.loads(rest)
            if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
                return parsed
        except json.JSONDecodeError:
            pass
    return shlex.split(rest)


def sources(text: str, build_args: dict[str, str] | None = None) -> list[Source]:
    """Every build-context path the Dockerfile reads. Variables are expanded as the builder
    does: a global ARG (before the first FROM) is seen inside a stage only once the stage
    declares it again; build args override ARG defaults; ENV values apply after they are set."""
    build_args = build_args or {}
    global_args: dict[str, str] = {}
    env: dict[str, str] = {}
    in_stage = False
    found: list[Source] = []
    for number, instruction in logical_lines(text):
        keyword, _, rest = instruction.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            in_stage, env = True, {}
        elif keyword == "ARG":
            scope = env if in_stage else global_args
            for arg in shlex.split(rest):
                name, has_default, default = arg.partition("=")
                if name in build_args:
                    scope[name] = build_args[name]
                elif has_default:
                    seen = {**global_args, **env} if in_stage else global_args
                    scope[name] = expand(default, seen)
                elif in_stage and name in global_args:
                    scope[name] = global_args[name]
        elif keyword == "ENV" and in_stage:
            args = shlex.split(rest)
            if len(args) >= 2 and "=" not in args[0]:
                env[args[0]] = " ".join(args[1:])  # legacy `ENV name value`
            else:
                for arg in args:
                    name, _, value = arg.partition("=")
                    env[name] = expand(value, env)
        elif keyword in ("COPY", "ADD"):
            words = _words(rest)
            if any(w.startswith("--from=") for w in words):
                continue  # another stage, an image or a named context
            paths = [w for w in words if not w.startswith("--")]
            for src in paths[:-1]:  # the last one is the destination
                if src.startswith("<<") or (keyword == "ADD" and _URL.match(src)):
                    continue
                found.append(Source(number, keyword, expand(src, env)))
        elif keyword == "RUN":
            for mount in re.findall(r"--mount=(\S+)", rest):
                opts = dict((kv.split("=", 1) + [""])[:2] for kv in mount.split(",") if kv)
                if opts.get("type", "bind") != "bind" or "from" in opts:
                    continue
                src = opts.get("source") or opts.get("src") or "."
                found.append(Source(number, "RUN --mount", expand(src, env)))
    return found


# --- builds ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Build:
    origin: str  # where the build is declared
    context: pathlib.Path
    dockerfile: pathlib.Path
    args: dict[str, str] = dataclasses.field(default_factory=dict)


_DOCKERFILE = re.compile(r"(^|/)(Dockerfile|Containerfile)(\.[^/]*)?$|\.[Dd]ockerfile$")
_COMPOSE = ("docker-compose.yml", "docker-compose.yaml", "compose.yml", "compose.yaml")
_DOCKER_BUILD = re.compile(r"\b(?:docker|podman)\s+(?:buildx\s+)?build\b([^`\n]*)")
# `docker build` options that take a separate value.
_VALUED = {
    "-t", "--tag", "--target", "--platform", "--progress", "-o", "--output", "--cache-from",
    "--cache-to", "--label", "--secret", "--ssh", "--network", "--build-context", "--iidfile",
    "--metadata-file", "--add-host", "--ulimit", "--shm-size", "-m", "--memory", "--allow",
}


def is_dockerfile(name: str) -> bool:
    return bool(_DOCKERFILE.search(name)) and not name.endswith(".dockerignore")


def repo_files(root: pathlib.Path) -> list[str]:
    """The files a fresh clone has, relative to root."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others"]
            + ["--exclude-standard"],
            check=True,
            capture_output=True,
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(f"build_context: {root} is not a git checkout ({e})") from e
    return sorted({f for f in out.split("\0") if f and (root / f).is_file()})


def compose_builds(root: pathlib.Path, files: list[str]) -> list[Build]:
    import yaml  # installed with kubernetes-validate in the deploy venv

    builds = []
    for name in (f for f in files if posixpath.basename(f) in _COMPOSE):
        base = (root / name).parent
        doc = yaml.safe_load((root / name).read_text()) or {}
        for service, spec in (doc.get("services") or {}).items():
            build = (spec or {}).get("build")
            if build is None:
                continue
            if isinstance(build, str):
                build = {"context": build}
            context = str(build.get("context", "."))
            if "dockerfile_inline" in build or re.match(r"^[a-z]+://|^git@", context):
                continue
            ctx = (base / context).resolve()
            args = build.get("args") or {}
            if isinstance(args, list):
                args = dict((a.split("=", 1) + [""])[:2] for a in args)
            args = {k: str(v) for k, v in args.items() if v is not None and "$" not in str(v)}
            dockerfile = (ctx / build.get("dockerfile", "Dockerfile")).resolve()
            builds.append(Build(f"{name} service {service}", ctx, dockerfile, args))
    return builds


def parse_docker_build(command: str) -> tuple[str | None, str | None, dict[str, str]]:
    """(Dockerfile, context, build args) of the words after `docker build`."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None, None, {}
    dockerfile, args, i = None, {}, 0
    while i < len(words):
        w = words[i]
        if w in ("-f", "--file") and i + 1 < len(words):
            dockerfile = words[i + 1]
            i += 2
        elif w.startswith(("--file=", "-f=")):
            dockerfile = w.split("=", 1)[1]
            i += 1
        elif w == "--build-arg" and i + 1 < len(words):
            k, _, v = words[i + 1].partition("=")
            args[k] = v
            i += 2
        elif w.startswith("--build-arg="):
            k, _, v = w.split("=", 1)[1].partition("=")
            args[k] = v
            i += 1
        elif w in _VALUED:
            i += 2
        elif w.startswith("-"):
            i += 1
        else:
            return dockerfile, w, args
    return dockerfile, None, args


def documented_builds(root: pathlib.Path, files: list[str]) -> list[Build]:
    """`docker build` command lines in the docs, the chart and the Dockerfiles' comments (paths
    relative to the repository root, where the README runs them). A command runs to the end of
    its line or of its inline code span."""
    builds = []
    for name in files:
        top_doc = name.endswith(".md") and "/" not in name
        if not (top_doc or name.startswith(("docs/", "deploy/", "helm/")) or is_dockerfile(name)):
            continue
        if not (name.endswith((".md", ".yaml", ".yml", ".txt", ".tpl")) or is_dockerfile(name)):
            continue
        for number, line in enumerate((root / name).read_text(errors="replace").splitlines(), 1):
            for m in _DOCKER_BUILD.finditer(line):
                dockerfile, context, args = parse_docker_build(m.group(1))
                if context is None or "$" in context or "://" in context or context == "-":
                    continue
                ctx = (root / context).resolve()
                path = (root / dockerfile).resolve() if dockerfile else ctx / "Dockerfile"
                builds.append(Build(f"{name}:{number}", ctx, path, args))
    return builds


def all_builds(root: pathlib.Path, files: list[str]) -> list[Build]:
    builds = compose_builds(root, files) + documented_builds(root, files)
    named = {b.dockerfile for b in builds}
    for name in files:
        path = (root / name).resolve()
        if is_dockerfile(name) and path not in named:
            builds.append(Build(f"{name}, built from its own directory", path.parent, path))
    # One check per distinct (context, Dockerfile, build args), naming every place it is declared.
    unique: dict[tuple, Build] = {}
    for b in builds:
        key = (b.context, b.dockerfile, tuple(sorted(b.args.items())))
        if key in unique:
            unique[key].origin += ", " + b.origin
        else:
            unique[key] = b
    return list(unique.values())


# --- the check ------------------------------------------------------------------------------


def _glob(pattern: str) -> re.Pattern[str]:
    """Go's filepath.Match (what COPY wildcards use): `*`, `?` stop at `/`."""
    out, i = "", 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            out += "[" + pattern[i:end] + "]"
            i = end + 1
        elif ch == "\\" and i < len(pattern):
            out += re.escape(pattern[i])
            i += 1
        else:
            out += re.escape(ch)
    return re.compile(out + r"\Z")


def ignore_file(build: Build) -> pathlib.Path | None:
    own = build.dockerfile.with_name(build.dockerfile.name + ".dockerignore")
    if own.is_file():
        return own
    shared = build.context / ".dockerignore"
    return shared if shared.is_file() else None


def check(build: Build, root: pathlib.Path, files: list[str]) -> tuple[list[str], int]:
    """(problems, number of sources) of one build."""
    where = os.path.relpath(build.dockerfile, root)
    if not build.dockerfile.is_file():
        return [f"{build.origin}: the Dockerfile {where} does not exist"], 0
    try:
        context = build.context.relative_to(root).as_posix()
    except ValueError:
        return [f"{build.origin}: the build context {build.context} is outside the repository"], 0
    prefix = "" if context == "." else context + "/"
    in_context = [f[len(prefix) :] for f in files if f.startswith(prefix)]
    ignore = ignore_file(build)
    ignore_name = os.path.relpath(ignore, root) if ignore else f"{prefix}.dockerignore"
    try:
        matcher = dockerignore.load(ignore.read_text() if ignore else "")
    except dockerignore.PatternError as e:
        return [f"{ignore_name}: {e}"], 0
    verdicts = {f: matcher.decide(f) for f in in_context}
    sent = [f for f, (excluded, _) in verdicts.items() if not excluded]
    sent_dirs: set[str] = set()
    for f in sent:
        d = posixpath.dirname(f)
        while d and d not in sent_dirs:
            sent_dirs.add(d)
            d = posixpath.dirname(d)

    problems = []
    found = sources(build.dockerfile.read_text(), build.args)
    for src in found:
        label = f"{where}:{src.line} {src.instruction} {src.path} ({build.origin})"
        path = dockerignore.go_clean(src.path.lstrip("/") or ".")
        if path == ".." or path.startswith("../"):
            problems.append(f"{label}: outside the build context")
        elif path == ".":
            if not sent:
                problems.append(f"{label}: nothing in the context survives {ignore_name}")
        elif any(c in path for c in "*?["):
            rx = _glob(path)
            if not any(rx.match(p) for p in (*sent, *sent_dirs)):
                what = "every match is excluded by " + ignore_name
                if not any(rx.match(f) for f in in_context):
                    what = "matches nothing in the context " + context
                problems.append(f"{label}: {what}")
        elif path in verdicts:
            excluded, decider = verdicts[path]
            if excluded:
                problems.append(
                    f"{label}: excluded by {ignore_name} (pattern {decider.text!r}); "
                    f"re-include it with '!{path}' after that line"
                )
        elif any(f.startswith(path + "/") for f in in_context):
            if path not in sent_dirs:
                below = next(f for f in in_context if f.startswith(path + "/"))
                decider = matcher.decide(below)[1]
                problems.append(
                    f"{label}: every file below it is excluded by {ignore_name} "
                    f"(pattern {decider.text if decider else '?'!r})"
                )
        else:
            problems.append(f"{label}: not in the build context {context}")
    return problems, len(found)


def main(argv: list[str]) -> int:
    root = pathlib.Path(argv[1] if len(argv) > 1 else ".").resolve()
    files = repo_files(root)
    builds = all_builds(root, files)
    if not builds:
        print("build context: no Dockerfile in the repository", file=sys.stderr)
        return 1
    failed = False
    for build in builds:
        problems, count = check(build, root, files)
        for p in problems:
            print(f"build context: {p}")
        failed |= bool(problems)
        print(
            f"build context {os.path.relpath(build.context, root)}/ of "
            f"{os.path.relpath(build.dockerfile, root)} ({build.origin}): {count} sources, "
            f"{'FAILED' if problems else 'ok'}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
