"""Where the segmentation models and outputs go, and the checks the workflow runs on ``config["segment"]``
before any job. The output file names are defined here once: the rules build their outputs from
them (keys by :func:`vispipe.layout.output_key`) and the steps write them.

The Snakefile and the rule files import this module, so it stays light: the standard library and
:mod:`vispipe.config` only, never torch, transformers or OpenCV (a dry run must not load them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from ..config import ConfigError
from . import registry

SEG = "results/segment"
HEATMAP, MASK, OVERLAY = "heatmap.png", "mask.png", "overlay.png"
PICTURES = [HEATMAP, MASK, OVERLAY]
INSTANCES, TRACKS, OVERLAY_VIDEO = "instances.json", "tracks.json", "overlay.mp4"
TRACK_FRAMES = "tracks.jsonl"  # propagate's per-frame entries, one line each, beside tracks.json (its summary)
FIRST = "first"  # a video's first-frame pictures: results/segment/{video}/{target}/first/
FIRST_PICTURES = [HEATMAP, MASK]  # segment_first's; render_overlay draws first/overlay.png
# evaluation against ground truth (videos with segment.videos.<key>.ground_truth): {video}/{target}/eval/
EVAL = "eval"
JF_MD, JF_CSV, J_PLOT, IDENTITY = "jf.md", "jf.csv", "j_per_frame.png", "identity.json"
EVAL_OUTPUTS = [JF_MD, JF_CSV, J_PLOT, IDENTITY]
# a DAVIS-layout dataset (segment.davis): results/segment/davis/, the DAVIS 2017 evaluation's tables
DAVIS_DIR = f"{SEG}/davis"
DAVIS_GLOBAL, DAVIS_PER_SEQUENCE, DAVIS_MD = "global_results.csv", "per-sequence_results.csv", "results.md"
DAVIS_OUTPUTS = [DAVIS_GLOBAL, DAVIS_PER_SEQUENCE, DAVIS_MD]
EXPORT = "export"  # segment.export.formats: {video}/{target}/export/ (yolo/, cvat.xml, label_studio.json, coco/)
DETECTORS = tuple(registry.DETECTORS)  # segment.detector: text -> instances
# segment.propagate.method -> the model its tracker runs, besides SAM2 (which every run fetches)
TRACKER_MODELS = {name: t.model for name, t in registry.TRACKERS.items() if t.model not in (None, "sam2")}
KINDS = tuple(registry.MODELS)  # every model fetch_models can fetch
RANDOM_TINY = "random-tiny"
RANDOM_WARNING = (
    "RANDOM WEIGHTS: these are tiny, randomly initialised models (segment.models.source: random-tiny) "
    "that only exercise the pipeline. Expect heatmaps of noise and masks that cover arbitrary regions, "
    "not the prompt's object; every picture and video carries a red RANDOM WEIGHTS strip. For the real "
    "CLIPSeg and SAM2 (network once, about 1 GB): snakemake --cores all --configfile config/demo.yaml "
    "--config 'segment={models: {source: hub}}'"
)

# The config blocks each step reads: what its rule passes and what its provenance hashes. A step run
# without model folders also reads segment.models (to find them).
PROPAGATE_BLOCKS = ("segment.propagate", "segment.sam2", "segment.seed", "segment.device")
# what each propagator (segment.propagate.method) reads besides
METHOD_BLOCKS = {
    "flow": ("segment.flow",),
    "sam2_video": ("segment.sam2_video",),
    "edgetam_video": ("segment.edgetam_video",),
    "sam3_video": ("segment.sam3_video",),
}
MODELS_BLOCK = "segment.models"
# the limits on one input (segment.limits) each step applies: a frame's size, a prompt file's size
FRAME_LIMITS = ("segment.limits.max_pixels", "segment.limits.downscale")
PROMPT_LIMITS = ("segment.limits.max_prompt_instances", "segment.limits.max_prompt_points")


def detector_of(seg: dict) -> str:
    """``segment.detector``; a config without the key keeps the seed's CLIPSeg."""
    return seg.get("detector", "clipseg")


def tracker_model(seg: dict) -> str | None:
    """The model ``segment.propagate.method``'s tracker runs besides SAM2 (None: flow, sam2_video)."""
    return TRACKER_MODELS.get(seg.get("propagate", {}).get("method", "flow"))


def run_models(seg: dict) -> tuple[str, ...]:
    """Every model a run fetches: the detector, SAM2 and the tracker's model (once each)."""
    return tuple(dict.fromkeys(k for k in (detector_of(seg), "sam2", tracker_model(seg)) if k))


