"""`minfer slides build`: every deck in slides/ -> slides/build/<deck>.html (self-contained) and .pdf."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..labs import REPO
from .deck import Deck, load_deck
from .markdown import SlideRenderer
from .page import render_page
from .pdf import find_chromium, print_pdf

SLIDES = REPO / "slides"
PACKAGE = Path(__file__).resolve().parents[2] / "minfer"  # the engine: the architecture diagram reads it
FIRST = "intro"  # the course introduction comes first; the labs follow in name order


@dataclass(frozen=True)
class Built:
    deck: Deck
    html: Path
    pdf: Path | None


def find_decks(folder: Path = SLIDES) -> dict[str, Path]:
    paths = sorted(folder.glob("*.md"), key=lambda p: (p.stem != FIRST, p.stem))
    return {p.stem: p for p in paths if p.stem.lower() != "readme"}


def write_atomic(path: Path, text: str) -> None:
    """A reader (a browser reloading the deck) never sees a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def render_deck(deck: Deck, draw: Callable[[str], bytes]) -> str:
    renderer = SlideRenderer(REPO, deck.source.parent, draw)
    bodies = []
    for i, slide in enumerate(deck.slides, 1):
        try:
            bodies.append(renderer.render(slide.markdown))
        except ValueError as e:
            raise ValueError(f"{deck.source.name}, slide {i}: {e}") from e
    return render_page(deck, bodies)


def build(names: list[str] | None = None, out: Path | None = None, pdf: bool = True, model: str = "auto",
          log: Callable[[str], None] = print) -> list[Built]:
    from .diagrams import DiagramContext  # matplotlib: imported only when a build runs

    decks = find_decks()
    if unknown := [n for n in names or [] if n not in decks]:
        raise ValueError(f"unknown deck(s) {unknown}; decks in {SLIDES}: {', '.join(decks) or 'none'}")
    out = Path(out) if out else SLIDES / "build"
    out.mkdir(parents=True, exist_ok=True)
    browser = find_chromium() if pdf else None
    if pdf and browser is None:
        log("note: no Chromium found (Debian: apt-get install chromium), so no PDFs; the HTML decks are built")
    diagrams = DiagramContext(PACKAGE, model=model, log=log)
    built = []
    for name in names or list(decks):
        start = time.perf_counter()
        deck = load_deck(decks[name])
        html = out / f"{name}.html"
        write_atomic(html, render_deck(deck, diagrams.png))
        pdf_path = None
        if browser:
            pdf_path = out / f"{name}.pdf"
            print_pdf(browser, html, pdf_path)
        built.append(Built(deck, html, pdf_path))
        made = ", ".join(p.name for p in (html, pdf_path) if p)
        log(f"{name}: {len(deck.slides)} slides -> {made} ({time.perf_counter() - start:.1f} s)")
    return built
