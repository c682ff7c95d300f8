"""HTML -> PDF with headless Chromium: the deck's print stylesheet gives one slide per page."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """$MINFER_CHROMIUM, else the first Chromium-like browser on PATH (Debian: `apt-get install chromium`)."""
    if explicit := os.environ.get("MINFER_CHROMIUM"):
        return explicit if shutil.which(explicit) else None
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


def chromium_args(browser: str, profile: Path) -> list[str]:
    """The flags every headless run needs: its own profile, and no sandbox as root (Chromium refuses)."""
    args = [browser, "--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
            f"--user-data-dir={profile}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")
    return args


def print_pdf(browser: str, page: Path, out: Path, timeout: float = 120) -> None:
    """Print `page` to `out`, atomically: Chromium writes a temp file that is renamed into place."""
    with tempfile.TemporaryDirectory(prefix="minfer-chromium-") as profile:
        tmp = out.with_name(f".{out.name}.tmp")
        cmd = [*chromium_args(browser, Path(profile)), "--no-pdf-header-footer", f"--print-to-pdf={tmp}",
               page.resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not tmp.is_file() or tmp.stat().st_size == 0:
            tmp.unlink(missing_ok=True)
            raise RuntimeError(f"{browser} could not print {page.name} to PDF (exit {proc.returncode}):\n"
                               f"{proc.stderr[-2000:]}")
        os.replace(tmp, out)
