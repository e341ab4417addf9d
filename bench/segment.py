#!/usr/bin/env python
"""Video segmentation speed: our two propagators against transformers' own SAM2 video loop.

On the same frames, in one process, with one model (full-size SAM2.1-hiera-small built from its
config with random weights: no download; speed does not depend on the weights):

- ``flow``: our default propagator (segment.propagate.method flow): the seed's Farneback flow warps
  the mask, SAM2 refines it from a box and points on every frame (prefetch thread on, as configured);
- ``flow_dis``: the same with OpenCV's DIS flow (segment.flow.method dis, preset fast);
- ``sam2_video``: our propagator around transformers' ``Sam2VideoModel``, memory pruned;
- ``peer``: transformers' plain streaming loop, as its documentation writes it
  (``init_video_session``, ``add_inputs_to_inference_session`` with the first mask,
  ``model(inference_session=..., frame=...)``, ``post_process_masks``).

All three start from the same first-frame mask (one object of a synthetic 1280x720 clip) and
return numpy masks per frame; file writing is left out (the peer writes none). Prints frames/s,
the ratio to the peer and our per-stage breakdown (vispipe.segment.timing), and writes JSON.

Then the detectors (segment.detector), full size with random weights (Grounding DINO-tiny's,
OWLv2-base-patch16's and SAM 3's architectures, transformers' default configs; the tiny tokenizers,
since the real vocabularies need the network), on the same frames: ours (vispipe.segment.detect: grounding_dino, owlv2,
sam3: the model's post-processing, then NMS across phrases) against the model's own
transformers loop (processor, model, post-processing), and ours followed by SAM2's box refinement,
per frame. SAM 3 reads one phrase (two double its 0.8-billion-parameter forward on a CPU).

Then the other trackers (segment.propagate.method), full size with random weights, ours against the
model's own documented streaming loop, frame by frame in turn: ``edgetam_video`` (EdgeTAM's released
architecture, RepViT-M1) in our SAM2 loop against transformers' loop for it, and ``sam3_video`` (SAM 3's
default config; its scores nudged as the tiny model's are, so that it tracks objects, at most 5)
through our stepper against ``init_video_session`` / ``add_text_prompt`` / ``postprocess_outputs``.

    python bench/segment.py [--frames 8] [--size 720x1280] [--device auto] [--threads 2] [--detector-frames 2]
                            [--tracker-frames 3] [--out bench/out/segment.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
try:
    import vispipe  # noqa: F401
except ImportError:  # a bare GPU machine: use this checkout's package without installing it
    sys.path.insert(0, str(ROOT / "src"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from vispipe.runtime import device_name, pick_device  # noqa: E402
from vispipe.segment import models  # noqa: E402
from vispipe.segment.detect import grounding_dino, owlv2, sam3  # noqa: E402
from vispipe.segment.evaluation.synthetic import make_clip  # noqa: E402
from vispipe.segment.models import edgetam  # noqa: E402
from vispipe.segment.models.tokenizers import tiny_bert_tokenizer, tiny_clip_tokenizer  # noqa: E402
from vispipe.segment.refine import Sam2Refiner, autocast_dtype  # noqa: E402
from vispipe.segment.refine import autocast as cast  # noqa: E402
from vispipe.segment.timing import Stopwatch  # noqa: E402
from vispipe.segment.track import sam3_video  # noqa: E402
from vispipe.segment.track.flow import propagate  # noqa: E402
from vispipe.segment.track.loop import track  # noqa: E402
from vispipe.segment.track.sam2_video import Sam2VideoTracker, TrackerStepper  # noqa: E402
from vispipe.segment.types import Loaded  # noqa: E402

# config/config.yaml's segment block: the seed's Farneback, SAM2 prompts and bounds
FLOW = {"method": "farneback", "scale": 1.0, "pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3,
        "poly_n": 5, "poly_sigma": 1.2}  # fmt: skip
BOUNDS = {"min_area_ratio": 0.5, "max_area_ratio": 2.0, "lost_area_ratio": 0.2, "min_sam2_score": 0.5,
          "use_object_score": True}  # fmt: skip


def sam2_small_folder(root: Path) -> Path:
    """SAM2.1-hiera-small's architecture (Hiera 96..768, blocks 1-2-11-2, global attention 7/10/13; the
    rest is transformers' default, which is SAM2.1's) with random weights, saved as fetch_models saves."""
    from transformers import Sam2VideoConfig, Sam2VideoModel, Sam2VideoProcessor
    from transformers.models.sam2.image_processing_sam2 import Sam2ImageProcessor
    from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor

    torch.manual_seed(0)
    backbone = dict(blocks_per_stage=[1, 2, 11, 2], global_attention_blocks=[7, 10, 13])
    model = Sam2VideoModel(Sam2VideoConfig(vision_config=dict(backbone_config=backbone)))
    folder = root / "sam2.1-hiera-small-random"
    model.save_pretrained(folder)
    Sam2VideoProcessor(image_processor=Sam2ImageProcessor(), video_processor=Sam2VideoVideoProcessor()).save_pretrained(
        folder
    )
    params = sum(p.numel() for p in model.parameters())
    (folder / models.SOURCE_FILE).write_text(json.dumps({"source": "bench", "random_weights": True, "params": params}))
    return folder


def run_flow(image_sam2, frames, first, autocast, clock, flow: dict = FLOW) -> list:
    refiner = Sam2Refiner(image_sam2, 8, 8, 5, clock, autocast)
    results = propagate(iter(frames), {1: first}, refiner, flow, BOUNDS, seed=0, clock=clock, prefetch=True)
    return [r.masks.get(1) for r in results]


def run_flow_dis(image_sam2, frames, first, autocast, clock) -> list:
    """The flow mode with OpenCV's DIS flow (segment.flow.method dis, preset fast)."""
    return run_flow(image_sam2, frames, first, autocast, clock, dict(FLOW, method="dis", dis_preset="fast"))


