"""A small Chrome DevTools Protocol client: one headless Chromium page, its events recorded (test-only).

Chromium is started with its own temporary profile and `--remote-debugging-port=0`; the port it
picked is read from the profile's DevToolsActivePort file. One websocket carries every command;
events that arrive while waiting for a reply are kept in `events` for the test to inspect.
"""
from __future__ import annotations

import base64
import itertools
import json
import subprocess
import tempfile
import time
from pathlib import Path

import websocket
from minfer_course.slides.pdf import chromium_args

KEYS = {"ArrowRight": 39, "ArrowLeft": 37, "End": 35, "Home": 36}


class Page:
    def __init__(self, browser: str, width: int = 1280, height: int = 720, timeout: float = 60) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="minfer-cdp-")
        profile = Path(self._profile.name)
        self.proc = subprocess.Popen(
            [*chromium_args(browser, profile), "--remote-debugging-port=0", "--remote-allow-origins=*",
             f"--window-size={width},{height}", "--hide-scrollbars", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.timeout = timeout
        self.events: list[dict] = []
        self._ids = itertools.count(1)
        try:
            port, path = self._devtools_address(profile)
            self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=timeout, suppress_origin=True)
            target = self.send("Target.createTarget", url="about:blank", session=False)["targetId"]
            self.session = self.send("Target.attachToTarget", targetId=target, flatten=True, session=False)["sessionId"]
            for domain in ("Page", "Network", "Runtime", "Log"):
                self.send(f"{domain}.enable")
            self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.close()
            raise

    def _devtools_address(self, profile: Path) -> tuple[str, str]:
        file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited at start (code {self.proc.returncode})")
            lines = file.read_text().split() if file.is_file() else []
            if len(lines) == 2:
                return lines[0], lines[1]
            time.sleep(0.1)
        raise TimeoutError("chromium did not open its DevTools port")

    def send(self, method: str, session: bool = True, **params) -> dict:
        msg_id = next(self._ids)
        msg = {"id": msg_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_event(self, method: str, since: int = 0) -> dict:
        """The first `method` event at index >= since, waiting for it if needed."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            for event in self.events[since:]:
                if event["method"] == method:
                    return event
            self.send("Runtime.evaluate", expression="0")  # a round trip collects pending events
            time.sleep(0.05)
        raise TimeoutError(f"no {method} event within {self.timeout} s")

    def open(self, url: str) -> None:
        since = len(self.events)
        self.send("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired", since)

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}...: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def press(self, key: str) -> None:
        for kind in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=KEYS[key])

    def screenshot(self) -> bytes:
        return base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._profile.cleanup()
