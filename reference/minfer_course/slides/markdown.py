"""One slide's Markdown -> HTML (markdown-it-py), with the two directives the decks use.

- `![alt](diagram:NAME)` draws diagram NAME now (diagrams/) and embeds it; any other image is read
  from disk next to the deck and embedded too. Everything becomes a data: URI, because a deck is one
  file that must open offline; a remote image is refused at build time.
- A fence ```` ```mistakes lab1 ```` lists the lab's known-wrong solutions (mistakes.py); its body
  (`- name: description` lines) is the fallback for a lab whose grader folder does not exist yet.
"""
from __future__ import annotations

import base64
import html
import mimetypes
import re
from pathlib import Path
from typing import Callable

from markdown_it import MarkdownIt

from .mistakes import mistakes_for

REMOTE = re.compile(r"^([a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)


def data_uri(payload: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


class SlideRenderer:
    def __init__(self, repo: Path, deck_dir: Path, draw: Callable[[str], bytes]) -> None:
        """`draw(name)` returns diagram NAME as PNG bytes."""
        self.repo, self.deck_dir, self.draw = repo, deck_dir, draw
        self.md = MarkdownIt("commonmark", {"html": True}).enable("table")
        # markdown-it quietly leaves links it deems unsafe (file:, ...) as text; the decks are ours,
        # so accept every link and let image_src refuse what a deck cannot embed, loudly
        self.md.validateLink = lambda url: True
        # markdown-it binds a rule to its renderer (function.__get__): plain functions, not our methods
        self.md.add_render_rule("image", lambda renderer, *args: self._image(renderer, *args))
        self.md.add_render_rule("fence", lambda renderer, *args: self._fence(renderer, *args))

    def render(self, markdown: str) -> str:
        return self.md.render(markdown)

    def image_src(self, src: str) -> str:
        if src.startswith("diagram:"):
            return data_uri(self.draw(src.removeprefix("diagram:")), "image/png")
        if src.startswith("data:"):
            return src
        if REMOTE.match(src):
            raise ValueError(f"image {src!r} is a URL, and a deck must open offline: put the file next to the deck or draw it")
        path = (self.deck_dir / src).resolve()
        mime = mimetypes.guess_type(path.name)[0]
        if not path.is_file() or not mime or not mime.startswith("image/"):
            raise ValueError(f"image {src!r}: no image file at {path}")
        return data_uri(path.read_bytes(), mime)

    def _image(self, renderer, tokens, idx, options, env) -> str:
        token = tokens[idx]
        token.attrSet("src", self.image_src(str(token.attrGet("src"))))
        return renderer.image(tokens, idx, options, env)

    def _fence(self, renderer, tokens, idx, options, env) -> str:
        token = tokens[idx]
        kind, _, lab = token.info.strip().partition(" ")
        if kind != "mistakes":
            return renderer.fence(tokens, idx, options, env)
        if not lab.strip():
            raise ValueError("a mistakes fence names its lab: ```mistakes lab1")
        lab = lab.strip()
        mistakes, from_grader = mistakes_for(self.repo, lab, token.content)
        items = "".join(f"<li><code>{html.escape(m.name)}</code> {html.escape(m.description)}</li>" for m in mistakes)
        where = f"grader/wrong_solutions/{lab}/"
        note = (f"{len(mistakes)} known-wrong solutions in <code>{where}</code>: each must fail a hidden test"
                if from_grader else f"planned: <code>{where}</code> does not exist yet")
        return f'<ul class="mistakes">{items}</ul>\n<p class="source">{note}</p>\n'
