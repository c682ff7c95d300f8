"""The HTML page of a deck: every slide, the stylesheet and the script inline, in one file.

The Content-Security-Policy forbids every load that is not inline or a data: URI, so a deck that
slipped in a remote font or image fails visibly (and the browser test notices) instead of working
only while online.
"""
from __future__ import annotations

import html
from importlib import resources

from .deck import Deck

CSP = "default-src 'none'; img-src data:; font-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def render_page(deck: Deck, bodies: list[str]) -> str:
    """`bodies`: each slide's rendered HTML, in order."""
    title = html.escape(deck.title)
    sections = []
    for i, (slide, body) in enumerate(zip(deck.slides, bodies, strict=True), 1):
        classes = " ".join(("slide", *slide.classes))
        sections.append(
            f'<section class="{classes}" id="slide-{i}" data-index="{i}">\n<div class="body">\n{body}</div>\n'
            f"<footer><span>{title}</span><span>{i} / {len(bodies)}</span></footer>\n</section>")
    return (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'  # or the browser asks the file system for /favicon.ico
        f"<title>{title}</title>\n<style>\n{_asset('deck.css')}</style>\n</head>\n"
        f'<body data-slides="{len(bodies)}">\n<main>\n' + "\n".join(sections) + "\n</main>\n"
        f"<script>\n{_asset('deck.js')}</script>\n</body>\n</html>\n"
    )
