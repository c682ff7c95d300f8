"""A deck's source: a little front matter, then slides separated by lines that are exactly `---`.

    ---
    title: Lab 1 — Memory management
    subtitle: an allocator and a paged KV cache
    ---
    # First slide
    ---
    <!-- class: cols -->
    ## Second slide

A `<!-- class: NAME ... -->` comment at the top of a slide adds layout classes (see deck.css).
A `---` inside a fenced code block is code, not a separator.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

SEPARATOR = "---"
FENCE = re.compile(r"^\s*(```|~~~)")
CLASS_COMMENT = re.compile(r"^\s*<!--\s*class:\s*(?P<names>[\w\s-]+?)\s*-->\s*$")


@dataclass(frozen=True)
class Slide:
    markdown: str
    classes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Deck:
    name: str  # the file's stem: intro, lab1_allocator, ...
    source: Path
    meta: dict[str, str] = field(default_factory=dict)
    slides: tuple[Slide, ...] = ()

    @property
    def title(self) -> str:
        return self.meta.get("title", self.name)


def split_slides(text: str) -> list[str]:
    """The chunks between separator lines, skipping separators inside code fences."""
    chunks: list[list[str]] = [[]]
    in_fence = False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
        if line.rstrip() == SEPARATOR and not in_fence:
            chunks.append([])
        else:
            chunks[-1].append(line)
    return ["\n".join(c).strip() for c in chunks]


def parse_front_matter(text: str, where: str) -> tuple[dict[str, str], str]:
    """`key: value` lines between two leading `---` lines (no YAML: the decks need strings only)."""
    lines = text.splitlines()
    if not lines or lines[0].rstrip() != SEPARATOR:
        return {}, text
    try:
        end = next(i for i, line in enumerate(lines[1:], 1) if line.rstrip() == SEPARATOR)
    except StopIteration:
        raise ValueError(f"{where}: front matter opened by '---' on line 1 is never closed") from None
    meta = {}
    for n, line in enumerate(lines[1:end], 2):
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            raise ValueError(f"{where}:{n}: front matter lines are 'key: value', got {line!r}")
        meta[key.strip()] = value.strip()
    return meta, "\n".join(lines[end + 1:])


def parse_slide(chunk: str) -> Slide:
    first, _, rest = chunk.partition("\n")
    if m := CLASS_COMMENT.match(first):
        return Slide(rest.strip(), tuple(m["names"].split()))
    return Slide(chunk)


def load_deck(path: Path) -> Deck:
    text = path.read_text(encoding="utf-8")
    meta, body = parse_front_matter(text, str(path))
    slides = [parse_slide(chunk) for chunk in split_slides(body)]
    # an empty slide is always a mistake (two separators in a row, a stray one at the end)
    if empty := [i for i, s in enumerate(slides, 1) if not s.markdown]:
        raise ValueError(f"{path}: slide(s) {empty} are empty; remove the extra '---'")
    return Deck(path.stem, path, meta, tuple(slides))