def detect_blocks(target: str, detector: str = "clipseg") -> tuple[str, ...]:
    """The blocks that turn ``target``'s text into instances: its prompt and the detector's knobs
    (``segment.clipseg``, ``segment.grounding_dino`` or ``segment.owlv2``). ``segment.detector``
    itself only when it is not the default, so configs from before the key rerun nothing."""
    choice = () if detector == "clipseg" else ("segment.detector",)
    return (f"segment.targets.{target}", *choice, f"segment.{detector}")


def first_blocks(target: str, detector: str = "clipseg", prompted: bool = False) -> tuple[str, ...]:
    """The blocks segment_first reads for ``target``; ``prompted``: from a prompt file, whose limits it applies."""
    limits = PROMPT_LIMITS if prompted else ()
    return (*detect_blocks(target, detector), "segment.sam2", *limits, "segment.seed", "segment.device")


def propagate_blocks(target: str, redetect: bool, method: str = "flow", detector: str = "clipseg") -> tuple[str, ...]:
    """The blocks propagate reads for ``target``: the propagator's (``segment.flow``,
    ``segment.sam2_video``, ...: editing another's reruns nothing), ``segment.redetect``, and, when it
    re-detects, what segment_first reads to detect (so a detector edit reruns propagate only then).
    ``sam3_video`` detects on every frame itself, from the target's text: it reads the target's entry,
    and re-detection is SAM 3's own."""
    if method == "sam3_video":
        return (*METHOD_BLOCKS[method], *PROPAGATE_BLOCKS, f"segment.targets.{target}")
    detect = detect_blocks(target, detector) if redetect else ()
    return (*METHOD_BLOCKS[method], *PROPAGATE_BLOCKS, "segment.redetect", *detect)


def image_blocks(target: str, detector: str = "clipseg") -> tuple[str, ...]:
    """The blocks segment_image reads for ``target``: segment_first's, the overlay style and the frame limits."""
    *detect, seed, device = first_blocks(target, detector)
    return (*detect, "segment.overlay", *FRAME_LIMITS, seed, device)


def model_dirs(models_cfg: dict, kinds: Iterable[str] = ("clipseg", "sam2")) -> dict[str, Path]:
    """The folder of each model of ``kinds``: ``<dir>/random-tiny--<kind>`` or ``<dir>/<owner>--<name>``."""
    root = Path(models_cfg["dir"])
    if models_cfg["source"] == RANDOM_TINY:
        return {kind: root / f"{RANDOM_TINY}--{kind}" for kind in kinds}
    missing = [kind for kind in kinds if kind not in models_cfg]
    if missing:
        raise ConfigError(f"config key segment.models.{missing[0]} is missing: give its repo and revision, "
                          f"e.g. {missing[0]}: {{repo: {DEFAULT_REPOS.get(missing[0], '<owner>/<name>')}, revision: main}}")  # fmt: skip
    return {kind: root / models_cfg[kind]["repo"].replace("/", "--") for kind in kinds}


DEFAULT_REPOS = {kind: model.repo for kind, model in registry.MODELS.items()}


def check_target_keys(seg: dict) -> None:
    """Every target a video or image lists must be a key of ``segment.targets``; a video's prompt
    files must be for targets it lists; a target without text needs a prompt file wherever it is
    used, and cannot be used by a still image (segmented from text)."""
    for kind in ("videos", "images"):
        for name, entry in seg[kind].items():
            where = entry.get("where", f"config key segment.{kind}.{name}")
            prompts = entry.get("prompts") or {}
            for target in prompts:
                if target not in entry["targets"]:
                    raise ConfigError(f"{where}: a prompt file for {target!r}, which its targets "
                                      f"({', '.join(entry['targets'])}) do not list; add it to targets or drop the file")  # fmt: skip
            for target in entry["targets"]:
                if target not in seg["targets"]:
                    known = ", ".join(seg["targets"]) or "none"
                    raise ConfigError(
                        f"config key segment.{kind}.{name}.targets names {target!r}, which is not a key of "
                        f"segment.targets (known: {known}); add it there or fix the name"
                    )
                if seg["targets"][target].get("prompt") is None and target not in prompts:
                    fix = "give it a prompt file (prompts)" if kind == "videos" else "stills are segmented from text"
                    raise ConfigError(f"{where}: target {target!r} has no text prompt (segment.targets.{target}.prompt)"
                                      f" and no prompt file here; {fix}, or give the target a text prompt")  # fmt: skip


