"""Errors the memory manager raises; each says what happened and what to do about it."""


class OutOfMemory(MemoryError):
    """The allocator's arena cannot satisfy a request."""


class KVPoolExhausted(MemoryError):
    """Every KV block is referenced by a running request; the scheduler must wait or preempt."""


class InvalidFree(ValueError):
    """free() of memory that is not a live block of this allocator or pool."""


class DoubleFree(InvalidFree):
    """free() of a block that is already free."""
