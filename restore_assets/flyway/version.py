"""Migration versions: compared numerically part by part (`0002` = `2` = `2.0`), text kept."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import total_ordering

# MigrationVersion.tokenize: split at a dot before a digit, each part a BigInteger.
_SPLIT = re.compile(r"\.(?=\d)")
_PART = re.compile(r"[+-]?\d+")


@total_ordering
@dataclass(frozen=True)
class Version:
    text: str
    parts: tuple[int, ...] = field(compare=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> Version:
        """`text` as Flyway stores it (underscores already turned into dots)."""
        pieces = _SPLIT.split(text)
        if not all(_PART.fullmatch(p) for p in pieces):
            raise ValueError(f"not a version: {text!r}")
        parts = tuple(int(p) for p in pieces)
        while len(parts) > 1 and parts[-1] == 0:
            parts = parts[:-1]
        return cls(text, parts)

    def _key(self) -> tuple[int, ...]:
        return self.parts

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self._key() == other._key()

    def __lt__(self, other: Version) -> bool:
        a, b = list(self.parts), list(other.parts)
        width = max(len(a), len(b))
        return a + [0] * (width - len(a)) < b + [0] * (width - len(b))

    def __hash__(self) -> int:
        return hash(self.parts)

    def __str__(self) -> str:
        return self.text
