"""The generic loop every tracker runs in: one :class:`~vispipe.segment.types.FrameResult` per frame,
re-detection and the events.

A tracker (``segment.propagate.method``, one module of this package each) is a
:class:`~vispipe.segment.types.Stepper`: it carries the instances from one frame to the next. The loop
around it is the same for all: the first frame's instances, re-detection every
``segment.redetect.every`` frames (:class:`~vispipe.segment.associate.Association` says which
instance each detection is), scene cuts (every instance hidden; with re-detection the detector runs
on the cut and looks alone match), masks that drifted off their objects between detections (hidden
until a detection finds them again), every instance followed between detections by the corners
found inside its mask at its anchor and by its colours (its place at the next one), and the born /
lost / revived events, so that the outputs and their meaning do not depend on the tracker.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from ..associate import SCENE_CUT, Association, SceneCuts
from ..types import Detector, FrameResult, Stepper, instance_info

# a detection that re-anchors, revives or starts an instance: the propagator is told (Stepper.anchor)
ANCHORING = ("re-detected", "revived", "born")


def track(
    items: Iterable[tuple[np.ndarray, object]],
    first: dict[int, np.ndarray],
    stepper: Stepper,
    detector: Detector | None = None,
    redetect: dict | None = None,
) -> Iterator[FrameResult]:
    """Yield one :class:`FrameResult` per frame of ``items`` (frame, extra), the first frame's being
    ``first`` (id -> bool mask); ``detector`` with ``redetect`` (the ``segment.redetect`` block,
    ``every`` > 0) re-detects. Re-detection and the events are the same whatever the propagator."""
    items = iter(items)
    image, _ = next(items)
    carried: dict[int, np.ndarray] = {i: m for i, m in first.items() if m.any()}
    stepper.start(image, dict(carried))
    yield FrameResult(
        dict(carried),
        {i: instance_info("refined", "first frame", m) for i, m in carried.items()},
        [{"id": i, "event": "born", "reason": "first frame"} for i in sorted(carried)],
    )
    ids = sorted(carried)
    every = (redetect or {}).get("every", 0) if detector is not None else 0
    association = Association(image, carried, redetect or {}, looks=bool(every))
    cuts = SceneCuts(image, (redetect or {}).get("scene_cut", SCENE_CUT))
    visible_before, hidden = set(carried), set()
    for k, (frame, extra) in enumerate(items, start=1):
        result = stepper.step(k, frame, extra, ids, carried, hidden)
        for i in hidden & association.adrift:  # the stepper hid it; the loop knows why
            result.info[i] = {**result.info[i], "reason": "drifted"}
        cut = cuts(frame)
        if cut:  # a new shot: what the tracker carried across it is not where the objects are
            association.cut()
            hidden |= set(result.masks)
            for i in list(result.masks):
                del result.masks[i]
                result.info[i] = instance_info("lost", "scene cut", None)
        hsv = association.hsv(frame) if every else None  # one conversion for all that asks for colours
        if every:
            association.track_points(k, frame)  # how the instances anchored of late move
        if every and not cut and k % every:
            for i in association.drifting(frame, result.masks, hsv):
                del result.masks[i]  # the mask left its object (looks unlike it): hidden until a detection finds it
                hidden.add(i)
                result.info[i] = instance_info("lost", "drifted", None)
            # where their colours went: their places at the next detection
            association.follow(k, frame, result.masks, hsv)
        if every and (k % every == 0 or cut):
            in_view = set(result.masks)
            matched = association.match(result, frame, detector.detect(frame, k), ids, carried, k, cut, hsv)
            hidden = (hidden | (in_view - matched)) - matched
            anchored = {i: result.masks[i] for i, v in result.info.items() if v["reason"] in ANCHORING}
            association.anchored(k, frame, anchored, hsv)
            if anchored:
                stepper.anchor(k, frame, anchored)
        for i in ids:
            noted = any(e["id"] == i for e in result.events)
            if i in result.masks:
                association.seen(i, result.masks[i], k)
                if i not in visible_before and not noted:  # back in view by the propagator itself
                    result.events.append({"id": i, "event": "revived", "reason": result.info[i]["reason"]})
            elif i in visible_before and not noted:
                result.events.append({"id": i, "event": "lost", "reason": result.info[i]["reason"]})
        visible_before = set(result.masks)
        yield result
