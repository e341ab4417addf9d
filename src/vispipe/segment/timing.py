"""Where a step's time goes: seconds per stage, and a thread that works ahead.

:class:`Stopwatch` sums the seconds spent in named stages. Stages nest (SAM2's image encoder runs
inside SAM2's forward): each stage is charged only its own time, its children's time going to them,
so the stages of one thread add up to the time that thread spent in timed work. The flow runs in a
prefetch thread (:func:`ahead`), so its stages overlap the main thread's; ``wall_seconds`` tells the
truth about the whole. On CUDA pass ``sync`` (``torch.cuda.synchronize``) so that a stage's time is
its kernels' and not just their launch.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from time import perf_counter
from typing import Any, TypeVar

T = TypeVar("T")


class Stopwatch:
    """Exclusive seconds per stage, thread-safe."""

    def __init__(self, sync: Callable[[], None] | None = None):
        self.sync = sync
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._began = perf_counter()

    def begin(self) -> None:
        """Start the wall clock of :meth:`summary` now (e.g. after loading models)."""
        self._began = perf_counter()

    def _stack(self) -> list:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack

    def start(self, stage: str) -> None:
        self._stack().append([stage, perf_counter(), 0.0])  # stage, start, children's seconds

    def stop(self) -> None:
        if self.sync is not None:
            self.sync()
        stage, start, children = self._stack().pop()
        elapsed = perf_counter() - start
        if self._stack():
            self._stack()[-1][2] += elapsed
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + elapsed - children

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        self.start(stage)
        try:
            yield
        finally:
            self.stop()

    def time_module(self, module: Any, stage: str) -> None:
        """Charge every forward of ``module`` (a torch module) to ``stage`` of this stopwatch (the
        hooks go on once; a later stopwatch takes them over)."""
        module._stopwatch = (self, stage)
        if not getattr(module, "_stopwatch_hooked", False):
            module.register_forward_pre_hook(lambda m, *_: m._stopwatch[0].start(m._stopwatch[1]))
            module.register_forward_hook(lambda m, *_: m._stopwatch[0].stop())
            module._stopwatch_hooked = True

    def summary(self, frames: int) -> dict:
        """``{"frames", "wall_seconds", "stage_seconds", "ms_per_frame"}``; stages by decreasing time."""
        order = sorted(self.seconds.items(), key=lambda kv: -kv[1])
        return {
            "frames": frames,
            "wall_seconds": round(perf_counter() - self._began, 3),
            "stage_seconds": {s: round(v, 3) for s, v in order},
            "ms_per_frame": {s: round(1000 * v / max(frames, 1), 2) for s, v in order},
        }

    def table(self, frames: int) -> str:
        """The summary as lines for a log."""
        d = self.summary(frames)
        rows = [f"  {s:<28} {v:9.2f} ms/frame" for s, v in d["ms_per_frame"].items()]
        return "\n".join([f"{frames} frames in {d['wall_seconds']:.2f} s; per stage:", *rows])


_DONE = object()


def ahead(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """``items``, produced by a background thread up to ``depth`` ahead of the consumer.

    OpenCV and image decoding release the GIL, so the next frame's decode and flow run while the main
    thread waits on SAM2. An exception in the producer is raised in the consumer; closing the
    iterator early stops the producer."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple) -> bool:
        """Queue ``entry`` unless the consumer has gone; False when it has."""
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_DONE, None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which raises it
            put((_DONE, e))

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = q.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
