"""SAM 3 (Carion et al., "SAM 3: Segment Anything with Concepts", 2025): text -> every instance's mask
in one model (``segment.detector: sam3``), and its concept tracker (``segment.propagate.method:
sam3_video``), which detects the text on every frame, tracks what it found and gives each object
its id.

One folder serves both, as for SAM2: fetch_models saves ``Sam3VideoModel`` + ``Sam3VideoProcessor``
(the detector and the tracker), and ``Sam3Model`` + ``Sam3Processor`` load the detector's share.

**Detector.** ``Sam3Model`` scores its queries against each phrase (one batch, a phrase per image
copy); ``post_process_instance_segmentation`` keeps those at ``score_threshold`` and binarises their
masks at ``mask_threshold``; one class-agnostic NMS across phrases (the same object named by two
phrases is one instance) and ``max_instances`` follow, as for the box detectors. SAM2 refines each
box only with ``refine: true``: SAM 3's own masks are the instances otherwise.

**Tracker.** transformers' ``Sam3VideoModel`` streams (``init_video_session`` with no video, then
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

**Ids.** SAM 3's object ids are its own; :class:`Sam3Stepper` maps them onto this project's: the first
frame's instances (instances.json) take the ids of SAM 3's objects they overlap most (Hungarian, mask
IoU at least 0.5), and an object SAM 3 finds later is born with the next id. An id SAM 3 stops
reporting is lost, and revived when it reports it again. Re-detection is SAM 3's own, on every frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchvision.ops import nms

from ..errors import UserError
from .boxes import Box
from .models import Loaded
from .propagate import FrameResult, instance_info
from .sam2 import autocast
from .sam2_video import tensor_bytes
from .timing import Stopwatch

# ------------------------------------------------------------------------------------- detector

TEXT_TOKENS = 32  # SAM 3's processors pad every phrase to this many tokens and never truncate


def check_phrases(processor, phrases: Sequence[str]) -> None:
    """A UserError naming a phrase too long for SAM 3 (the model would fail on its shape)."""
    for phrase in phrases:
        n = len(processor.tokenizer(phrase).input_ids)
        if n > TEXT_TOKENS:
            raise UserError(f"the phrase {phrase!r} is {n} tokens, and SAM 3 reads at most {TEXT_TOKENS}: shorten it "
                            "in segment.targets (a noun phrase, e.g. 'a white rabbit', is what SAM 3 is trained on)")  # fmt: skip


@torch.inference_mode()
def detect(model: Loaded, image: np.ndarray, phrases: list[str], knobs: dict) -> list[tuple[Box, np.ndarray]]:
    """SAM 3's instances of ``phrases`` on an RGB ``image`` (``segment.sam3`` knobs): (box, mask) pairs,
    best first, one NMS across phrases."""
    h, w = image.shape[:2]
    check_phrases(model.processor, phrases)
    inputs = model.processor(images=[image] * len(phrases), text=phrases, return_tensors="pt").to(model.device)
    outputs = model.model(**inputs)
    results = model.processor.post_process_instance_segmentation(
        outputs, threshold=knobs["score_threshold"], mask_threshold=knobs["mask_threshold"],
        target_sizes=[(h, w)] * len(phrases),
    )  # fmt: skip
    boxes, scores, masks, named = [], [], [], []
    for phrase, r in zip(phrases, results):
        boxes.append(r["boxes"].float().cpu())
        scores.append(r["scores"].float().cpu())
        masks.append(r["masks"].bool().cpu())
        named += [phrase] * len(r["scores"])
    if not named:
        return []
    boxes, scores, masks = torch.cat(boxes), torch.cat(scores), torch.cat(masks)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    index = torch.nonzero(masks.flatten(1).any(1)).flatten()  # an empty mask is no instance
    keep = index[nms(boxes[index], scores[index], knobs["nms_iou"])] if len(index) else index
    return [
        (Box([round(float(v), 2) for v in boxes[i]], round(float(scores[i]), 4), named[i]), masks[i].numpy())
        for i in keep[: knobs["max_instances"]].tolist()
    ]


# -------------------------------------------------------------------------------------- tracker

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
    """:class:`Sam3VideoTracker` as a propagator of :func:`~vispipe.segment.propagate.track`, its ids
    mapped onto the project's (see the module docstring)."""

    MATCH_IOU = 0.5  # a first-frame instance takes the id of the SAM 3 object it overlaps at least this

    def __init__(self, tracker: Sam3VideoTracker):
        self.tracker = tracker
        self.ours: dict[int, int] = {}  # SAM 3's id -> ours

    def start(self, image: np.ndarray, first: dict[int, np.ndarray]) -> None:
        from scipy.optimize import linear_sum_assignment

        found = self.tracker.track(0, image)
        theirs, mine = sorted(found), sorted(first)
        iou = np.array([[_iou(found[t][0], first[i]) for i in mine] for t in theirs]).reshape(len(theirs), len(mine))
        if iou.size:
            rows, cols = linear_sum_assignment(-iou)
            self.ours = {theirs[r]: mine[c] for r, c in zip(rows, cols) if iou[r, c] >= self.MATCH_IOU}

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
                result.info[i] = _info("refined", "tracked", mask, score)
            else:
                # SAM 3 reports the object with an empty mask (vanished), or not at all
                result.info[i] = _info("lost", "vanished" if i in seen else "not detected", None, score)
        return result

    def anchor(self, k: int, frame: np.ndarray, masks: dict[int, np.ndarray]) -> None:
        pass  # SAM 3 re-detects on every frame itself


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def _info(state: str, reason: str, mask: np.ndarray | None, score: float | None) -> dict:
    """An instance's bookkeeping, as the other propagators write it (the score is SAM 3's detection score)."""
    info = instance_info(state, reason, mask)
    info["object_score"] = None if score is None else round(score, 4)
    return info


