"""The result processor: one new token in, text and a finish decision out."""
from __future__ import annotations

from dataclasses import dataclass

from tokenizers import Tokenizer

from ..core import Req, RequestOutput
from .detokenizer import IncrementalDetokenizer
from .stop import find_stop, held_back, is_eos, length_finished


@dataclass
class TextState:
    detok: IncrementalDetokenizer
    text: str = ""  # final text so far (stop strings cut off)
    streamed: int = 0  # chars of `text` already handed to a streaming caller


class OutputProcessor:
    def __init__(self, tokenizer: Tokenizer, eos_ids: tuple[int, ...], max_model_len: int) -> None:
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.max_model_len = max_model_len
        self.states: dict[int, TextState] = {}

    def start(self, req: Req) -> None:
        self.states[req.req_id] = TextState(IncrementalDetokenizer(self.tokenizer))

    def append(self, req: Req, token_id: int) -> str | None:
        """Record `token_id` for `req`; return a finish reason once the request is done."""
        st = self.states[req.req_id]
        req.output_ids.append(token_id)
        if is_eos(req, token_id, self.eos_ids):
            st.text += st.detok.flush()
            return "stop"
        delta = st.detok.push(token_id)
        done = length_finished(req, self.max_model_len)
        if done:
            delta += st.detok.flush()
        st.text += delta
        cut = find_stop(st.text, req.params.stop, len(delta))
        if cut is not None:
            st.text = st.text[:cut]
            return "stop"
        return "length" if done else None

    def stream_delta(self, req: Req) -> str:
        """Text not yet streamed, minus a tail that could still turn into a stop string."""
        st = self.states[req.req_id]
        end = len(st.text) if req.finished else len(st.text) - held_back(st.text, req.params.stop)
        delta = st.text[st.streamed:end]
        st.streamed = max(st.streamed, end)
        return delta

    def output(self, req: Req) -> RequestOutput:
        return RequestOutput(
            req_id=req.req_id,
            prompt_token_ids=req.prompt_ids,
            token_ids=list(req.output_ids),
            text=self.states[req.req_id].text,
            finish_reason=req.finish_reason,
            finished=req.finished,
        )

    def drop(self, req: Req) -> None:
        self.states.pop(req.req_id, None)
