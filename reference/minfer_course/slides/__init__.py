"""Course slides: Markdown decks in `slides/` rendered to one self-contained HTML file each (and PDF).

deck.py parses a source (front matter, `---` between slides); markdown.py renders a slide, resolving
`![...](diagram:NAME)` through diagrams/ and ```` ```mistakes LAB ```` fences through mistakes.py;
page.py wraps the slides with the inline stylesheet and script; pdf.py prints a page with headless
Chromium; build.py runs it all for `minfer slides build`.
"""