# ------------------------------------------------------------------------------- tiny model


@torch.no_grad()
def spread_scores(model):
    """A randomly initialised SAM 3 scores every query about 0.25: spread the scores and open the
    presence gate, so that it finds (and tracks) instances at the usual thresholds, as the real one does."""
    model.detector_model.dot_product_scoring.query_proj.weight.mul_(30)
    model.detector_model.detr_decoder.presence_head.layer3.bias.fill_(4.0)
    return model


TINY_SIZE, PATCH, HIDDEN = 112, 14, 128


def tiny(tokenizer):
    """A tiny random SAM 3 (detector and tracker) at 112 px, patch 14 (an 8x8 token grid): a 2-layer
    ViT (one windowed, one global layer), a 1-layer CLIP text tower, one DETR encoder and decoder
    layer with 8 queries, and a one-layer memory tracker. Limits of transformers' SAM 3: the tracker's
    width is a multiple of 64 above 64 (its object pointers split into 64-wide tokens) and its memory
    64 channels; the tracker config must be given ``image_size`` (its setter derives the sizes)."""
    from transformers import (
        CLIPTextConfig,
        Sam3Config,
        Sam3ImageProcessor,
        Sam3TrackerVideoConfig,
        Sam3VideoConfig,
        Sam3VideoModel,
        Sam3VideoProcessor,
    )
    from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor
    from transformers.models.sam3.configuration_sam3 import (
        Sam3DETRDecoderConfig,
        Sam3DETREncoderConfig,
        Sam3GeometryEncoderConfig,
        Sam3MaskDecoderConfig,
        Sam3VisionConfig,
        Sam3ViTConfig,
    )
    from transformers.models.sam3_tracker_video.configuration_sam3_tracker_video import (
        Sam3TrackerVideoMaskDecoderConfig,
        Sam3TrackerVideoPromptEncoderConfig,
    )

    s, g = TINY_SIZE, TINY_SIZE // PATCH
    vision = Sam3VisionConfig(
        backbone_config=Sam3ViTConfig(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, image_size=s,
            patch_size=PATCH, pretrain_image_size=s, window_size=4, global_attn_indexes=[1],
        ),
        fpn_hidden_size=HIDDEN, backbone_feature_sizes=[[4 * g, 4 * g], [2 * g, 2 * g], [g, g]],
    )  # fmt: skip
    text = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, projection_dim=32, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=32, hidden_act="gelu", bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip  # SAM 3's processors pad the text to 32 tokens
    common = dict(hidden_size=HIDDEN, num_attention_heads=2, intermediate_size=128)
    detector = Sam3Config(
        vision_config=vision, text_config=text,
        geometry_encoder_config=Sam3GeometryEncoderConfig(num_layers=1, roi_size=3, **common),
        detr_encoder_config=Sam3DETREncoderConfig(num_layers=1, **common),
        detr_decoder_config=Sam3DETRDecoderConfig(num_layers=1, num_queries=8, **common),
        mask_decoder_config=Sam3MaskDecoderConfig(hidden_size=HIDDEN, num_attention_heads=2, num_upsampling_stages=3),
    )  # fmt: skip
    tracker = Sam3TrackerVideoConfig(
        vision_config=vision,  # the tracker reads the detector's image features: only the sizes count here
        prompt_encoder_config=Sam3TrackerVideoPromptEncoderConfig(hidden_size=HIDDEN, image_size=s, patch_size=PATCH),
        mask_decoder_config=Sam3TrackerVideoMaskDecoderConfig(hidden_size=HIDDEN, mlp_dim=128, num_attention_heads=2,
                                                              iou_head_hidden_dim=HIDDEN),
        image_size=s, memory_attention_hidden_size=HIDDEN, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=128, memory_encoder_hidden_size=HIDDEN,
        memory_encoder_output_channels=64, mask_downsampler_embed_dim=HIDDEN, memory_fuser_embed_dim=HIDDEN,
        memory_fuser_intermediate_dim=128,
    )  # fmt: skip
    config = Sam3VideoConfig(detector_config=detector, tracker_config=tracker, low_res_mask_size=4 * g)
    model = spread_scores(Sam3VideoModel(config))
    m = 4 * g  # the masks are 4x the token grid
    images = Sam3ImageProcessor(size={"height": s, "width": s}, mask_size={"height": m, "width": m})
    frames = Sam2VideoVideoProcessor(size={"height": s, "width": s}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return model, Sam3VideoProcessor(image_processor=images, video_processor=frames, tokenizer=tokenizer)
