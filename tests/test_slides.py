"""The built decks in a real browser: headless Chromium steps through every slide with the arrow key.

For each deck: as many slides as the source has `---`-separated chunks, each shown by the key and
named by the URL hash, none blank (DOM text or a loaded image, and a screenshot that is not one
colour), none overflowing its 1280x720 canvas, no request other than the file itself and data:
URIs, no console error; the PDF has one page per slide. A deliberately broken deck proves the
checker sees each of those faults. Screenshots go to slides/build/screenshots/<deck>/ (or
$MINFER_SLIDES_SCREENSHOTS) for review.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from minfer_course.labs import REPO
from minfer_course.slides.build import build, find_decks
from minfer_course.slides.deck import Deck, Slide
from minfer_course.slides.page import render_page
from minfer_course.slides.pdf import find_chromium
from PIL import Image

FOOTER_PX = 50  # the footer strip (deck title, page number) is not content
MIN_INK = 0.003  # a slide whose screenshot has less than 0.3% non-background pixels shows nothing
SCREENSHOTS = Path(os.environ.get("MINFER_SLIDES_SCREENSHOTS") or REPO / "slides" / "build" / "screenshots")

PROBE = """(() => {
  const s = document.querySelector("section.slide.active");
  if (!s) return null;
  const body = s.querySelector(".body"), footer = s.querySelector("footer");
  const imgs = Array.from(s.querySelectorAll("img"));
  const wide = Array.from(s.querySelectorAll("pre, table")).some(e => e.scrollWidth > e.clientWidth + 1);
  return {current: Number(document.body.dataset.current), hash: location.hash, text: body.innerText.trim().length,
          images: imgs.length, broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length,
          overflow: wide || body.scrollWidth > body.clientWidth + 1 ||
                    body.getBoundingClientRect().bottom > footer.getBoundingClientRect().top + 1};
})()"""


def source_slide_count(path: Path) -> int:
    """Slides in a deck's source, counted independently of the renderer: `---` lines outside
    code fences, after the front matter."""
    lines = path.read_text().splitlines()
    start = lines.index("---", 1) + 1 if lines[0] == "---" else 0
    count, fenced = 1, False
    for line in lines[start:]:
        if line.startswith(("```", "~~~")):
            fenced = not fenced
        elif line.rstrip() == "---" and not fenced:
            count += 1
    return count


def pdf_pages(path: Path) -> list[str]:
    """The MediaBox of every page object (Chromium writes them uncompressed)."""
    data = path.read_bytes().decode("latin-1")
    pages = re.findall(r"/Type\s*/Page(?!s)\b", data)
    boxes = re.findall(r"/MediaBox\s*\[([^\]]*)\]", data)
    assert len(boxes) == len(pages), "every page should carry its own MediaBox"
    return [" ".join(b.split()) for b in boxes]


def ink(png: bytes) -> float:
    """Fraction of the slide (footer excluded) whose colour is not the dominant one."""
    img = Image.open(io.BytesIO(png)).convert("RGB")
    img = img.crop((0, 0, img.width, img.height - FOOTER_PX))
    colors = img.getcolors(maxcolors=img.width * img.height)
    return 1 - max(count for count, _ in colors) / (img.width * img.height)


def resource_problems(events: list[dict], page_url: str) -> list[str]:
    out = []
    for e in events:
        method, p = e["method"], e.get("params", {})
        if method == "Network.requestWillBeSent":
            url = p["request"]["url"]
            if not url.startswith("data:") and url.split("#")[0] != page_url:
                out.append(f"request for {url[:100]}")
        elif method == "Network.loadingFailed":
            out.append(f"failed load: {p.get('errorText')} {p.get('blockedReason', '')}".strip())
        elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
            out.append(f"console error: {p['entry']['text'][:160]}")
        elif method == "Runtime.exceptionThrown":
            out.append(f"script error: {p['exceptionDetails'].get('text')}")
        elif method == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
            out.append(f"console.{p['type']}: {p['args'][:1]}")
    return out


def check_deck(page, html: Path, shots: Path | None = None) -> tuple[int, list[str]]:
    """Step through `html` with the arrow key; (slides seen, problems found)."""
    since = len(page.events)
    page.open(html.as_uri() + "#1")
    total = page.evaluate("document.querySelectorAll('section.slide').length")
    if shots:
        shutil.rmtree(shots, ignore_errors=True)
        shots.mkdir(parents=True)
    problems = []
    for i in range(1, total + 1):
        if i > 1:
            page.press("ArrowRight")
        state = page.evaluate(PROBE)
        if not state or state["current"] != i or state["hash"] != f"#{i}":
            problems.append(f"slide {i}: the arrow key did not show it (page state {state})")
            continue
        png = page.screenshot()
        if shots:
            (shots / f"{i:02d}.png").write_bytes(png)
        if not state["text"] and not state["images"]:
            problems.append(f"slide {i}: no visible text or image")
        if state["broken"]:
            problems.append(f"slide {i}: {state['broken']} image(s) failed to load")
        if state["overflow"]:
            problems.append(f"slide {i}: content overflows the slide")
        if (share := ink(png)) < MIN_INK:
            problems.append(f"slide {i}: the screenshot is blank ({share:.2%} non-background pixels)")
    page.press("ArrowRight")
    if page.evaluate("Number(document.body.dataset.current)") != total:
        problems.append("the arrow key stepped past the last slide")
    return total, problems + resource_problems(page.events[since:], html.as_uri())


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium; installed here when running as root with apt (as CI does), else skip."""
    if found := find_chromium():
        return found
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "chromium"], env=env, capture_output=True)
    if found := find_chromium():
        return found
    pytest.skip("no Chromium: install Debian's `chromium` package (apt-get install -y chromium) to run the browser tests")