def shipped(seg: dict, workflow_dir: str | Path) -> dict:
    """``seg`` with each video's and image's relative paths (``path``, ``ground_truth``, prompt
    files) that name nothing in the working directory but a file the workflow ships (its demo video
    and still) taken from the workflow's folder: the demo runs from any working directory (a
    Snakemake module, ``--directory``). A path that exists in the working directory is the user's
    and is never touched."""
    root = Path(workflow_dir)

    def resolved(path):
        if not isinstance(path, str) or Path(path).is_absolute() or Path(path).exists():
            return path
        return str(root / path) if (root / path).exists() else path

    out = dict(seg)
    for kind in ("videos", "images"):
        out[kind] = {}
        for key, entry in (seg.get(kind) or {}).items():
            entry = {k: resolved(v) if k in ("path", "ground_truth") else v for k, v in entry.items()}
            if entry.get("prompts"):
                entry["prompts"] = {t: resolved(p) for t, p in entry["prompts"].items()}
            out[kind][key] = entry
    return out


def prompt_file(entry: dict, target: str) -> str | list:
    """The prompt file of ``target`` in a video's entry, or ``[]`` (no input) when CLIPSeg finds it."""
    return (entry.get("prompts") or {}).get(target) or []


def video_outputs(seg: dict, video: str) -> list[str]:
    """The files ``rule all`` asks for one video: every target's pictures, tracks and overlay video,
    its evaluation where the video has ground truth, and the exports when formats are set."""
    entry = seg["videos"][video]
    return [
        f"{SEG}/{video}/{target}/{name}"
        for target in entry["targets"]
        for name in [
            *(f"{FIRST}/{p}" for p in PICTURES),
            TRACKS,
            OVERLAY_VIDEO,
            *((f"{EVAL}/{e}" for e in EVAL_OUTPUTS) if entry.get("ground_truth") else ()),
            *([EXPORT] if seg.get("export", {}).get("formats") else []),
        ]
    ]


def final_outputs(seg: dict, videos: Iterable[str] | None = None) -> list[str]:
    """The files ``rule all`` asks for: :func:`video_outputs` of every video (or of ``videos``: a
    sharded run asks for its shards instead, vispipe.segment.shards), every target of every still
    image, and a DAVIS dataset's tables."""
    images = [
        f"{SEG}/images/{image}/{target}/{name}"
        for image, entry in seg["images"].items()
        for target in entry["targets"]
        for name in [*PICTURES, INSTANCES]
    ]
    davis = [f"{DAVIS_DIR}/{name}" for name in DAVIS_OUTPUTS] if (seg.get("davis") or {}).get("root") else []
    videos = seg["videos"] if videos is None else videos
    return [f for video in videos for f in video_outputs(seg, video)] + images + davis


def davis_evals(seg: dict) -> dict[str, str]:
    """Sequence -> its ``jf.csv``, for every video a DAVIS dataset added (``segment.davis``)."""
    target = (seg.get("davis") or {}).get("target", "objects")
    root = str(Path(seg["davis"]["root"]) / "JPEGImages") if (seg.get("davis") or {}).get("root") else None
    return {
        key: f"{SEG}/{key}/{target}/{EVAL}/{JF_CSV}"
        for key, entry in seg["videos"].items()
        if root and entry["path"].startswith(root) and entry.get("match_ids") is False
    }


# Wildcard constraints of the video and image keys: the schema's key pattern, not the list of keys.
# Snakemake writes a constraint into every file pattern of the rule and scans that pattern each time
# it fills in a job's wildcards, so a list of 10,000 keys made a dry run quadratic (283 s for 10,000
# videos on 2 cores; 1,000 took 15 s). An unknown key fails in the rule's input function instead.
KEY = "[A-Za-z0-9_-]+"
VIDEO_KEY = f"(?!images/){KEY}"  # results/segment/images/ holds the still images


def entry(entries: dict, key: str, kind: str) -> dict:
    """The entry of video or image ``key`` (``kind``: videos or images); a ConfigError naming it when
    the run asks for outputs of a key that no config entry, sheet row or pattern match has."""
    try:
        return entries[key]
    except KeyError:
        some = ", ".join(sorted(entries)[:5]) + (", ..." if len(entries) > 5 else "")
        raise ConfigError(
            f"outputs of {key!r} were asked for, but it is not one of segment.{kind} (with its sample sheet and"
            f" folder patterns; known: {some or 'none'}): check the path you asked for, or add {key!r}"
        ) from None


def fps_option(video: dict) -> list[str]:
    """extract_frames' ``--fps`` for a video entry that names one (a folder of frames), else nothing
    (as arguments: the rule quotes each)."""
    return ["--fps", f"{float(video['fps']):g}"] if video.get("fps") else []


def one_of(names: Iterable[str]) -> str:
    """A wildcard constraint matching exactly these config keys (nothing when there are none)."""
    return "|".join(map(re.escape, names)) or "(?!)"
