"""Prompt-injection and jailbreak patterns (../shared/spec/detectors.md §3, "Injection patterns").

Case-insensitive: the patterns are written in lower case and matched on lower-cased text.

The receiver scans content with these before it hashes it; only the matched labels travel on.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

try:
    # google-re2 reads a text once for all the patterns (RE2::Set). The daemon depends on it; the
    # in-process SDK, which carries these detectors, uses it where it is installed. The answers are
    # the same either way (tests/detectors/test_prompt_injection.py).
    import re2
except ImportError:  # pragma: no cover - the SDK without it: the anchor scan below
    re2 = None

# (label, regex) in the order the spec lists them. Case-insensitive.
INJECTION_PATTERNS: tuple[tuple[str, str], ...] = (
    (
        "ignore_instructions",
        r"\bignore\s+(?:(?:all|any|the|your|of|my)\s+)*(?:previous|prior|above)\s+(?:\w+\s+)?instructions?\b",
    ),
    (
        "disregard_instructions",
        r"\bdisregard\s+(?:(?:all|any|the|your|of|my)\s+)*(?:previous|prior|above)\s+(?:\w+\s+)?instructions?\b",
    ),
    (
        "forget_instructions",
        r"\bforget\s+(?:(?:all|any|the|your|of|my)\s+)*(?:previous|prior|above)\s+(?:\w+\s+)?instructions?\b",
    ),
    ("you_are_now", r"\byou\s+are\s+now\b"),
    ("new_role", r"\byour\s+new\s+(?:role|persona|identity|instructions)\s+(?:is|are)\b"),
    ("act_as", r"\bact\s+as\s+(?:if\s+you\s+are\s+)?(?:a|an|the)\b"),
    ("pretend", r"\bpretend\s+(?:you\s+are|to\s+be)\b"),
    ("do_not_follow", r"\bdo\s+not\s+follow\s+(?:your\s+)?(?:previous|prior|original)\b"),
    ("system_colon", r"\bsystem:\s*you\s+are\b"),
    ("system_tag", r"\[system\]"),
    ("im_start", r"<\|im_start\|>"),
    ("system_pipe", r"<\|system\|>"),
    ("hash_system", r"###\s*system\b"),
    ("jailbreak", r"\bjailbreak"),
    ("dan_mode", r"\bdan\s+mode\b"),
    ("developer_mode", r"\bdeveloper\s+mode\s+(?:enabled|on)\b"),
    ("override_safety", r"\boverride\s+(?:safety|guidelines|restrictions)\b"),
    ("bypass_safety", r"\bbypass\s+(?:safety|restrictions|filters)\b"),
)

# Each regex is matched against the lower-cased text, and only where plain substrings every match
# must contain are present: ``in`` is a fast substring search, and without IGNORECASE the regex
# engine can use its literal-prefix search (scanning every pattern at every position of a 4 KB
# prompt otherwise costs about a millisecond). The patterns are grouped by one such substring they
# share, so a text that has none of the 11 is read 11 times, not once per pattern; each pattern's
# own anchor is searched only inside its group. Short anchors cost the most per pass ("now" is a
# slower search than "instruction"), and a clean 2.4 KB prompt is read in about half the time.
_GROUPS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    # (shared anchor, ((label, the pattern's own anchor), ...))
    (
        "instruction",
        (
            ("ignore_instructions", "ignore"),
            ("disregard_instructions", "disregard"),
            ("forget_instructions", "forget"),
        ),
    ),
    ("you", (("you_are_now", "now"), ("new_role", "your"))),
    ("act", (("act_as", "act"),)),
    ("pretend", (("pretend", "pretend"),)),
    ("follow", (("do_not_follow", "not"),)),
    (
        "system",
        (
            ("system_colon", "system:"),
            ("system_tag", "[system]"),
            ("system_pipe", "<|system|>"),
            ("hash_system", "###"),
        ),
    ),
    ("<|im_start|>", (("im_start", "<|im_start|>"),)),
    ("jailbreak", (("jailbreak", "jailbreak"),)),
    ("mode", (("dan_mode", "dan"), ("developer_mode", "developer"))),
    ("override", (("override_safety", "override"),)),
    ("bypass", (("bypass_safety", "bypass"),)),
)


class _Pattern:
    """A pattern matched the fast way. A leading ``\\b`` keeps Python's regex engine from
    searching for the pattern's literal prefix (it tries the pattern at every position instead:
    ~35 µs per 2.7 KB of English, where "you" and "act" are everywhere, against ~1 µs). So the
    pattern is compiled without it and the word boundary is checked at each candidate start."""

    __slots__ = ("_boundary", "_regex")

    def __init__(self, regex: str) -> None:
        self._boundary = regex.startswith(r"\b")
        self._regex = re.compile(regex[2:] if self._boundary else regex)

    def search(self, text: str) -> bool:
        if not self._boundary:
            return self._regex.search(text) is not None
        pos = 0
        while (match := self._regex.search(text, pos)) is not None:
            start = match.start()
            # What \b means before a word character: the text's start or a non-word character
            # (str patterns: \w is alphanumeric or "_", as str.isalnum() counts them).
            if start == 0 or not (text[start - 1].isalnum() or text[start - 1] == "_"):
                return True
            pos = start + 1
        return False


_REGEX = {label: _Pattern(regex) for label, regex in INJECTION_PATTERNS}
_COMPILED = tuple(
    (shared, tuple((label, anchor, _REGEX[label]) for label, anchor in members)) for shared, members in _GROUPS
)

# Inputs up to this size are scanned whole; longer ones by their head and tail.
SCAN_WHOLE_LIMIT = 32_768
SCAN_EDGE = 16_384


def _labels_by_anchors(lowered: str) -> list[str]:
    found: list[str] = []
    for shared, members in _COMPILED:
        if shared in lowered:
            found += [label for label, anchor, regex in members if anchor in lowered and regex.search(lowered)]
    return found


# With google-re2, one pass of an RE2::Set finds the patterns a text may match, and only those are
# then matched as above (~5 µs per 2 KB of English against ~23 for the anchors, one-off). The set
# holds each pattern widened, so that it matches wherever Python's regex does: \b dropped, \s as
# every character Python counts as whitespace (RE2's \s is ASCII only), and \w as any character
# that is not whitespace. Python's own regex decides, so \b and Unicode keep Python's meaning.
# (Every such character is in the Basic Multilingual Plane; reading all of Unicode would add ~0.1 s
# to every import.)
_WHITESPACE = "".join(f"\\x{{{c:x}}}" for c in range(0x10000) if chr(c).isspace())


def _widened(regex: str) -> str:
    return regex.replace(r"\b", "").replace(r"\s", f"[{_WHITESPACE}]").replace(r"\w", f"[^{_WHITESPACE}]")


def _prefilter() -> object | None:
    if re2 is None:
        return None
    options = re2.Options()
    options.max_mem = 64 << 20  # the DFA's cache: the set never runs out of it on 32 KB of text
    candidates = re2.Set.SearchSet(options)
    for _, regex in INJECTION_PATTERNS:
        candidates.Add(_widened(regex))
    candidates.Compile()
    return candidates


_PREFILTER = _prefilter()
_LABELS = tuple(label for label, _ in INJECTION_PATTERNS)


def _labels(lowered: str) -> list[str]:
    if _PREFILTER is None:
        return _labels_by_anchors(lowered)
    candidates = _PREFILTER.Match(lowered)  # type: ignore[attr-defined]
    if candidates is None:
        return []
    return [_LABELS[i] for i in sorted(candidates) if _REGEX[_LABELS[i]].search(lowered)]


@dataclass(frozen=True, slots=True)
class InjectionMatch:
    matched_patterns: tuple[str, ...]  # labels, in the spec's order
    input_length: int


def scan_injection(text: str) -> InjectionMatch | None:
    """Labels of the injection patterns found in ``text``, or None when there are none."""
    labels = scanned_labels(text)
    return InjectionMatch(matched_patterns=labels, input_length=len(text)) if labels else None


def scan_messages(texts: Sequence[str]) -> InjectionMatch | None:
    """The patterns found in any one of ``texts`` (a prompt's messages), each text scanned on its
    own and once per process however many calls resend it; the input length is that of the
    texts joined by newlines."""
    found: set[str] = set()
    for text in texts:
        found.update(scanned_labels(text))
    if not found:
        return None
    labels = tuple(label for label, _ in INJECTION_PATTERNS if label in found)
    return InjectionMatch(matched_patterns=labels, input_length=sum(map(len, texts)) + max(0, len(texts) - 1))


# Labels by the scanned text's (hash, length). An agent resends its conversation in every LLM
# call, so the same messages and tool results come back again and again: each is scanned once per
# process. Python's own string hash keys it (64 bits, salted per process, computed once per string
# object), so no text is kept; a collision among the entries kept is out of reach.
_SCANNED: OrderedDict[tuple[int, int], tuple[str, ...]] = OrderedDict()
MAX_SCANNED = 8192


def scanned_labels(text: str) -> tuple[str, ...]:
    """The labels ``text`` matches, in the spec's order (empty: none), scanned once per process."""
    key = (hash(text), len(text))
    labels = _SCANNED.get(key)
    if labels is not None:
        return labels
    if len(text) <= SCAN_WHOLE_LIMIT:
        found = set(_labels(text.lower()))
    else:
        found = set(_labels(text[:SCAN_EDGE].lower())) | set(_labels(text[-SCAN_EDGE:].lower()))
    labels = tuple(label for label, _ in INJECTION_PATTERNS if label in found) if found else ()
    if len(_SCANNED) >= MAX_SCANNED:
        _SCANNED.popitem(last=False)  # the oldest (one C call, safe between threads): a bound, not an LRU
    _SCANNED[key] = labels
    return labels
