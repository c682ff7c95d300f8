"""Reference outputs recorded once, for lab tests that must run where the reference is absent.

A lab test that compares the engine on the student's code with the engine on the reference cannot
run the reference side in the student edition (its lab-owned code is stripped) or in a grading
sandbox (the answer must be unreachable there). So the reference's greedy tokens are recorded into
a `golden.json` beside the test file, together with the inputs they were recorded for:

    pytest labs/lab1_allocator/tests labs/lab1_allocator/hidden --impl reference -m slow --record-golden

The reference run of the lab's suites (tests/test_labs.py) compares against the recorded tokens,
so an engine change that alters them fails there until they are recorded again.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from minfer.core import SamplingParams


@dataclass(frozen=True)
class Golden:
    path: Path  # the golden.json beside the test file
    record: bool = False  # run the reference engine and store its tokens instead of reading them

    def tokens(self, name: str, prompts: list[str], params: SamplingParams, model: str = "smollm2-135m",
               **engine: Any) -> list[list[int]]:
        """The reference engine's token ids for `prompts`, as recorded under `name`."""
        inputs = {"model": model, "prompts": list(prompts), "params": asdict(params), "engine": engine}
        entries = self._read()
        if self.record:
            from minfer.engine import LLM

            outs = LLM(model, **engine).generate(list(prompts), params)
            entries[name] = {**inputs, "tokens": [o.token_ids for o in outs]}
            self._write(entries)
        entry = entries.get(name)
        if entry is None:
            raise LookupError(f"{self.path} has no entry {name!r}; record it with --impl reference --record-golden")
        if {k: entry[k] for k in inputs} != json.loads(json.dumps(inputs)):
            raise LookupError(f"{self.path}: entry {name!r} was recorded for other inputs; record it again "
                              "with --impl reference --record-golden")
        return entry["tokens"]

    def _read(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.is_file() else {}

    def _write(self, entries: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        lines = [f" {json.dumps(name)}: {json.dumps(entries[name], sort_keys=True)}" for name in sorted(entries)]
        tmp.write_text("{\n" + ",\n".join(lines) + "\n}\n")  # one entry per line: readable diffs
        tmp.replace(self.path)
