"""The OpenAI-compatible server, driven by the official `openai` client over real HTTP.

One server per module, on a free loopback port, around the session's SmolLM2. Every expected text
is what `LLM.generate` gives for the same prompt and settings, computed before the server starts
(the engine is not thread-safe, so nothing else may call it while the server owns it).
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import httpx
import openai
import pytest
from minfer import SamplingParams
from minfer.cli import main

pytestmark = pytest.mark.slow  # the real model, over real HTTP (CI still runs it)

MODEL = "smollm2-135m"
CHAT = [{"role": "user", "content": "What is the capital of France?"}]
PROMPT = "The three primary colors are"
SEEDED = {"temperature": 0.9, "top_p": 0.9, "top_k": 40, "seed": 1234}
CONCURRENT = [f"Here is fact number {i} about the ocean:" for i in range(32)]


@pytest.fixture(scope="module")
def expected(smollm2) -> dict:
    greedy = SamplingParams(temperature=0, max_tokens=16)
    chat_prompt = smollm2.chat_prompt(CHAT)
    chat, completion, seeded = smollm2.generate(
        [chat_prompt, PROMPT, PROMPT], [greedy, greedy, SamplingParams(max_tokens=16, **SEEDED)])
    concurrent = smollm2.generate(CONCURRENT, SamplingParams(temperature=0, max_tokens=12))
    return {"chat": chat, "chat_prompt_tokens": len(smollm2.tokenizer.encode(chat_prompt)), "completion": completion,
            "seeded": seeded, "concurrent": [o.text for o in concurrent]}


@pytest.fixture(scope="module")
def server(smollm2, expected):
    from minfer.server.runner import BackgroundServer

    with BackgroundServer(smollm2) as srv:
        yield srv
    with pytest.raises(httpx.ConnectError):  # it stopped by itself
        httpx.get(f"{srv.url}/health")


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def health(server) -> dict:
    return httpx.get(f"{server.url}/health").json()


def wait_until_idle(server, smollm2, timeout: float = 10.0) -> dict:
    """Poll until no request runs and every KV block is free again; return the last /health."""
    deadline = time.monotonic() + timeout
    while True:
        h = health(server)
        pool = smollm2.kv.pool
        if h["running"] == h["waiting"] == 0 and pool.num_free == pool.num_blocks and not smollm2.reqs:
            return h
        assert time.monotonic() < deadline, f"still busy after {timeout}s: {h}"
        time.sleep(0.05)


def test_models_and_health(client, server):
    assert [m.id for m in client.models.list().data] == [MODEL]
    h = health(server)
    assert h["status"] == "ok" and h["kv_free_blocks"] == h["kv_total_blocks"] > 0


def test_chat_matches_engine(client, expected):
    r = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=16, temperature=0)
    want = expected["chat"]
    assert r.choices[0].message.content == want.text and "Paris" in want.text
    assert r.choices[0].finish_reason == want.finish_reason
    assert r.usage.prompt_tokens == expected["chat_prompt_tokens"]
    assert r.usage.completion_tokens == len(want.token_ids)


def test_completion_matches_engine(client, expected):
    r = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=16, temperature=0)
    want = expected["completion"]
    assert (r.choices[0].text, r.choices[0].finish_reason) == (want.text, want.finish_reason)
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (len(want.prompt_token_ids), len(want.token_ids))


def test_streaming_chat_and_completion(client, expected):
    chunks = list(client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=16, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    deltas = [c.choices[0] for c in chunks if c.choices]
    assert len(deltas) > 3, "the reply came in one piece, not streamed"
    assert deltas[0].delta.role == "assistant"
    assert "".join(d.delta.content or "" for d in deltas) == expected["chat"].text
    assert deltas[-1].finish_reason == expected["chat"].finish_reason
    assert chunks[-1].usage.completion_tokens == len(expected["chat"].token_ids)

    pieces = list(client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=16, temperature=0, stream=True))
    assert len(pieces) > 3
    assert "".join(p.choices[0].text for p in pieces) == expected["completion"].text
    assert pieces[-1].choices[0].finish_reason == expected["completion"].finish_reason


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_stop_strings(client, expected, stream):
    text = expected["completion"].text
    stop = text.split()[2]  # a word in the middle of the greedy continuation
    want = text[:text.index(stop)]
    r = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=16, temperature=0, stop=[stop, "zzqx"],
                                  stream=stream)
    pieces = [c.choices[0] for c in r] if stream else r.choices
    assert "".join(p.text for p in pieces) == want
    assert pieces[-1].finish_reason == "stop"
    assert all(stop not in p.text for p in pieces)


def test_seeded_sampling_reproducible(client, expected):
    texts = [client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=16, temperature=SEEDED["temperature"],
                                       top_p=SEEDED["top_p"], seed=SEEDED["seed"],
                                       extra_body={"top_k": SEEDED["top_k"]}).choices[0].text for _ in range(2)]
    assert texts == [expected["seeded"].text] * 2


def test_32_concurrent_requests_share_the_batch(server, expected):
    async def one(client: openai.AsyncOpenAI, i: int) -> str:
        if i % 2:
            chunks = await client.completions.create(model=MODEL, prompt=CONCURRENT[i], max_tokens=12, temperature=0,
                                                     stream=True)
            return "".join([c.choices[0].text async for c in chunks])
        r = await client.completions.create(model=MODEL, prompt=CONCURRENT[i], max_tokens=12, temperature=0)
        return r.choices[0].text

    async def run_all() -> list[str]:
        async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120) as c:
            return await asyncio.gather(*(one(c, i) for i in range(len(CONCURRENT))))

    assert asyncio.run(run_all()) == expected["concurrent"]
    assert health(server)["peak_batch"] >= 16  # they were decoded together, not one after another


@pytest.mark.parametrize("path, body, param", [
    ("completions", b'{"model": "smollm2-135m", "prompt": "Hi"', None),  # malformed JSON
    ("completions", b'[1, 2]', None),
    ("completions", {"prompt": "Hi"}, "model"),
    ("completions", {"prompt": "Hi", "frobnicate": 1}, "frobnicate"),
    ("completions", {"prompt": "Hi", "logprobs": 2}, "logprobs"),
    ("completions", {"prompt": "Hi", "temperature": -1}, "temperature"),
    ("completions", {"prompt": "Hi", "temperature": "0.5"}, "temperature"),
    ("completions", {"prompt": "Hi", "top_p": 2}, "top_p"),
    ("completions", {"prompt": "Hi", "top_k": -5}, "top_k"),
    ("completions", {"prompt": "Hi", "max_tokens": 0}, "max_tokens"),
    ("completions", {"prompt": "Hi", "stop": [""]}, "stop"),
    ("completions", {"prompt": "Hi", "n": 2}, "n"),
    ("completions", {"prompt": "Hi", "stream_options": {"include_usage": True}}, "stream_options"),
    ("completions", {"prompt": ""}, "prompt"),
    ("completions", {"prompt": [10**9]}, "prompt"),
    ("chat/completions", {"messages": []}, "messages"),
    ("chat/completions", {"messages": [{"role": "robot", "content": "Hi"}]}, "messages"),
    ("chat/completions", {"messages": CHAT, "max_tokens": 1.5}, "max_tokens"),
    ("chat/completions", {"messages": CHAT, "stream": 1}, "stream"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_requests_get_400_naming_the_field(server, smollm2, path, body, param):
    if isinstance(body, dict):
        body = body if param == "model" else {"model": MODEL, **body}
        r = httpx.post(f"{server.url}/v1/{path}", json=body)
    else:
        r = httpx.post(f"{server.url}/v1/{path}", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"], error
    if param is None:
        assert "JSON" in error["message"] or "body" in error["message"]
    wait_until_idle(server, smollm2)  # nothing was queued


def test_oversize_prompts_rejected(client, server, smollm2):
    long_text = "hello " * (smollm2.max_model_len + 10)
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL, prompt=long_text, max_tokens=8)
    assert e.value.param == "prompt" and "context window" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": long_text}], max_tokens=8)
    assert e.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=CHAT, extra_body={"best_of": 2})
    assert e.value.param == "best_of"
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="gpt-4", prompt="Hi")
    assert e.value.param == "model" and e.value.code == "model_not_found"
    wait_until_idle(server, smollm2)


def test_stream_disconnect_aborts_and_frees_kv_blocks(client, server, smollm2):
    before = health(server)["aborted"]
    stream = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=2000, temperature=0, stream=True,
                                       extra_body={"ignore_eos": True})
    for _, chunk in zip(range(3), stream):
        assert chunk.choices[0].text is not None
    busy = health(server)
    assert busy["running"] == 1 and busy["kv_free_blocks"] < busy["kv_total_blocks"]
    stream.close()  # hang up mid-stream; 2000 tokens would take far longer than the wait below
    assert wait_until_idle(server, smollm2, timeout=10)["aborted"] == before + 1


def test_whole_request_disconnect_aborts_and_frees_kv_blocks(server, smollm2):
    before = health(server)["aborted"]
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 2000, "ignore_eos": True, "temperature": 0}
    with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes the connection
        httpx.post(f"{server.url}/v1/completions", json=body, timeout=httpx.Timeout(10, read=1.0))
    assert wait_until_idle(server, smollm2, timeout=10)["aborted"] == before + 1


def test_serve_without_the_extra_says_what_to_install():
    code = ("import sys; sys.modules['fastapi'] = None; from minfer.cli import main; "
            "sys.exit(main(['serve', '--model', 'not-loaded-before-the-check']))")
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "pip install 'minfer[serve]'" in r.stderr, r.stderr


def test_bench_serve_prints_the_load_table(tiny_dir, capsys):
    assert main(["bench", "serve", "--model", str(tiny_dir("llama")), "--concurrency", "1,3", "--requests", "3",
                 "--max-tokens", "4"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "concurrency" not in line]
    assert [int(r.split("|")[1]) for r in rows] == [1, 3]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[1]) > 0 and float(cells[2]) > 0  # requests/s, output tok/s
        assert all(float(x) > 0 for x in cells[3].split(" / ")), row  # TTFT
        assert all(float(x) >= 0 for x in cells[4].split(" / ")), row  # TBT (4 tokens: 3 gaps each)
