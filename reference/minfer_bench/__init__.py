"""`minfer bench ...`: the harnesses that measure the engine, a package beside it rather than part of
it (like tests, they are not counted in the engine's 5,000 lines; mini-SGLang keeps its benchmarks
outside its package too). The `minfer` command reaches them (minfer/cli.py).

engine.py (`minfer bench`: minfer against Hugging Face transformers, same weights, same run) ·
serve.py (`minfer bench serve`: the HTTP server under load; needs `pip install 'minfer[serve]'`).
lab 2's `minfer bench matmul` is course tooling: minfer_course/matmul_bench.py.
"""
