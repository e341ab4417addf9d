"""SAM2's own tracker (``segment.propagate.method: sam2_video``), streamed frame by frame in bounded memory.

SAM 2 tracks with a memory: every frame's mask is encoded into a memory feature, and each new frame
attends to the conditioning frames (where masks were given) and to the last ``num_maskmem - 1``
tracked frames, plus object pointers from the last ``max_object_pointers_in_encoder`` frames.
transformers' ``Sam2VideoModel`` streams it (``Sam2VideoProcessor.init_video_session`` with no video,
then ``model(inference_session=..., frame_idx=k, frame=...)``), but its session keeps every frame's
pixels and every object's outputs for the whole video: at 1024 px that is 12 MB of pixels per frame,
and memory grows until a long video fills the GPU. :meth:`Sam2VideoTracker.prune` drops after each
frame what no later frame can read: pixels and inputs of frames already done, tracked outputs older
than the memory window, and conditioning frames beyond ``max_cond_frames`` (the first is kept, then
the latest). Memory stays flat (``tests/test_sam2_video.py`` streams 300 frames). Pruning and
re-anchoring edit the session's dictionaries as transformers 5.18 lays them out (the version
``constraints.txt`` pins); the tests would catch a layout that changed.

:class:`TrackerStepper` fits the tracker into :func:`~vispipe.segment.track.loop.track`, so the outputs
(instance-id PNGs, ``tracks.json`` states, COCO RLE) and re-detection are those of the ``flow`` mode:
a visible mask is ``refined`` (reason ``tracked``); SAM2's object score below 0 makes an instance
``lost`` (``occluded``) on that frame while SAM2 keeps looking for it; a re-detection anchors SAM2 on
the detected mask (a new conditioning frame).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from ..refine import autocast
from ..timing import Stopwatch
from ..types import FrameResult, Loaded, Stepper, scored_info
from . import Context, plain

log = logging.getLogger(__name__)


def tensor_bytes(obj, seen: set | None = None) -> int:
    """Bytes of the distinct tensors reachable from ``obj`` through dicts, lists and tuples."""
    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        key = (obj.untyped_storage().data_ptr(), obj.device)
        if key in seen:
            return 0
        seen.add(key)
        return obj.untyped_storage().nbytes()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v, seen) for v in obj)
    return 0


class Sam2VideoTracker:
    """Track objects given as masks with ``Sam2VideoModel``, one streamed frame at a time.

    ``max_cond_frames``: conditioning frames kept per object (the first and the latest); ``offload``:
    keep the session's state and pixels in CPU memory (the model still runs on ``sam2.device``);
    ``autocast``: a dtype to run the model under (``torch.autocast``), or None; ``prune``: False keeps
    everything, as transformers does (the benchmark's peer, and the memory test's control); ``name``:
    the model's, in the stage names (``edgetam`` for EdgeTAM's tracker)."""

    def __init__(self, sam2: Loaded, max_cond_frames: int = 4, offload: bool = False,
                 autocast: torch.dtype | None = None, clock: Stopwatch | None = None, prune: bool = True,
                 name: str = "sam2"):  # fmt: skip
        self.model, self.processor, self.device = sam2.model, sam2.processor, sam2.device
        state = torch.device("cpu") if offload else self.device
        self.session = self.processor.init_video_session(
            inference_device=self.device, inference_state_device=state, video_storage_device=state
        )
        config = self.model.config
        self.window = max(config.num_maskmem - 1, config.max_object_pointers_in_encoder - 1)  # frames back
        self.max_cond, self.prune_on, self.autocast = max_cond_frames, prune, autocast
        self.clock = clock or Stopwatch()
        self.name = name  # the model's, in the stage names: sam2, or edgetam (EdgeTAM's tracker in this loop)
        self.clock.time_module(self.model.vision_encoder, f"{name} image encoder")
        self.size: tuple[int, int] | None = None

    def add(self, k: int, masks: dict[int, np.ndarray]) -> None:
        """Condition objects (new or known) on frame ``k`` with these masks; the next :meth:`track` of
        frame ``k`` uses them. A frame already tracked becomes a conditioning frame of those objects."""
        s = self.session
        for i in masks:
            if i in s._obj_id_to_idx:  # forget the tracked output, so that the masks condition frame k
                idx = s.obj_id_to_idx(i)
                s.frames_tracked_per_obj[idx].pop(k, None)
                s.output_dict_per_obj[idx]["non_cond_frame_outputs"].pop(k, None)
        self.processor.add_inputs_to_inference_session(
            s, frame_idx=k, obj_ids=list(masks), input_masks=[torch.from_numpy(m) for m in masks.values()]
        )

    @torch.inference_mode()
    def track(self, k: int, image: np.ndarray | None = None) -> dict[int, tuple[np.ndarray, float]]:
        """Every object's mask and object score on frame ``k`` (``image`` None: frame ``k`` again,
        after :meth:`add`)."""
        clock, frame = self.clock, None
        if image is not None:
            self.size = image.shape[:2]
            with clock(f"{self.name} preprocess"):
                frame = self.processor(images=image, return_tensors="pt").pixel_values[0].to(self.device)
        with (
            clock(f"{self.name} memory + mask decode"),
            autocast(self.device, self.autocast),
        ):  # the encoder's share goes to its own stage
            out = self.model(inference_session=self.session, frame_idx=k, frame=frame)
        with clock(f"{self.name} postprocess"):
            masks = self.processor.post_process_masks([out.pred_masks.float()], original_sizes=[list(self.size)])
            masks = masks[0][:, 0].cpu().numpy()
            scores = out.object_score_logits.float().reshape(-1).cpu().numpy()
        return {int(i): (masks[n], float(scores[n])) for n, i in enumerate(out.object_ids)}

    def prune(self, k: int) -> None:
        """Drop what no frame after ``k`` reads (see the module docstring)."""
        if not self.prune_on:
            return
        s, oldest = self.session, k + 1 - self.window  # the oldest tracked frame frame k + 1 may read
        for t in [t for t in (s.processed_frames or {}) if t <= k]:
            del s.processed_frames[t]
        for idx, outputs in s.output_dict_per_obj.items():
            tracked, cond = outputs["non_cond_frame_outputs"], outputs["cond_frame_outputs"]
            for t in [t for t in tracked if t < oldest]:
                del tracked[t]
            kept = sorted(cond)
            for t in kept[1 : len(kept) - self.max_cond + 1] if len(kept) > self.max_cond else []:
                del cond[t]
            for t in [t for t in s.frames_tracked_per_obj[idx] if t < oldest]:
                del s.frames_tracked_per_obj[idx][t]
            for inputs in (s.mask_inputs_per_obj[idx], s.point_inputs_per_obj[idx]):
                for t in [t for t in inputs if t <= k]:
                    del inputs[t]

    def memory_bytes(self) -> int:
        """Bytes of tensors the session holds (pixels, outputs, inputs, cached image features)."""
        s = self.session
        held = [s.processed_frames or {}, s.output_dict_per_obj, s.mask_inputs_per_obj, s.point_inputs_per_obj,
                s.cache._vision_features]  # fmt: skip
        return tensor_bytes(held)


class TrackerStepper:
    """:class:`Sam2VideoTracker` as a propagator of :func:`~vispipe.segment.track.loop.track`."""

    def __init__(self, tracker: Sam2VideoTracker, bounds: dict):
        self.tracker, self.use_object_score = tracker, bounds["use_object_score"]

    def start(self, image: np.ndarray, first: dict[int, np.ndarray]) -> None:
        if first:
            self.tracker.add(0, first)
            self.tracker.track(0, image)

    def step(self, k: int, frame: np.ndarray, _, ids: Sequence[int], carried: dict, hidden: set) -> FrameResult:
        tracker = self.tracker
        tracker.prune(k - 1)
        out = tracker.track(k, frame) if tracker.session.get_obj_num() else {}
        result = FrameResult()
        for i in ids:
            mask, score = out.get(i, (None, None))
            present = score is not None and (score >= 0 or not self.use_object_score)
            visible = present and bool(mask.any())
            if visible:
                carried[i] = mask
            if i in hidden:  # SAM2 still follows it, but no detection agreed with it yet
                result.info[i] = scored_info("lost", "not re-detected", None, score)
            elif visible:
                result.masks[i] = mask
                result.info[i] = scored_info("refined", "tracked", mask, score)
            else:
                result.info[i] = scored_info(
                    "lost", "occluded" if score is not None and score < 0 else "vanished", None, score
                )
        return result

    def anchor(self, k: int, frame: np.ndarray, masks: dict[int, np.ndarray]) -> None:
        tracker = self.tracker
        tracker.add(k, masks)
        # encodes the anchored masks into SAM2's memory. Always with the frame (its features are cached:
        # the encoder does not run again): without one the model takes its whole-video path, which caps
        # the object pointers at the frames the session holds, and pruning left it one (other objects'
        # scores then turn NaN, or lose their pointers)
        tracker.track(k, frame)


def build(ctx: Context) -> tuple[object, Stepper]:
    """SAM2's tracker (``segment.sam2_video``) on the kept frames."""
    return plain(ctx), TrackerStepper(tracker(ctx, ctx.settings.sam2_video, "sam2"), ctx.settings.propagate)


def tracker(ctx: Context, knobs: dict, name: str) -> Sam2VideoTracker:
    """The streaming tracker over ``ctx.video_model`` with ``knobs`` (``max_cond_frames``, ``offload_state``)."""
    t = Sam2VideoTracker(ctx.video_model, knobs["max_cond_frames"], knobs["offload_state"], ctx.dtype, ctx.clock,
                         name=name)  # fmt: skip
    log.info("%s's own tracker (segment.propagate.method: %s), memory window %d frames",
             "SAM2" if name == "sam2" else "EdgeTAM", ctx.name, t.window)  # fmt: skip
    return t