def run_sam2_video(video_sam2, frames, first, autocast, clock) -> list:
    tracker = Sam2VideoTracker(video_sam2, autocast=autocast, clock=clock)
    results = track(((f, None) for f in frames), {1: first}, TrackerStepper(tracker, BOUNDS))
    return [r.masks.get(1) for r in results]


@torch.inference_mode()
def run_peer(video_sam2, frames, first, autocast, clock) -> list:
    """transformers' documented streaming loop."""
    model, processor, device = video_sam2.model, video_sam2.processor, video_sam2.device
    session = processor.init_video_session(inference_device=device)
    out_masks = []
    for k, frame in enumerate(frames):
        inputs = processor(images=frame, device=device, return_tensors="pt")
        if k == 0:
            processor.add_inputs_to_inference_session(
                session, frame_idx=0, obj_ids=[1], input_masks=[torch.from_numpy(first)],
                original_size=inputs.original_sizes[0],
            )  # fmt: skip
        with cast(device, autocast):
            out = model(inference_session=session, frame=inputs.pixel_values[0])
        masks = processor.post_process_masks([out.pred_masks.float()], original_sizes=inputs.original_sizes)[0]
        out_masks.append(masks[0, 0].cpu().numpy())
    return out_masks


MODES = {"flow": run_flow, "flow_dis": run_flow_dis, "sam2_video": run_sam2_video, "peer": run_peer}

PHRASES = ["a white rabbit", "a tree"]
KNOBS = {"box_threshold": 0.35, "text_threshold": 0.25, "score_threshold": 0.1, "nms_iou": 0.5, "max_instances": 10}
SAM3_PHRASES = PHRASES[:1]
SAM3_KNOBS = {"score_threshold": 0.5, "mask_threshold": 0.5, "nms_iou": 0.5, "max_instances": 10}


def full_size_detector(kind: str, device: torch.device) -> Loaded:
    """Grounding DINO-tiny, OWLv2-base-patch16 or SAM 3 (transformers' default configs) with random weights."""
    import transformers as t

    torch.manual_seed(0)
    if kind == "sam3":
        model = t.Sam3Model(t.Sam3Config())
        processor = t.Sam3Processor(image_processor=t.Sam3ImageProcessor(), tokenizer=tiny_clip_tokenizer(32))
    elif kind == "grounding_dino":
        tokenizer = tiny_bert_tokenizer()
        model = t.GroundingDinoForObjectDetection(t.GroundingDinoConfig())
        processor = t.GroundingDinoProcessor(image_processor=t.GroundingDinoImageProcessor(), tokenizer=tokenizer)
    else:
        tokenizer = tiny_clip_tokenizer()
        tokenizer.model_max_length = 16  # OWLv2's text length
        model = t.Owlv2ForObjectDetection(t.Owlv2Config(vision_config={"image_size": 960}))  # the ensemble checkpoint's
        processor = t.Owlv2Processor(image_processor=t.Owlv2ImageProcessor(), tokenizer=tokenizer)
    return Loaded(model.to(device).eval(), processor, {"source": "bench", "random_weights": True}, device)


