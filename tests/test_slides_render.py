"""The slide renderer without a browser: parsing, directives, the decks' own sources, the CLI."""
from __future__ import annotations

import base64
import re

import pytest
from minfer.cli import main
from minfer_course.labs import REPO
from minfer_course.slides.build import find_decks, render_deck
from minfer_course.slides.deck import load_deck, parse_front_matter, split_slides
from minfer_course.slides.diagrams import DIAGRAMS, DiagramContext
from minfer_course.slides.markdown import SlideRenderer
from minfer_course.slides.mistakes import mistakes_for, wrong_solutions

PNG = b"\x89PNG\r\n\x1a\n"


def test_slides_split_on_separators_but_not_inside_fences():
    text = "# one\n---\n## two\n```text\n---\n```\n---\n## three"
    assert split_slides(text) == ["# one", "## two\n```text\n---\n```", "## three"]


def test_front_matter_and_layout_classes(tmp_path):
    src = tmp_path / "deck.md"
    src.write_text("---\ntitle: A deck: with a colon\n---\n# first\n---\n<!-- class: cols small -->\n## second\n")
    deck = load_deck(src)
    assert deck.title == "A deck: with a colon" and deck.name == "deck"
    assert [s.classes for s in deck.slides] == [(), ("cols", "small")]
    assert deck.slides[1].markdown == "## second"
    with pytest.raises(ValueError, match="never closed"):
        parse_front_matter("---\ntitle: x\n# no end", "deck.md")


def test_an_empty_slide_is_refused(tmp_path):
    src = tmp_path / "deck.md"
    src.write_text("# one\n---\n\n---\n# three\n")
    with pytest.raises(ValueError, match=r"slide\(s\) \[2\] are empty"):
        load_deck(src)


def test_mistakes_come_from_the_grader_or_the_fallback(tmp_path):
    lab1 = wrong_solutions(REPO, "lab1")
    specs = sorted(p.stem for p in (REPO / "grader" / "wrong_solutions" / "lab1").glob("*.toml"))
    assert [m.name for m in lab1] == specs and all(m.description for m in lab1)
    found, from_grader = mistakes_for(REPO, "lab1", "- ignored: fallback")
    assert from_grader and found == lab1
    found, from_grader = mistakes_for(tmp_path, "lab2", "- missing_syncthreads: no barrier\n\n- b: two: colons\n")
    assert not from_grader
    assert [(m.name, m.description) for m in found] == [("missing_syncthreads", "no barrier"), ("b", "two: colons")]
    with pytest.raises(ValueError, match="name: description"):
        mistakes_for(tmp_path, "lab2", "- no colon here")


def test_images_are_embedded_and_remote_ones_refused(tmp_path):
    (tmp_path / "pic.png").write_bytes(PNG + b"rest")
    drawn = []
    r = SlideRenderer(REPO, tmp_path, lambda name: drawn.append(name) or PNG)
    html = r.render("![a](diagram:tiling) ![b](pic.png)")
    assert drawn == ["tiling"]
    uris = re.findall(r'src="(data:image/png;base64,[^"]+)"', html)
    assert [base64.b64decode(u.split(",")[1]) for u in uris] == [PNG, PNG + b"rest"]
    for remote in ("https://example.com/x.png", "//cdn.example.com/x.png", "file:///etc/x.png"):
        with pytest.raises(ValueError, match="must open offline"):
            r.render(f"![x]({remote})")
    with pytest.raises(ValueError, match="no image file"):
        r.render("![x](missing.png)")


def test_mistakes_fence_renders_a_list():
    r = SlideRenderer(REPO, REPO / "slides", lambda name: PNG)
    html = r.render("```mistakes lab1\n```")
    assert html.count("<li>") == len(wrong_solutions(REPO, "lab1")) and "split_off_by_one" in html
    fallback = r.render("```mistakes lab_that_does_not_exist\n- a: first & <b>\n```")
    assert "<code>a</code> first &amp; &lt;b&gt;" in fallback and "does not exist yet" in fallback
    assert "<pre>" in r.render("```python\nx = 1\n```"), "other fences stay code"


def test_the_decks_use_known_diagrams_and_their_own_mistakes():
    decks = find_decks()
    assert list(decks)[0] == "intro" and {"lab1_allocator", "lab2_matmul", "lab3_inference"} <= set(decks)
    for name, path in decks.items():
        deck = load_deck(path)
        assert 8 <= len(deck.slides) <= 18, f"{name}: {len(deck.slides)} slides"
        text = path.read_text()
        for diagram in re.findall(r"\(diagram:(\w+)\)", text):
            assert diagram in DIAGRAMS, f"{name} uses unknown diagram {diagram}"
        if name.startswith("lab"):
            assert f"```mistakes {name.split('_')[0]}" in text, f"{name} has no common-mistakes slide"


def test_a_deck_renders_without_the_engine():
    """The architecture diagram reads the source tree; no engine run is needed for it."""
    ctx = DiagramContext(REPO / "reference" / "minfer")
    png = ctx.png("architecture")
    assert png.startswith(PNG) and ctx.png("architecture") is png, "drawn once per build"
    assert "run" not in ctx.__dict__, "no engine run for a diagram that does not need one"
    with pytest.raises(ValueError, match="unknown diagram 'nope'"):
        ctx.png("nope")


def test_cli_builds_decks_on_a_tiny_model(tiny_dir, tmp_path, capsys, monkeypatch):
    tiny = str(tiny_dir("llama"))
    monkeypatch.setenv("MINFER_CHROMIUM", "no-such-browser")  # PDFs wanted, but no Chromium: HTML only, said so
    code = main(["slides", "build", "lab3_inference", "--out", str(tmp_path), "--model", tiny])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "no Chromium found" in out
    html = (tmp_path / "lab3_inference.html").read_text()
    expected = len(load_deck(REPO / "slides" / "lab3_inference.md").slides)
    assert html.count('<section class="slide') == expected and f"lab3_inference: {expected} slides" in out
    assert not list(tmp_path.glob("*.pdf")) and not list(tmp_path.glob(".*.tmp"))
    assert main(["slides", "build", "lab2_matmul", "--no-pdf", "--out", str(tmp_path), "--model", tiny]) == 0
    assert "no Chromium" not in capsys.readouterr().out, "--no-pdf asks for no PDF: nothing to warn about"
    assert (tmp_path / "lab2_matmul.html").is_file()
    assert main(["slides", "build", "no_such_deck", "--no-pdf", "--out", str(tmp_path)]) == 2
    assert "unknown deck(s) ['no_such_deck']" in capsys.readouterr().err


def test_render_deck_names_the_slide_of_an_error(tmp_path):
    src = tmp_path / "bad.md"
    src.write_text("# fine\n---\n![x](http://example.com/x.png)\n")
    with pytest.raises(ValueError, match=r"bad.md, slide 2: image"):
        render_deck(load_deck(src), lambda name: PNG)
