"""The Docker build as far as it can be taken without a Docker engine: the Dockerfile's
instructions (parsed by dockerfile-parse) and the build context that `.dockerignore` lets through.

`.dockerignore` follows Docker's documented rules: one pattern per line, `#` comments,
Go `filepath.Match` syntax plus `**` (any number of directories), `!` re-includes, the last
matching pattern wins, and a pattern matching a directory matches everything under it.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
BAKED_CONFIG = ROOT / "deploy" / "docker" / "config.yaml"


@dataclass(frozen=True)
class IgnorePattern:
    text: str
    exception: bool
    regex: re.Pattern[str]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.index("]", i)
            out.append("[" + pattern[i + 1 : end].replace("!", "^", 1) + "]")
            i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("^" + "".join(out) + "$")


def ignore_patterns(path: Path = DOCKERIGNORE) -> list[IgnorePattern]:
    patterns = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        text = line[1:].strip() if exception else line
        text = text.strip("/")
        text = re.sub(r"/+", "/", text)
        patterns.append(IgnorePattern(text, exception, _pattern_regex(text)))
    return patterns


def is_excluded(relative: str, patterns: list[IgnorePattern]) -> bool:
    """Whether `relative` (a path inside the context, `/`-separated) is left out of the context."""
    parts = relative.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]  # the path and its ancestors
    excluded = False
    for pattern in patterns:
        if any(pattern.regex.match(candidate) for candidate in candidates):
            excluded = not pattern.exception
    return excluded


def context_files(root: Path = ROOT, patterns: list[IgnorePattern] | None = None) -> list[str]:
    """Every file the build context holds, relative and sorted."""
    patterns = ignore_patterns() if patterns is None else patterns
    exceptions = [p.text for p in patterns if p.exception]
    found: list[str] = []

    def walk(directory: Path) -> None:
        for entry in sorted(directory.iterdir()):
            relative = entry.relative_to(root).as_posix()
            if entry.is_dir() and not entry.is_symlink():
                # Descend into an excluded directory only when an exception may re-include below it.
                if is_excluded(relative, patterns) and not any(
                    e == relative or e.startswith(relative + "/") for e in exceptions
                ):
                    continue
                walk(entry)
            elif not is_excluded(relative, patterns):
                found.append(relative)

    walk(root)
    return found


def copy_context(destination: Path, root: Path = ROOT) -> list[str]:
    """Copy the build context (what `docker build .` would send) into `destination`."""
    files = context_files(root)
    for relative in files:
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / relative, target)
    return files


@dataclass(frozen=True)
class Instruction:
    instruction: str
    value: str
    line: int


@dataclass(frozen=True)
class Stage:
    base: str  # as written, e.g. ${PYTHON_IMAGE}
    name: str | None
    instructions: tuple[Instruction, ...]

    def all(self, instruction: str) -> list[Instruction]:
        return [i for i in self.instructions if i.instruction == instruction]

    def last(self, instruction: str) -> Instruction:
        found = self.all(instruction)
        assert found, f"no {instruction} in the stage FROM {self.base}"
        return found[-1]


def parse_dockerfile(path: Path = DOCKERFILE) -> tuple[dict[str, str], list[Stage]]:
    """The global ARG defaults and the stages, in order."""
    parser = DockerfileParser(path=str(path))
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    current: list[Instruction] | None = None
    base = ""
    name: str | None = None
    for item in parser.structure:
        instruction = Instruction(item["instruction"], item["value"], item["startline"] + 1)
        if instruction.instruction == "COMMENT":
            continue
        if instruction.instruction == "FROM":
            if current is not None:
                stages.append(Stage(base, name, tuple(current)))
            words = instruction.value.split()
            base = words[0]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            current = []
        elif current is None:
            assert instruction.instruction == "ARG", instruction
            key, _, default = instruction.value.partition("=")
            global_args[key.strip()] = default.strip()
        else:
            current.append(instruction)
    assert current is not None, "no FROM"
    stages.append(Stage(base, name, tuple(current)))
    return global_args, stages


def expand_args(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], text)


@dataclass(frozen=True)
class Copy:
    sources: tuple[str, ...]
    destination: str
    from_stage: str | None
    chown: str | None


def parse_copy(instruction: Instruction) -> Copy:
    words = instruction.value.split()
    flags = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    assert len(words) >= 2, instruction
    return Copy(tuple(words[:-1]), words[-1], flags.get("from"), flags.get("chown"))


def exec_form(value: str) -> list[str]:
    """ENTRYPOINT / CMD in exec (JSON) form."""
    parsed: Any = json.loads(value)
    assert isinstance(parsed, list) and all(isinstance(v, str) for v in parsed), value
    return parsed


def healthcheck(value: str) -> tuple[dict[str, str], list[str]]:
    """HEALTHCHECK's options and its command (exec form)."""
    options_text, sep, command = value.partition("CMD")
    assert sep, value
    options = {}
    for word in options_text.split():
        key, _, option = word.lstrip("-").partition("=")
        options[key] = option
    return options, exec_form(command.strip())