@torch.inference_mode()
def detector_peer(loaded: Loaded, kind: str, frame) -> int:
    """The model's own loop, as its model card writes it: processor, model, post-processing."""
    h, w = frame.shape[:2]
    if kind == "sam3":  # its model card's loop
        inputs = loaded.processor(images=frame, text=SAM3_PHRASES[0], return_tensors="pt").to(loaded.device)
        out = loaded.model(**inputs)
        (res,) = loaded.processor.post_process_instance_segmentation(
            out, threshold=SAM3_KNOBS["score_threshold"], mask_threshold=SAM3_KNOBS["mask_threshold"],
            target_sizes=[(h, w)],
        )  # fmt: skip
    elif kind == "grounding_dino":
        inputs = loaded.processor(images=frame, text=grounding_dino.caption(PHRASES), return_tensors="pt").to(
            loaded.device
        )
        out = loaded.model(**inputs)
        (res,) = loaded.processor.post_process_grounded_object_detection(
            out, inputs["input_ids"], threshold=KNOBS["box_threshold"], text_threshold=KNOBS["text_threshold"],
            target_sizes=[(h, w)],
        )  # fmt: skip
    else:
        inputs = loaded.processor(text=[PHRASES], images=frame, return_tensors="pt").to(loaded.device)
        out = loaded.model(**inputs)
        (res,) = loaded.processor.post_process_grounded_object_detection(
            out, threshold=KNOBS["score_threshold"], target_sizes=[(h, w)], text_labels=[PHRASES]
        )
    return len(res["boxes"])


def time_interleaved(fns: dict, frames, sync) -> dict:
    """Seconds per frame of each of ``fns``, after one warm-up call each: the modes take turns frame by
    frame (so that a slow spell of the machine hits them alike), and each gets its median frame."""
    for fn in fns.values():
        fn(frames[0])
    times = {name: [] for name in fns}
    for f in frames:
        for name, fn in fns.items():
            if sync:
                sync()
            t0 = time.perf_counter()
            fn(f)
            if sync:
                sync()
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(t)) for name, t in times.items()}


def detector_row(kind: str, frames, refiner: Sam2Refiner, device, sync) -> dict:
    """Seconds per frame of one box detector: ours, the peer loop, and ours + SAM2 on the boxes."""
    loaded = full_size_detector(kind, device)

    def ours(f):
        if kind == "sam3":
            return [b for b, _ in sam3.found(loaded, f, SAM3_PHRASES, SAM3_KNOBS)]
        return {"grounding_dino": grounding_dino, "owlv2": owlv2}[kind].boxes(loaded, f, PHRASES, KNOBS)

    modes = {"ours": ours, "peer": lambda f: detector_peer(loaded, kind, f)}
    if kind != "sam3":  # SAM 3's own masks are its instances (segment.sam3.refine: false)
        modes["ours + SAM2"] = lambda f: refiner.boxes(f, [b.xyxy for b in ours(f)])
    return {"params": sum(p.numel() for p in loaded.model.parameters()), **time_interleaved(modes, frames, sync)}


def detector_rows(frames, image_sam2, autocast, device, sync, skip=()) -> dict:
    refiner = Sam2Refiner(image_sam2, 8, 8, 5, None, autocast)
    kinds = [k for k in ("grounding_dino", "owlv2", "sam3") if k not in skip]
    return {kind: detector_row(kind, frames, refiner, device, sync) for kind in kinds}


def detector_table(report: dict) -> str:
    lines = [
        "",
        f"Detectors, full size with random weights, {report['size'][1]}x{report['size'][0]}, "
        f"{report['detector_frames']} frames, {len(PHRASES)} phrases (SAM 3: {len(SAM3_PHRASES)}):",
        "",
        "| detector | parameters | ours s/frame | model's own loop s/frame | ours / own | ours + SAM2 boxes s/frame |",
        "|---|---|---|---|---|---|",
    ]
    for kind, r in report["detectors"].items():
        refined = f"{r['ours + SAM2']:.2f}" if "ours + SAM2" in r else "(its own masks)"
        lines.append(
            f"| {kind} | {r['params'] / 1e6:.0f}M | {r['ours']:.2f} | {r['peer']:.2f} | {r['ours'] / r['peer']:.2f}x "
            f"| {refined} |"
        )
    return "\n".join(lines)


@torch.inference_mode()
def sam3_peer_loop(loaded: Loaded):
    """SAM 3's own documented streaming loop, one frame per call."""
    model, processor, device = loaded.model, loaded.processor, loaded.device
    session = processor.init_video_session(inference_device=device)
    processor.add_text_prompt(session, SAM3_PHRASES)

    def step(frame):
        inputs = processor(images=frame, return_tensors="pt")
        out = model(inference_session=session, frame=inputs.pixel_values[0].to(device))
        return processor.postprocess_outputs(session, out, original_sizes=inputs.original_sizes)

    return step


