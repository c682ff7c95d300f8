"""The hardware layer: everything the engine asks of a device, in at most six operations.

cudasim.py runs numba.cuda kernels without a GPU (lab 2) and decides, once per process, whether
numba.cuda is the simulator or the real thing."""
from .device import Device, get_device

__all__ = ["Device", "get_device"]
