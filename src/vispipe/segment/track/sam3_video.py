"""SAM 3's concept tracker (``segment.propagate.method: sam3_video``): it detects the target's text on
every frame, tracks what it found and gives each object its id (Carion et al., "SAM 3: Segment
Anything with Concepts", 2025). Its model is SAM 3's family (:mod:`vispipe.segment.detect.sam3`).

transformers' ``Sam3VideoModel`` streams (``init_video_session`` with no video, then
``model(inference_session=..., frame=...)``), but its session keeps every frame's pixels and every
object's outputs on every frame (high-resolution masks included): memory grows by megabytes a frame,
the growth SAM 3's issue tracker reports. :meth:`Sam3VideoTracker.prune` drops after each frame what
no later frame reads:

- a processed frame's pixels (replaced by an empty tensor, not deleted: the model counts the frames
  the session holds when it weighs object pointers);
- tracked outputs older than the object-pointer window, their memory features once older than the
  memory window, and every stored output's masks (read only on their own frame);
- per-frame inputs, scores and suppression records of frames done, and hot-start counters beyond
  what any decision reads.

That changes no output (``tests/test_sam3.py``). What remains growing is one object pointer per
conditioning frame (SAM 3 re-conditions every ``recondition_every_nth_frame`` frames and attends to
all of them): ``max_cond_frames`` keeps the first and the latest ones, so memory is flat; it is the
one pruning that changes outputs, as SAM2's ``max_cond_frames`` does.

SAM 3's object ids are its own; :class:`Sam3Stepper` maps them onto this project's: the first
frame's instances (instances.json) take the ids of SAM 3's objects they overlap most (Hungarian, mask
IoU at least 0.5), and an object SAM 3 finds later is born with the next id. An id SAM 3 stops
reporting is lost, and revived when it reports it again. Re-detection is SAM 3's own, on every frame.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from ..associate import map_ids
from ..detect.sam3 import check_phrases
from ..refine import autocast
from ..timing import Stopwatch
from ..types import FrameResult, Loaded, Stepper, scored_info
from . import Context, plain
from .sam2_video import tensor_bytes

log = logging.getLogger(__name__)
REDETECTS = False  # SAM 3 detects on every frame itself: segment.redetect does not apply
NEEDS_TEXT = True  # it tracks the target's text

_GONE = torch.empty(0)  # a processed frame no later frame reads (kept as a key: the model counts them)
_OWN_FRAME_ONLY = ("pred_masks", "high_res_masks")  # an output's masks: read only on its own frame
_MEMORY = ("maskmem_features", "maskmem_pos_enc")


class Sam3VideoTracker:
    """Detect and track the phrases with ``Sam3VideoModel``, one streamed frame at a time.

    ``knobs``: the ``segment.sam3_video`` block (thresholds and limits set on the model, and
    ``max_cond_frames`` / ``offload_state``); ``prune``: False keeps everything, as transformers does
    (the memory test's control); ``cap``: False keeps every conditioning frame (outputs as
    transformers gives them; memory then grows by a pointer per conditioning frame)."""

    def __init__(self, sam3: Loaded, phrases: Sequence[str], knobs: dict, dtype: torch.dtype | None = None,
                 clock: Stopwatch | None = None, prune: bool = True, cap: bool = True):  # fmt: skip
        self.model, self.processor, self.device = sam3.model, sam3.processor, sam3.device
        model = self.model
        model.score_threshold_detection = knobs["score_threshold"]
        model.new_det_thresh = knobs["new_object_threshold"]
        model.max_num_objects = knobs["max_objects"]
        state = torch.device("cpu") if knobs["offload_state"] else self.device
        self.session = self.processor.init_video_session(
            inference_device=self.device, inference_state_device=state, video_storage_device=state
        )
        check_phrases(self.processor, phrases)
        self.processor.add_text_prompt(self.session, list(phrases))
        self.max_cond, self.prune_on, self.cap, self.autocast = knobs["max_cond_frames"], prune, cap, dtype
        self.clock = clock or Stopwatch()
        self.clock.time_module(model.detector_model.vision_encoder, "sam3 image encoder")

    @torch.inference_mode()
    def track(self, k: int, image: np.ndarray) -> dict[int, tuple[np.ndarray, float]]:
        """SAM 3's objects on frame ``k``: its id -> (mask at the image's size, score)."""
        with self.clock("sam3 preprocess"):
            inputs = self.processor(images=image, return_tensors="pt")
            pixels = inputs.pixel_values[0].to(self.device)
        with self.clock("sam3 detect + track"), autocast(self.device, self.autocast):
            out = self.model(inference_session=self.session, frame=pixels)
        with self.clock("sam3 postprocess"):
            post = self.processor.postprocess_outputs(self.session, out, original_sizes=[list(image.shape[:2])])
            masks = post["masks"].cpu().numpy()
            found = {int(i): (masks[n], float(post["scores"][n])) for n, i in enumerate(post["object_ids"].tolist())}
        self.prune(k)
        return found

    def prune(self, k: int) -> None:
        """Drop what no frame after ``k`` reads (see the module docstring)."""
        if not self.prune_on:
            return
        s, trk = self.session, self.model.config.tracker_config
        mem_from = k + 1 - (trk.num_maskmem - 1)  # the oldest tracked frame whose memory frame k + 1 reads
        ptr_from = k + 1 - (trk.max_object_pointers_in_encoder - 1)  # ... whose object pointer it reads
        for t in [t for t, v in (s.processed_frames or {}).items() if t <= k and v is not _GONE]:
            s.processed_frames[t] = _GONE
        for idx, outputs in s.output_dict_per_obj.items():
            tracked, cond = outputs["non_cond_frame_outputs"], outputs["cond_frame_outputs"]
            for t in list(tracked):
                if t < ptr_from:
                    del tracked[t]
                    continue
                _drop(tracked[t], _OWN_FRAME_ONLY + (_MEMORY if t < mem_from else ()))
            kept = sorted(cond)
            if self.cap and len(kept) > self.max_cond:
                for t in kept[1 : len(kept) - self.max_cond + 1]:  # the first and the latest stay
                    del cond[t]
                kept = sorted(cond)
            recent = set(kept[-trk.max_cond_frame_num :]) if trk.max_cond_frame_num != -1 else set(kept)
            for t, out in cond.items():
                _drop(out, _OWN_FRAME_ONLY + (_MEMORY if t not in recent and t < mem_from else ()))
                for key in _MEMORY:  # a kept slice of the frame's batch would keep the whole batch alive
                    if key in out and out[key].untyped_storage().nbytes() > out[key].numel() * out[key].element_size():
                        out[key] = out[key].clone()
            for per_frame in (s.frames_tracked_per_obj.get(idx, {}), s.mask_inputs_per_obj.get(idx, {}),
                              s.point_inputs_per_obj.get(idx, {})):  # fmt: skip
                for t in [t for t in per_frame if t <= k]:
                    del per_frame[t]
        for per_frame in (s.obj_id_to_tracker_score_frame_wise, s.suppressed_obj_ids):
            for t in [t for t in per_frame if t <= k]:
                del per_frame[t]
        config = self.model.config
        keep = max(config.hotstart_unmatch_thresh, config.hotstart_dup_thresh, 1)
        for lists in (s.unmatched_frame_inds, s.overlap_pair_to_frame_inds):
            for frames in lists.values():
                if len(frames) > keep:
                    del frames[:-keep]

    def memory_bytes(self) -> int:
        """Bytes of tensors the session holds (pixels, outputs, inputs, caches)."""
        return tensor_bytes(_fields(self.session))


def _drop(output: dict, keys: tuple[str, ...]) -> None:
    for key in keys:
        output.pop(key, None)


def _fields(obj):
    """The session's (and its cache's) attributes as nested dicts, for :func:`tensor_bytes`."""
    if type(obj).__name__.endswith(("InferenceSession", "InferenceCache")):
        return {name: _fields(value) for name, value in vars(obj).items()}
    return obj


class Sam3Stepper:
    """:class:`Sam3VideoTracker` as a propagator of :func:`~vispipe.segment.track.loop.track`, its ids
    mapped onto the project's (see the module docstring)."""

    MATCH_IOU = 0.5  # a first-frame instance takes the id of the SAM 3 object it overlaps at least this

    def __init__(self, tracker: Sam3VideoTracker):
        self.tracker = tracker
        self.ours: dict[int, int] = {}  # SAM 3's id -> ours

    def start(self, image: np.ndarray, first: dict[int, np.ndarray]) -> None:
        found = self.tracker.track(0, image)
        self.ours = map_ids({t: mask for t, (mask, _) in found.items()}, first, self.MATCH_IOU)

    def step(self, k: int, frame: np.ndarray, _, ids: list[int], carried: dict, hidden: set) -> FrameResult:
        result = FrameResult()
        found = self.tracker.track(k, frame)
        for theirs in sorted(found):
            if theirs not in self.ours:  # an object SAM 3 found after the first frame: a new id
                self.ours[theirs] = max([*ids, *self.ours.values()], default=0) + 1
                ids.append(self.ours[theirs])
                result.events.append({"id": self.ours[theirs], "event": "born", "reason": "sam3 detection"})
        seen = {self.ours[t]: found[t] for t in found}
        for i in ids:
            mask, score = seen.get(i, (None, None))
            if mask is not None and mask.any():
                carried[i] = mask
                result.masks[i] = mask
                result.info[i] = scored_info("refined", "tracked", mask, score)
            else:
                # SAM 3 reports the object with an empty mask (vanished), or not at all
                result.info[i] = scored_info("lost", "vanished" if i in seen else "not detected", None, score)
        return result

    def anchor(self, k: int, frame: np.ndarray, masks: dict[int, np.ndarray]) -> None:
        pass  # SAM 3 re-detects on every frame itself


def build(ctx: Context) -> tuple[object, Stepper]:
    """SAM 3's concept tracker on the target's text (``segment.sam3_video``)."""
    v = ctx.settings.sam3_video
    tracker = Sam3VideoTracker(ctx.video_model, ctx.phrases, v, ctx.dtype, ctx.clock)
    log.info("SAM 3's concept tracker (segment.propagate.method: sam3_video) on %r, at most %d objects",
             ctx.phrases, v["max_objects"])  # fmt: skip
    return plain(ctx), Sam3Stepper(tracker)