def full_size_tracker(kind: str, device: torch.device) -> Loaded:
    """EdgeTAM (its released RepViT-M1 architecture) or SAM 3's video model, with random weights."""
    import transformers as t
    from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor

    torch.manual_seed(0)
    if kind == "edgetam_video":
        model = edgetam.full_size()
        processor = t.Sam2VideoProcessor(
            image_processor=t.Sam2ImageProcessor(), video_processor=Sam2VideoVideoProcessor()
        )
    else:
        model = sam3.spread_scores(t.Sam3VideoModel(t.Sam3VideoConfig()))  # so that the tracker has objects
        processor = t.Sam3VideoProcessor(image_processor=t.Sam3ImageProcessor(), video_processor=Sam2VideoVideoProcessor(),
                                         tokenizer=tiny_clip_tokenizer(32))  # fmt: skip
    return Loaded(model.to(device).eval(), processor, {"source": "bench", "random_weights": True}, device)


SAM3_VIDEO = {"score_threshold": 0.5, "new_object_threshold": 0.7, "max_objects": 5, "max_cond_frames": 16,
              "offload_state": False}  # fmt: skip


def tracker_row(kind: str, frames, first, autocast, device, sync) -> dict:
    """Seconds per frame of one tracker, ours against the model's own loop, taking turns frame by frame
    (each keeps its own session; the first frame of each is its warm-up and is not counted)."""
    loaded = full_size_tracker(kind, device)
    if kind == "edgetam_video":
        ours_tracker = Sam2VideoTracker(loaded, autocast=autocast, name="edgetam")
        ours_stepper = TrackerStepper(ours_tracker, BOUNDS)
        peer_session = loaded.processor.init_video_session(inference_device=device)

        def peer(k, frame):
            inputs = loaded.processor(images=frame, device=device, return_tensors="pt")
            if k == 0:
                loaded.processor.add_inputs_to_inference_session(
                    peer_session, frame_idx=0, obj_ids=[1], input_masks=[torch.from_numpy(first)],
                    original_size=inputs.original_sizes[0],
                )  # fmt: skip
            with torch.inference_mode(), cast(device, autocast):
                out = loaded.model(inference_session=peer_session, frame=inputs.pixel_values[0])
            return loaded.processor.post_process_masks([out.pred_masks.float()], original_sizes=inputs.original_sizes)

        def ours(k, frame):
            if k == 0:
                return ours_stepper.start(frame, {1: first})
            return ours_stepper.step(k, frame, None, [1], {1: first}, set())
    else:
        ours_stepper = sam3_video.Sam3Stepper(sam3_video.Sam3VideoTracker(loaded, SAM3_PHRASES, SAM3_VIDEO, autocast))
        peer_step = sam3_peer_loop(loaded)

        def peer(k, frame):
            return peer_step(frame)

        def ours(k, frame):
            if k == 0:
                return ours_stepper.start(frame, {})
            return ours_stepper.step(k, frame, None, [], {}, set())

    times = {"ours": [], "peer": []}
    for k, frame in enumerate(frames):
        for name, fn in (("ours", ours), ("peer", peer)):
            if sync:
                sync()
            t0 = time.perf_counter()
            fn(k, frame)
            if sync:
                sync()
            if k:
                times[name].append(time.perf_counter() - t0)
    return {"params": sum(p.numel() for p in loaded.model.parameters()),
            **{name: float(np.median(t)) for name, t in times.items()}}  # fmt: skip


def tracker_table(report: dict) -> str:
    lines = [
        "",
        f"Other trackers, full size with random weights, {report['size'][1]}x{report['size'][0]}, "
        f"{report['tracker_frames'] - 1} tracked frames after a warm-up frame:",
        "",
        "| tracker | parameters | ours s/frame | model's own loop s/frame | ours / own |",
        "|---|---|---|---|---|",
    ]
    for kind, r in report["trackers"].items():
        lines.append(
            f"| {kind} | {r['params'] / 1e6:.0f}M | {r['ours']:.2f} | {r['peer']:.2f} | {r['ours'] / r['peer']:.2f}x |"
        )
    return "\n".join(lines)


