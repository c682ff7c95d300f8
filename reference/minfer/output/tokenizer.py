"""The tokenizer and chat template of a Hugging Face folder (tokenizer.json + tokenizer_config.json)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer


@dataclass
class TokenizerBundle:
    tokenizer: Tokenizer
    chat_template: str | None
    bos_token: str | None
    eos_token: str | None

    @classmethod
    def from_dir(cls, path: Path) -> "TokenizerBundle":
        path = Path(path)
        file = path / "tokenizer.json"
        if not file.is_file():
            raise FileNotFoundError(f"{file} is missing: minfer needs a fast tokenizer (tokenizer.json)")
        cfg_file = path / "tokenizer_config.json"
        try:
            tokenizer = Tokenizer.from_file(str(file))
            cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
        except Exception as e:  # tokenizers raises a bare Exception for a corrupt file
            raise ValueError(f"{file} or {cfg_file.name} is corrupt ({e}); re-download or re-convert the model") from e
        token = lambda t: t.get("content") if isinstance(t, dict) else t  # noqa: E731  (AddedToken dicts)
        return cls(tokenizer, cfg.get("chat_template"), token(cfg.get("bos_token")), token(cfg.get("eos_token")))

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=True).ids

    def token_id(self, token: str | None) -> int | None:
        return None if token is None else self.tokenizer.token_to_id(token)

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        if not self.chat_template:
            raise ValueError("this model has no chat template (tokenizer_config.json); use plain prompts")

        def raise_exception(msg: str) -> None:
            raise TemplateError(msg)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
        env.globals["raise_exception"] = raise_exception
        return env.from_string(self.chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token or "", eos_token=self.eos_token or "",
        )
