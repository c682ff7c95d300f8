"""minfer: a small, readable LLM inference engine."""
from .core import RequestOutput, SamplingParams
from .engine import LLM

__all__ = ["LLM", "SamplingParams", "RequestOutput"]