def table(report: dict) -> str:
    """The report as Markdown: frames/s and the ratio to the peer, then our stages."""
    rows, peer = report["rows"], report["rows"]["peer"]["frames_per_s"]
    h, w = report["size"]
    lines = [
        f"{report['device']}, torch {report['torch']}, {report['threads']} threads, autocast {report['autocast']}; "
        f"{report['model']}, {w}x{h}, one object, {report['frames'] - 1} propagated frames",
        "",
        "| mode | frames/s | ms/frame | vs peer |",
        "|---|---|---|---|",
    ]
    for mode, r in rows.items():
        lines.append(
            f"| {mode} | {r['frames_per_s']:.3f} | {r['ms_per_frame']:.0f} | {r['frames_per_s'] / peer:.2f}x |"
        )
    for mode in [m for m in rows if m != "peer"]:
        stages = rows[mode]["stages_ms_per_frame"]
        lines += ["", f"{mode}, ms per frame by stage: " + ", ".join(f"{s} {v:.1f}" for s, v in stages.items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", default="720x1280", help="HEIGHTxWIDTH")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch and OpenCV threads (0: their defaults)")
    p.add_argument("--autocast", default="auto", choices=["auto", "bfloat16", "float16", "none"],
                   help="segment.sam2.autocast (auto: bfloat16 on CUDA, float32 on CPU)")  # fmt: skip
    p.add_argument("--model", default="small", choices=["small", "tiny"],
                   help="small: SAM2.1-hiera-small's size; tiny: the demo's tiny SAM2 (a smoke test)")  # fmt: skip
    p.add_argument("--detector-frames", type=int, default=3, help="frames per detector (0: skip them)")
    p.add_argument("--tracker-frames", type=int, default=3,
                   help="frames per other tracker, the first a warm-up (0: skip them)")  # fmt: skip
    p.add_argument("--skip", nargs="*", default=[], choices=["grounding_dino", "owlv2", "sam3", "edgetam"],
                   help="leave these models out")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("bench/out/segment.json"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    device = pick_device(args.device)
    autocast = autocast_dtype(args.autocast, device)
    h, w = map(int, args.size.split("x"))
    clip = make_clip(args.frames, (h, w), seed=0)
    frames, first = list(clip.frames), clip.masks[0] == 1
    with tempfile.TemporaryDirectory() as tmp:
        if args.model == "small":
            folder = sam2_small_folder(Path(tmp))
        else:
            folder = Path(tmp) / "tiny"
            models.fetch({"source": "random-tiny", "dir": tmp}, {"sam2": folder})
        image_sam2 = models.load("sam2", folder, device)
        video_sam2 = models.load("sam2", folder, device, video=True)
    loaded = {"flow": image_sam2, "flow_dis": image_sam2, "sam2_video": video_sam2, "peer": video_sam2}
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    for mode, fn in MODES.items():  # warm-up: kernels, allocator, OpenCV
        fn(loaded[mode], frames[:2], first, autocast, Stopwatch(sync))
    rows = {}
    for mode, fn in MODES.items():
        clock = Stopwatch(sync)
        if sync:
            sync()
        t0 = time.perf_counter()
        masks = fn(loaded[mode], frames, first, autocast, clock)
        if sync:
            sync()
        seconds = time.perf_counter() - t0
        steps = len(frames) - 1  # the first frame is given, the others are propagated
        rows[mode] = {
            "frames": steps,
            "seconds": seconds,
            "frames_per_s": steps / seconds,
            "ms_per_frame": 1000 * seconds / steps,
            "stages_ms_per_frame": clock.summary(steps)["ms_per_frame"] if mode != "peer" else {},
            "mask_pixels_last": int(masks[-1].sum()) if masks[-1] is not None else 0,
        }
    peer = rows["peer"]["frames_per_s"]
    report = {
        "device": device_name(device), "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "autocast": str(autocast or "none"),
        "model": "SAM2.1-hiera-small (random weights)" if args.model == "small" else "the demo's tiny random SAM2",
        "size": [h, w], "frames": len(frames), "rows": rows,
        "ratios_vs_peer": {m: r["frames_per_s"] / peer for m, r in rows.items()},
    }  # fmt: skip
    print(table(report))
    if args.detector_frames:
        report["detector_frames"] = args.detector_frames
        report["detectors"] = detector_rows(frames[: args.detector_frames], image_sam2, autocast, device, sync,
                                            skip=args.skip)  # fmt: skip
        print(detector_table(report))
    if args.tracker_frames:
        report["tracker_frames"] = args.tracker_frames
        kinds = [k for k in ("edgetam_video", "sam3_video") if k.split("_")[0] not in args.skip]
        report["trackers"] = {k: tracker_row(k, frames[: args.tracker_frames], first, autocast, device, sync)
                              for k in kinds}  # fmt: skip
        print(tracker_table(report))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {args.out}")
    return report


if __name__ == "__main__":
    main()
