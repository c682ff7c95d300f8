"""Stop rules: EOS, stop strings, max_tokens, the context window."""
from __future__ import annotations

from ..core import Req


def find_stop(text: str, stops: list[str], new_chars: int) -> int | None:
    """Index where the earliest stop string starts, looking only where new text could complete one."""
    if not stops:
        return None
    lo = max(0, len(text) - new_chars - max(len(s) for s in stops) + 1)
    hits = [i for s in stops if (i := text.find(s, lo)) != -1]
    return min(hits) if hits else None


def held_back(text: str, stops: list[str]) -> int:
    """Chars at the end of `text` that may be the start of a stop string, so must not be streamed yet."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best


def length_finished(req: Req, max_model_len: int) -> bool:
    return len(req.output_ids) >= req.params.max_tokens or req.seq_len >= max_model_len


def is_eos(req: Req, token_id: int, eos_ids: tuple[int, ...]) -> bool:
    return not req.params.ignore_eos and token_id in eos_ids
