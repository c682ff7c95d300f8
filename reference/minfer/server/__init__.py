"""An OpenAI-compatible HTTP server over the engine (needs `pip install 'minfer[serve]'`).

protocol.py (request models, errors) · engine_loop.py (the thread that owns the LLM) ·
app.py (routes, SSE) · runner.py (foreground / background uvicorn). `minfer bench serve` loads it: minfer_bench/serve.py.
"""
