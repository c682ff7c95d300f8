"""Running the app: in the foreground for `minfer serve`, or on a free port in a background thread
(tests, the load bench), stopped when the `with` block ends."""
from __future__ import annotations

import socket
import threading
import time

import uvicorn

from ..engine import LLM
from .app import create_app
from .engine_loop import EngineLoop


def serve(llm: LLM, model_name: str | None, host: str, port: int) -> None:
    uvicorn.run(create_app(llm, model_name), host=host, port=port, log_level="info")


class BackgroundServer:
    def __init__(self, llm: LLM, model_name: str | None = None, host: str = "127.0.0.1") -> None:
        self.app = create_app(llm, model_name)
        # bind here, port 0: the OS picks a free port and nobody can take it before uvicorn listens
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((host, 0))
        self.url = f"http://{host}:{self._sock.getsockname()[1]}"
        # a stuck streaming client must not hold the shutdown forever
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", timeout_graceful_shutdown=5))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="minfer-http", daemon=True)

    @property
    def engine(self) -> EngineLoop:
        return self.app.state.engine

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join()
        self._sock.close()
