"""Detokenization, stop strings and the result processor, on the real tokenizer where it matters."""
from __future__ import annotations

import pytest

from minfer import SamplingParams
from minfer.core import Req, Status
from minfer.output.detokenizer import IncrementalDetokenizer
from minfer.output.processor import OutputProcessor
from minfer.output.stop import find_stop, held_back


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir):
    from minfer.output.tokenizer import TokenizerBundle

    return TokenizerBundle.from_dir(smollm2_dir)


TEXTS = ["Hello, world!", "naïve café – déjà vu", "emoji: 🦙🚀👩‍👩‍👧 done", "中文和日本語のテキスト", "code:\n\tdef f(x):\n\t\treturn x ** 2\n"]


@pytest.mark.parametrize("text", TEXTS)
def test_incremental_detokenizer_never_splits_characters(tokenizer, text):
    ids = tokenizer.encode(text)
    detok = IncrementalDetokenizer(tokenizer.tokenizer)
    pieces = [detok.push(i) for i in ids] + [detok.flush()]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == tokenizer.tokenizer.decode(ids, skip_special_tokens=True)


def test_multibyte_character_held_until_complete(tokenizer):
    ids = tokenizer.encode("🦙")
    assert len(ids) > 1, "the llama emoji should span several byte-level tokens"
    detok = IncrementalDetokenizer(tokenizer.tokenizer)
    pieces = [detok.push(i) for i in ids]
    assert pieces[:-1] == [""] * (len(ids) - 1) and pieces[-1] == "🦙"


def test_find_stop_and_hold_back():
    assert find_stop("abc STOP def", ["STOP"], 12) == 4
    assert find_stop("abc ST", ["STOP"], 2) is None
    assert find_stop("xxSTOPyySTOP", ["STOP"], 4) == 8  # only new text is searched
    assert held_back("hello ST", ["STOP"]) == 2
    assert held_back("hello", ["STOP", "lo!"]) == 2
    assert held_back("hello", []) == 0


def _run(tokenizer, text: str, params: SamplingParams, eos: tuple[int, ...] = ()):
    proc = OutputProcessor(tokenizer.tokenizer, eos, max_model_len=10_000)
    req = Req(0, [1], params)
    proc.start(req)
    streamed, reason = "", None
    for tid in tokenizer.encode(text):
        reason = proc.append(req, tid)
        if reason:
            req.status = Status.FINISHED
        streamed += proc.stream_delta(req)
        if reason:
            break
    return proc.output(req).text, streamed, reason, req


def test_stop_string_cuts_text_and_never_streams(tokenizer):
    text, streamed, reason, _ = _run(tokenizer, "The answer is 42. END of story", SamplingParams(stop=["END"], max_tokens=100))
    assert reason == "stop" and text == "The answer is 42. " and streamed == text


def test_max_tokens_finishes_with_length(tokenizer):
    text, _, reason, req = _run(tokenizer, "one two three four five six", SamplingParams(max_tokens=3))
    assert reason == "length" and len(req.output_ids) == 3


def test_eos_finishes_unless_ignored(tokenizer):
    eos = tokenizer.encode("!")[-1]
    _, _, reason, req = _run(tokenizer, "Hi! there", SamplingParams(max_tokens=50), eos=(eos,))
    assert reason == "stop" and req.output_ids[-1] == eos
    _, _, reason, _ = _run(tokenizer, "Hi! there", SamplingParams(max_tokens=50, ignore_eos=True), eos=(eos,))
    assert reason is None
