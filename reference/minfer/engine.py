"""The engine: wires loader -> graph -> scheduler -> memory -> output, and the user-facing `LLM`.

Reading `LLM.__init__` top to bottom is reading the architecture: load the checkpoint, build the
execution plan, size the KV cache, then the scheduler and the result processor that share it.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import torch

from .core import Batch, Req, RequestOutput, SamplingParams, ScheduledReq
from .diagnostics.timeline import Timeline, no_span
from .graph.builder import build_model
from .hal import get_device
from .kernels import get_matmul
from .loader import store
from .loader.config import ModelConfig
from .loader import mapping as mapping_module
from .output.tokenizer import TokenizerBundle
from .loader.weights import load_tensors
from .memory import allocator as allocator_module
from .memory import block_pool as block_pool_module
from .memory.kv_cache import KVCache
from .memory.workspace import Workspace
from .output.processor import OutputProcessor
from .output import sampling as sampling_module
from .output.sampling import make_generator
from .scheduler import batch as batch_module
from .scheduler.scheduler import Scheduler

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
Prompt = str | list[int]


class LLM:
    def __init__(
        self,
        model: str | Path = "smollm2-135m",
        *,
        device: str = "cpu",
        dtype: str = "float32",
        block_size: int = 16,
        kv_cache_mb: int | None = None,
        # tokens per step, prompts chunked to fit: 1024 prefills a 1000-token prompt in one step (time to
        # first token 1.46 s against 1.59 s in two) and serves 5% faster than 512, for 15 MiB more workspace
        max_batch_tokens: int = 1024,
        max_running: int = 64,
        max_model_len: int | None = None,
        enable_prefix_cache: bool = True,
        chunked_prefill: bool = True,
        matmul: str = "torch",
        prepack_weights: bool = True,
        quantize: str | None = None,
        labs: dict[str, SimpleNamespace] | None = None,
    ) -> None:
        """`matmul` picks the kernel of every linear layer (minfer.kernels.MATMULS); `prepack_weights`
        reorders them once on a CPU (minfer.kernels.prepack: matmul.c's panels, or oneDNN's layout);
        `quantize="int8"` stores them as int8 for decode steps (minfer.kernels.Int8Weight: bfloat16). `labs` swaps in a
        lab's modules (see minfer_course.labs.load): {"lab1": ...} runs the student's allocator and KV
        block pool inside this engine; {"lab2": ...} their kernels, for a numba `matmul`; {"lab3": ...}
        their weight mapping, layers, attention, batch preparation and sampling. Labs combine."""
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r} is not supported; choose one of {sorted(DTYPES)}")
        for name, value in (("block_size", block_size), ("max_batch_tokens", max_batch_tokens),
                            ("max_running", max_running), ("kv_cache_mb", kv_cache_mb), ("max_model_len", max_model_len)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name}={value!r} is invalid: must be a positive integer")
        self.device = get_device(device)
        lab2 = (labs or {}).get("lab2")  # its kernels serve the numba matmuls; matmul="torch" leaves them unused
        mm = get_matmul(matmul, self.device, lab2 and lab2.matmul_numba)
        self.dtype = DTYPES[dtype]
        self.path = store.resolve(str(model))
        # ① loader
        self.config = ModelConfig.from_dir(self.path)
        self.tokenizer = TokenizerBundle.from_dir(self.path)
        lab3 = (labs or {}).get("lab3")
        self._mapping, self._batch, self._sampling = (lab3.mapping, lab3.batch, lab3.sampling) if lab3 else \
            (mapping_module, batch_module, sampling_module)
        tensors = self._mapping.map_hf_tensors(self.config, load_tensors(self.path))
        # ② graph
        ops = SimpleNamespace(layers=lab3.layers, attention=lab3.attention) if lab3 else None
        self.model = build_model(self.config, tensors, self.device, self.dtype, mm, ops=ops,
                                 prepack_weights=prepack_weights, quantize=quantize)
        del tensors
        # ④ memory: the workspace tier (one arena, carved per step) and the KV tier, sized once
        memory = (labs or {}).get("lab1") or SimpleNamespace(allocator=allocator_module, block_pool=block_pool_module)
        align = 256  # bytes; each buffer may waste up to one unit to rounding, hence the slack below
        arena = self.model.workspace_bytes(max_batch_tokens) + len(self.model.buffer_plan(1)) * align
        self.allocator = memory.allocator.Allocator(arena, alignment=align, device=self.device)
        self.workspace = Workspace(self.allocator)
        self.max_model_len = min(max_model_len or self.config.max_position, self.config.max_position)
        self.kv = KVCache(self.config, self.device, self.dtype, self._num_blocks(kv_cache_mb, block_size), block_size,
                          enable_prefix_cache, pool_cls=memory.block_pool.BlockPool,
                          hash_fn=memory.block_pool.chain_hash)
        # ③ scheduler
        self.scheduler = Scheduler(self.kv, max_batch_tokens, max_running, chunked_prefill)
        # ⑤ output
        eos = set(self.config.eos_token_ids) | {self.tokenizer.token_id(self.tokenizer.eos_token)} - {None}
        self.output = OutputProcessor(self.tokenizer.tokenizer, tuple(sorted(eos)), self.max_model_len)
        self.reqs: dict[int, Req] = {}
        self._ids = itertools.count()
        self.timeline: Timeline | None = None  # set by `tracing()`

    def _num_blocks(self, kv_cache_mb: int | None, block_size: int) -> int:
        per_block = self.config.kv_bytes_per_token(self.dtype.itemsize) * block_size
        if kv_cache_mb is None:
            # CPU pages are only committed when written, so a generous pool costs nothing until used
            free, _ = self.device.memory_info()
            kv_cache_mb = min(4096, int(0.4 * free) >> 20)
        blocks = (kv_cache_mb << 20) // per_block
        if blocks < 1:
            raise ValueError(f"kv_cache_mb={kv_cache_mb} holds no KV block ({per_block} bytes each); raise it")
        return blocks

    # -- requests ----------------------------------------------------------------------------
    def add_request(self, prompt: Prompt, params: SamplingParams | None = None) -> int:
        params = params or SamplingParams()
        params.validate()  # SamplingParams is mutable: check again what is actually used
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        if not ids:
            raise ValueError("the prompt is empty; give at least one token")
        if any(not isinstance(t, int) or not 0 <= t < self.config.vocab_size for t in ids):
            raise ValueError(f"prompt token ids must be integers in [0, {self.config.vocab_size})")
        if len(ids) >= self.max_model_len:
            raise ValueError(
                f"the prompt has {len(ids)} tokens but the context window is {self.max_model_len}; "
                "shorten the prompt (one token must be left to generate)"
            )
        longest = min(len(ids) + params.max_tokens, self.max_model_len)
        if -(-longest // self.kv.block_size) > self.kv.pool.num_blocks:
            raise ValueError(
                f"a request of up to {longest} tokens cannot fit the KV cache ({self.kv.pool.num_blocks} blocks of "
                f"{self.kv.block_size}); raise kv_cache_mb or lower max_tokens"
            )
        req = Req(next(self._ids), ids, params, generator=None if params.greedy else make_generator(params.seed))
        self.reqs[req.req_id] = req
        self.output.start(req)
        self.scheduler.add(req)
        return req.req_id

    def abort(self, req_id: int) -> None:
        req = self.reqs.get(req_id)
        if req is not None and not req.finished:
            self.scheduler.finish(req, "abort")

    def has_unfinished(self) -> bool:
        return self.scheduler.has_work

    @torch.inference_mode()
    def step(self) -> list[Req]:
        """One forward pass; returns the requests that received a token."""
        span = self.timeline.span if self.timeline else no_span
        with span("step"):
            with span("schedule"):
                batch = self.scheduler.schedule()
            if batch is None:
                if self.scheduler.has_work:  # can only happen through a scheduler defect; never spin
                    raise RuntimeError("scheduler stalled: requests are waiting but none could be scheduled")
                return []
            sampling = batch.sampling
            with span("prepare"):
                self.kv.clear_fresh()
                fi = self._batch.prepare(batch, self.kv, self.device)
            self.workspace.begin(batch.num_tokens)
            try:
                with span("forward"):
                    logits = self.model.forward(fi.ids, fi.positions, fi.meta, self.kv.layers, fi.logit_rows,
                                                self.workspace)
            finally:
                self.workspace.release()
            with span("sample"):
                tokens = self._sampling.sample(logits, [s.req for s in sampling])
            with span("output"):
                self.scheduler.advance(batch)
                for s, token in zip(sampling, tokens):
                    reason = self.output.append(s.req, token)
                    if reason is not None:
                        self.scheduler.finish(s.req, reason)
            return [s.req for s in sampling]

    @contextmanager
    def tracing(self, timeline: Timeline | None = None, memory: bool = False) -> Iterator[Timeline]:
        """Time every step, phase and operator while the block runs (and with `memory`, sample the
        bytes each tier holds at the end of each):

            with llm.tracing(memory=True) as tl:
                llm.generate(prompts, params)
            tl.save_chrome("trace.json"); tl.plot_step(); tl.plot_memory()
        """
        from .diagnostics.memory import memory_probe

        sync = None if self.device.name == "cpu" else self.device.synchronize
        tl = timeline or Timeline(synchronize=sync, probe=memory_probe(self, weights=False) if memory else None)
        self.timeline = self.model.timeline = tl
        try:
            yield tl
        finally:
            self.timeline = self.model.timeline = None

    def pop_output(self, req_id: int) -> RequestOutput:
        """The request's result; a finished request is forgotten afterwards."""
        req = self.reqs[req_id]
        out = self.output.output(req)
        if req.finished:
            del self.reqs[req_id]
            self.output.drop(req)
        return out

    # -- convenience APIs --------------------------------------------------------------------------
    def generate(
        self, prompts: Prompt | Sequence[Prompt], params: SamplingParams | Sequence[SamplingParams] | None = None,
        use_tqdm: bool = False,
    ) -> list[RequestOutput]:
        if isinstance(prompts, str) or (prompts and isinstance(prompts[0], int)):
            prompts = [prompts]
        if params is None or isinstance(params, SamplingParams):
            params = [params or SamplingParams()] * len(prompts)
        if len(params) != len(prompts):
            raise ValueError(f"got {len(prompts)} prompts but {len(params)} SamplingParams")
        ids: list[int] = []
        try:
            for p, sp in zip(prompts, params):
                ids.append(self.add_request(p, sp))
        except Exception:
            for i in ids:  # all or nothing: a bad prompt must not leave the good ones queued
                self.abort(i)
                self.pop_output(i)
            raise
        bar = None
        if use_tqdm:
            from tqdm import tqdm

            bar = tqdm(total=len(ids), desc="generate", unit="req")
        while any(not self.reqs[i].finished for i in ids):
            finished = [r for r in self.step() if r.finished]
            if bar is not None:
                bar.update(len(finished))
        if bar is not None:
            bar.close()
        return [self.pop_output(i) for i in ids]

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)

    @torch.inference_mode()
    def score(self, ids: list[int]) -> torch.Tensor:
        """log p(ids[i] | ids[:i]) for i = 1 ... len(ids) - 1, in float32: perplexity, accuracy checks.

        The text goes through the same paged forward pass as generation, in chunks of at most
        `max_batch_tokens` (later chunks attend to the blocks the earlier ones filled), on an idle
        engine so the KV cache is free; nothing is sampled and nothing is cached afterwards.
        """
        if self.scheduler.has_work:
            raise RuntimeError("score() needs an idle engine: finish or abort the running requests first")
        if not 2 <= len(ids) <= self.max_model_len:
            raise ValueError(f"score() takes 2 to {self.max_model_len} tokens, got {len(ids)}")
        req = Req(-1, list(ids), SamplingParams(max_tokens=1))
        out = []
        try:
            while req.num_computed < len(ids):
                item = ScheduledReq(req, min(self.scheduler.max_batch_tokens, len(ids) - req.num_computed))
                self.kv.allocate(req, item.end)
                self.kv.clear_fresh()
                fi = self._batch.prepare(Batch([item]), self.kv, self.device)
                rows = torch.arange(item.num_tokens, device=fi.ids.device)  # every position's logits
                self.workspace.begin(item.num_tokens)
                try:
                    out.append(self.model.forward(fi.ids, fi.positions, fi.meta, self.kv.layers, rows, self.workspace).cpu())
                finally:
                    self.workspace.release()
                req.num_computed = item.end
        finally:
            self.kv.release(req)
        logprobs = torch.log_softmax(torch.cat(out)[:-1], dim=-1)
        return logprobs.gather(1, torch.tensor(ids[1:])[:, None])[:, 0]

    def stream(self, prompt: Prompt, params: SamplingParams | None = None) -> Iterator[str]:
        """Yield text as it is generated (stop strings never leak, even partly)."""
        req_id = self.add_request(prompt, params)
        req = self.reqs[req_id]
        try:
            while not req.finished:
                self.step()
                delta = self.output.stream_delta(req)
                if delta:
                    yield delta
        finally:
            self.abort(req_id)
            self.pop_output(req_id)
