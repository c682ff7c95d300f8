"""Hardware monitor: CPU utilisation, resident memory and (on a GPU) its utilisation and memory,
sampled by a background thread while a workload runs.

    with HardwareMonitor(interval=0.1) as hw:
        llm.generate(prompts, params)
    print(hw.summary()); hw.plot()

CPU time comes from the process's own counters (`os.times`), so "200%" means both cores of this
machine busy with our work; resident memory from /proc (Linux) or the peak from `resource`
elsewhere. GPU numbers come from NVML (the `nvidia-ml-py` package) when it and a GPU are present;
otherwise those fields stay None.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Sample:
    t: float  # seconds since the monitor started
    cpu_percent: float  # this process, 100 = one core fully busy
    rss_bytes: int
    gpu_percent: float | None = None
    gpu_mem_bytes: int | None = None


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the peak is the best the standard library offers
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _nvml_handle():
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
    except Exception:  # no package, no driver or no GPU: CPU-only monitoring
        return None, None


@dataclass
class HardwareMonitor:
    interval: float = 0.1
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="minfer-hwmon", daemon=True)

    def __enter__(self) -> "HardwareMonitor":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        nvml, handle = _nvml_handle()
        start = last_wall = time.perf_counter()
        t = os.times()
        last_cpu = t.user + t.system
        stopped = False
        while not stopped:
            stopped = self._stop.wait(self.interval)
            now, t = time.perf_counter(), os.times()
            if stopped and self.samples and now - last_wall < self.interval / 10:
                break  # a sliver after the last sample: too short to say anything about utilisation
            # the last, partial interval is sampled too, so a workload shorter than one interval still reports
            cpu = t.user + t.system
            sample = Sample(now - start, 100 * (cpu - last_cpu) / max(now - last_wall, 1e-9), _rss_bytes())
            if handle is not None:
                sample.gpu_percent = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
                sample.gpu_mem_bytes = int(nvml.nvmlDeviceGetMemoryInfo(handle).used)
            self.samples.append(sample)
            last_wall, last_cpu = now, cpu

    def summary(self) -> str:
        if not self.samples:
            return "hardware: no samples (the monitor was never started)"
        cpu = [s.cpu_percent for s in self.samples]
        line = (f"hardware: CPU {sum(cpu) / len(cpu):.0f}% mean, {max(cpu):.0f}% max of {100 * (os.cpu_count() or 1)}%; "
                f"resident {max(s.rss_bytes for s in self.samples) / 2**20:.0f} MiB peak")
        gpu = [s for s in self.samples if s.gpu_percent is not None]
        if gpu:
            line += (f"; GPU {sum(s.gpu_percent for s in gpu) / len(gpu):.0f}% mean, "
                     f"{max(s.gpu_mem_bytes for s in gpu) / 2**20:.0f} MiB peak")
        return line

    def plot(self, ax=None):
        import matplotlib.pyplot as plt

        ax = ax or plt.subplots(figsize=(10, 2.5))[1]
        t = [s.t for s in self.samples]
        ax.plot(t, [s.cpu_percent for s in self.samples], label="CPU %")
        if any(s.gpu_percent is not None for s in self.samples):
            ax.plot(t, [s.gpu_percent or 0 for s in self.samples], label="GPU %")
        ax.set_xlabel("s")
        ax.set_ylabel("%")
        rss = ax.twinx()
        rss.plot(t, [s.rss_bytes / 2**20 for s in self.samples], color="grey", linestyle="--", label="resident MiB")
        rss.set_ylabel("MiB")
        ax.legend(loc="upper left", fontsize=8)
        return ax
