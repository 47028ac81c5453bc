"""Topic patterns with AMQP topic-exchange semantics: `*` is exactly one word, `#` zero or more words.

The same pattern string binds a RabbitMQ queue and filters in-process, so both transports agree.
"""

from __future__ import annotations

import re
from functools import lru_cache

from ionflux.core.errors import InvalidRequest

_WORD = re.compile(r"^[a-z0-9_]+$")


class TopicPattern:
    __slots__ = ("_regex", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._regex = re.compile(_to_regex(pattern))

    def matches(self, topic: str) -> bool:
        return self._regex.fullmatch(topic) is not None

    def __repr__(self) -> str:
        return f"TopicPattern({self.pattern!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TopicPattern) and other.pattern == self.pattern

    def __hash__(self) -> int:
        return hash(self.pattern)


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> TopicPattern:
    """A compiled pattern (cached); raises InvalidRequest naming `topic` if it is malformed."""
    return TopicPattern(pattern)


def _to_regex(pattern: str) -> str:
    words = pattern.split(".") if isinstance(pattern, str) and pattern else []
    if not words or len(pattern) > 255 or any(w not in ("*", "#") and not _WORD.match(w) for w in words):
        raise InvalidRequest(
            f"topic pattern {pattern!r} is not valid: use dot-separated words of lower-case letters, "
            "digits and '_', where '*' stands for one word and '#' for zero or more, "
            "e.g. platform.shopify.events.orders.* or platform.#",
            field="topic",
        )
    collapsed: list[str] = []
    for word in words:  # '#.#' means the same as '#'
        if not (word == "#" and collapsed and collapsed[-1] == "#"):
            collapsed.append(word)
    if collapsed == ["#"]:
        return r"[^.]+(?:\.[^.]+)*"
    parts: list[str] = []
    for i, word in enumerate(collapsed):
        if word == "#":
            # leading '#' eats the dot after it; any other eats the dot before it
            parts.append(r"(?:[^.]+\.)*" if i == 0 else r"(?:\.[^.]+)*")
            continue
        piece = "[^.]+" if word == "*" else re.escape(word)
        starts = i == 0 or (i == 1 and collapsed[0] == "#")
        parts.append(piece if starts else r"\." + piece)
    return "".join(parts)
