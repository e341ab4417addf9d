"""Trackers: what carries the instances from one kept frame to the next (``segment.propagate.method``).

One module per tracker, each named in :data:`vispipe.segment.registry.TRACKERS`:

- :mod:`.flow`: the seed's loop, optical flow + SAM2 refinement with fallbacks;
- :mod:`.sam2_video`: SAM2's own memory tracker, memory bounded; :mod:`.edgetam_video`: EdgeTAM
  through the same streaming loop;
- :mod:`.sam3_video`: SAM 3's concept tracker, its ids mapped onto ours.

Each offers ``build(ctx) -> (frames paired with what the stepper needs, Stepper)`` and runs inside
:func:`.loop.track`, which re-detects and writes the events the same way for all; the trackers never
import a detector or a step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..timing import Stopwatch
from ..types import Loaded, Refiner


@dataclass
class Context:
    """What the propagate step hands the configured tracker."""

    settings: Any  # the step's Settings: each tracker reads its own block (segment.flow, segment.sam2_video, ...)
    frames: Iterable[np.ndarray]  # the kept frames, decoded in order
    prefetch: bool  # decode (and flow) the next frames in a thread while the models work
    clock: Stopwatch
    dtype: Any = None  # the torch dtype SAM2-like models run under (segment.sam2.autocast), None: float32
    video_model: Loaded | None = None  # the model its registry line names, loaded as a video model
    refiner: Refiner | None = None  # SAM2 refinement (the flow tracker, segment.propagate.refine)
    phrases: list[str] = field(default_factory=list)  # the target's text (SAM 3 tracks it)
    name: str = ""  # the method (segment.propagate.method)


def plain(ctx: Context) -> Iterable[tuple[np.ndarray, None]]:
    """The frames, each paired with nothing, decoded ahead in a thread with ``prefetch``."""
    from ..timing import ahead

    return ((frame, None) for frame in (ahead(ctx.frames) if ctx.prefetch else ctx.frames))