@pytest.fixture(scope="module")
def page(chromium):
    from cdp import Page

    p = Page(chromium)
    yield p
    p.close()


@pytest.fixture(scope="module")
def built(chromium, tmp_path_factory):
    """Every deck, built once with PDFs (the diagrams' engine run: SmolLM2 when pulled)."""
    return {b.deck.name: b for b in build(out=tmp_path_factory.mktemp("slides"), pdf=True)}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(find_decks()))
def test_deck_in_browser(name, built, page):
    deck = built[name]
    expected = source_slide_count(deck.deck.source)
    assert 8 <= expected <= 18, f"{name}: keep a deck focused ({expected} slides)"
    shots = SCREENSHOTS / name
    total, problems = check_deck(page, deck.html, shots)
    print(f"\n{name}: {total} slides; screenshots in {shots}")
    assert total == expected, f"{name}: the page has {total} slides, the source {expected}"
    assert problems == [], f"{name}:\n" + "\n".join(problems)
    assert sorted(p.name for p in shots.glob("*.png")) == [f"{i:02d}.png" for i in range(1, total + 1)]
    assert pdf_pages(deck.pdf) == ["0 0 960 540"] * expected, "one 1280x720 px (960x540 pt) page per slide"


@pytest.mark.slow
def test_decks_are_self_contained(built):
    for name, deck in built.items():
        html = deck.html.read_text()
        assert "Content-Security-Policy" in html and "default-src 'none'" in html
        # the only URLs a deck may load are data: URIs; links (<a href>) are not loads
        loads = re.findall(r'<(?:img|script|link|iframe|source)\b[^>]*\b(?:src|href)="([^"]*)"', html)
        remote = [u[:60] for u in loads if not u.startswith("data:")]
        assert loads and not remote, f"{name} loads {remote}"
        assert "url(http" not in html and "@import" not in html


def broken_deck(tmp_path: Path) -> Path:
    """Six slides, five of them wrong in a different way each."""
    bodies = ["<h2>a good slide</h2><p>with text</p>",
              '<p style="color:#fbfaf7">text the colour of the background</p>',
              "<div></div>",
              '<h2>remote image</h2><img src="http://127.0.0.1:9/missing.png" alt="">',
              "<h2>too long</h2><p>" + "a line<br>" * 40 + "</p>",
              "<h2>another good slide</h2>"]
    deck = Deck("broken", tmp_path / "broken.md", {"title": "broken"}, tuple(Slide(b) for b in bodies))
    html = tmp_path / "broken.html"
    html.write_text(render_page(deck, bodies))
    return html


def test_checker_catches_each_fault(page, tmp_path):
    total, problems = check_deck(page, broken_deck(tmp_path), tmp_path / "shots")
    text = "\n".join(problems)
    assert total == 6
    assert "slide 2: the screenshot is blank" in text  # text in the DOM, nothing on screen
    assert "slide 3: no visible text or image" in text and "slide 3: the screenshot is blank" in text
    assert "slide 4: 1 image(s) failed to load" in text
    assert any(p.startswith(("request for http://127.0.0.1:9", "failed load", "console error")) for p in problems)
    assert "slide 5: content overflows the slide" in text
    assert not [p for p in problems if p.startswith(("slide 1:", "slide 6:"))], text


def test_hash_and_keys_navigate(page, tmp_path):
    html = broken_deck(tmp_path)
    page.open(html.as_uri() + "#3")
    current = "Number(document.body.dataset.current)"
    assert page.evaluate(current) == 3, "#3 opens the third slide"
    page.press("End")
    assert page.evaluate(current) == 6 and page.evaluate("location.hash") == "#6"
    page.press("ArrowLeft")
    assert page.evaluate(current) == 5
    page.press("Home")
    page.press("ArrowLeft")
    assert page.evaluate(current) == 1, "there is nothing before the first slide"
    page.evaluate("new Promise(done => { addEventListener('hashchange', () => done(0), {once: true}); location.hash = '#4'; })")
    assert page.evaluate(current) == 4, "changing the hash shows that slide"
