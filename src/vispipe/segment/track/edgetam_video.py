"""EdgeTAM's tracker (``segment.propagate.method: edgetam_video``): SAM 2's streaming loop and pruning
(:mod:`.sam2_video`) over EdgeTAM's model (:mod:`vispipe.segment.models.edgetam`), with its own
``segment.edgetam_video`` knobs; the outputs are those of SAM2's tracker."""

from __future__ import annotations

from ..types import Stepper
from . import Context, plain
from .sam2_video import TrackerStepper, tracker


def build(ctx: Context) -> tuple[object, Stepper]:
    """EdgeTAM's tracker (``segment.edgetam_video``) on the kept frames."""
    return plain(ctx), TrackerStepper(tracker(ctx, ctx.settings.edgetam_video, "edgetam"), ctx.settings.propagate)
