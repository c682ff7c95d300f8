"""The hardware layer: everything the engine asks of a device, in at most six operations."""
from .device import Device, get_device

__all__ = ["Device", "get_device"]
