# Text-guided segmentation: models -> frames -> first frame -> propagation -> overlay; still images.
# Videos, images and targets are keys of config["segment"] (videos and images also rows of sample
# sheets and matches of folder patterns: vispipe.segment.samples); each rule passes only the config
# blocks it reads, so editing a knob reruns exactly the steps that read it, and hashes the code it runs
# (its script's imports, and the detector, tracker or formats the config picks by name:
# vispipe.segment.registry.step_modules). File names come from vispipe.segment.layout; outputs
# named from a file name take vispipe.layout.output_key's key. The files the config names may be
# storage URLs (s3://bucket/key): source and fetch_sheet (rules/common.smk).

import hashlib
import os

from snakemake.exceptions import WorkflowError

from vispipe import remote
from vispipe.config import ConfigError
from vispipe.layout import outputs
from vispipe.segment.layout import (
    DAVIS_DIR,
    DAVIS_OUTPUTS,
    EVAL,
    EVAL_OUTPUTS,
    EXPORT,
    FIRST,
    FIRST_PICTURES,
    FRAME_LIMITS,
    INSTANCES,
    J_PLOT,
    KEY,
    OVERLAY,
    OVERLAY_VIDEO,
    PICTURES,
    SEG,
    TRACKS,
    TRACK_FRAMES,
    VIDEO_KEY,
    check_target_keys,
    detector_of,
    davis_evals,
    entry,
    final_outputs,
    first_blocks,
    fps_option,
    image_blocks,
    model_dirs,
    one_of,
    prompt_file,
    propagate_blocks,
    run_models,
    shipped,
    tracker_model,
    video_outputs,
)
from vispipe.segment.registry import step_modules
from vispipe.segment.samples import with_samples
from vispipe.segment import shards

# segment.videos and segment.images with the rows of the sample sheets and the files of the folder
# patterns merged in (segment.samples, segment.globs): from here on, one dict per kind, by id.
try:
    SEGCFG = shipped(with_samples(config["segment"], fetch_sheet), WORKFLOW_DIR)
    check_target_keys(SEGCFG)
except ConfigError as err:
    raise WorkflowError(str(err)) from None
VIDEOS, IMAGES = SEGCFG["videos"], SEGCFG["images"]
DAVIS_EVALS = davis_evals(
    SEGCFG
)  # sequence -> jf.csv, for a DAVIS dataset (segment.davis)
# segment.detector: the model that turns text into instances; TRACKER: the model that
# segment.propagate.method's tracker runs besides SAM2 (EdgeTAM, SAM 3), or None
DETECTOR, TRACKER = detector_of(SEGCFG), tracker_model(SEGCFG)
try:
    MODEL_DIRS = {
        kind: str(path)
        for kind, path in model_dirs(SEGCFG["models"], run_models(SEGCFG)).items()
    }
except ConfigError as err:
    raise WorkflowError(str(err)) from None
# The model folders, in every rule, as local(MODEL_DIRS[...]): they stay on the machine that runs Snakemake
# (fetch_models runs there), also when --default-storage-provider sends the results to storage.
# segment.keep_frames: the frames kept after the run, or deleted after their last consumer (the
# yolo export links to them unless it copies them, so it needs them kept)
KEEP_FRAMES = SEGCFG.get("keep_frames", True)
EXPORT_CFG = SEGCFG.get("export", {})
if (
    not KEEP_FRAMES
    and "yolo" in EXPORT_CFG.get("formats", [])
    and not EXPORT_CFG.get("yolo", {}).get("copy_images", False)
):
    raise WorkflowError(
        "config keys segment.keep_frames: false and segment.export.formats: [yolo] do not go together: the"
        " YOLO images are links to the frames; keep the frames (keep_frames: true), copy them"
        " (segment.export.yolo.copy_images: true) or drop the yolo export"
    )

# the tracker's folder as propagate's input (none for flow and sam2_video)
TRACKER_INPUT = {"tracker": local(MODEL_DIRS[TRACKER])} if TRACKER else {}

# A sharded run (--set-resources segment_shard:clips=N, as profiles/slurm sets) asks for one
# segment_shard job per N videos instead of four jobs per video (vispipe/segment/shards.py).
try:
    CLIPS_PER_JOB = shards.clips_per_job(workflow.resource_settings.overwrite_resources)
except ValueError as err:
    raise WorkflowError(str(err)) from None
SHARDS = shards.split(VIDEOS, CLIPS_PER_JOB) if CLIPS_PER_JOB else {}
# a shard's inner run (scripts/segment_shard.py) writes its videos' results where it runs: it is given
# the config, not the storage options, so results in storage and shards do not go together
if SHARDS and workflow.storage_settings.default_storage_provider:
    raise WorkflowError(
        "a sharded run (--set-resources segment_shard:clips=N, as profiles/slurm sets) writes the videos' results"
        " where it runs, not to --default-storage-provider's storage: drop one of the two (inputs given as"
        " s3:// URLs work either way)"
    )
SEGMENT_TARGETS = (
    [shards.stamp(s) for s in SHARDS] + final_outputs(SEGCFG, videos=())
    if SHARDS
    else final_outputs(SEGCFG)
)
SEG_IN_REPORT = in_report("Segmentation", "videos: {video} / {target}", "segmentation")


wildcard_constraints:
    video=VIDEO_KEY,
    image=KEY,
    target=one_of(SEGCFG["targets"]),
    shard=r"\d+",


localrules:
    fetch_models,


rule fetch_models:
    """Download the detector (segment.detector) and SAM2 (or build tiny random ones for the demo);
    later rules run offline."""
    output:
        detector=directory(local(MODEL_DIRS[DETECTOR])),
        sam2=directory(local(MODEL_DIRS["sam2"])),
    log:
        "logs/segment/fetch_models.log",
    conda:
        "../envs/vispipe.yaml"
    params:
        cfg=params_json(
            "segment.models", *(("segment.detector",) if DETECTOR != "clipseg" else ())
        ),
    shell:
        '"$VISPIPE_PYTHON" "$VISPIPE_SCRIPTS"/fetch_models.py --config {params.cfg:q}'
        " --detector {output.detector:q} --sam2 {output.sam2:q} --log {log:q}"


# The model segment.propagate.method's tracker runs (EdgeTAM, or SAM 3 when it is not also the
# detector), in a rule of its own: switching the tracker fetches it alone and reruns propagate only.
if TRACKER not in (None, DETECTOR):

    localrules:
        fetch_tracker,

    rule fetch_tracker:
        output:
            tracker=directory(local(MODEL_DIRS[TRACKER])),
        log:
            "logs/segment/fetch_tracker.log",
        conda:
            "../envs/vispipe.yaml"
        params:
            cfg=params_json("segment.models"),
            kind=TRACKER,
        shell:
            '"$VISPIPE_PYTHON" "$VISPIPE_SCRIPTS"/fetch_models.py --config {params.cfg:q}'
            " --tracker {output.tracker:q} --tracker-model {params.kind:q} --log {log:q}"


rule extract_frames:
    input:
        video=lambda wc: source(entry(VIDEOS, wc.video, "videos")["path"]),
    output:
        # segment.keep_frames: false deletes them after the video's last step that reads them
        frames=(
            directory(f"{SEG}/{{video}}/frames")
            if KEEP_FRAMES
            else temp(directory(f"{SEG}/{{video}}/frames"))
        ),
        meta=f"{SEG}/{{video}}/meta.json",
    log:
        "logs/segment/{video}/extract_frames.log",
    conda:
        "../envs/vispipe.yaml"
    params:
        code=code("extract_frames.py"),
        cfg=params_json("segment.frames", *FRAME_LIMITS),
        # --fps for a folder of frames, and --from-storage for a storage URL (vispipe/remote.py)
        fps=lambda wc: fps_option(entry(VIDEOS, wc.video, "videos"))
        + remote.from_storage_option(entry(VIDEOS, wc.video, "videos")["path"]),
    shell:
        '"$VISPIPE_PYTHON" -m vispipe.warm "$VISPIPE_SCRIPTS"/extract_frames.py --config {params.cfg:q} --video {input.video:q}'
        " {params.fps:q} --frames {output.frames:q} --meta {output.meta:q} --log {log:q}"


rule segment_first:
    input:
        frames=f"{SEG}/{{video}}/frames",
        meta=f"{SEG}/{{video}}/meta.json",
        detector=local(MODEL_DIRS[DETECTOR]),
        sam2=local(MODEL_DIRS["sam2"]),
        # a mask, boxes or points instead of the detector (segment.videos.<key>.prompts)
        prompt=lambda wc: source(
            prompt_file(entry(VIDEOS, wc.video, "videos"), wc.target)
        ),
    output:
        **outputs(f"{SEG}/{{video}}/{{target}}/{FIRST}", FIRST_PICTURES),
        instances=f"{SEG}/{{video}}/{{target}}/{INSTANCES}",
    log:
        "logs/segment/{video}/{target}/segment_first.log",
    benchmark:
        "benchmarks/segment/{video}/{target}/segment_first.tsv"
    conda:
        "../envs/vispipe.yaml"
    threads: config["threads"]["segment"]
    params:
        code=code("segment_first.py", *step_modules("segment_first", SEGCFG)),
        cfg=lambda wc: params_json(
            *first_blocks(
                wc.target,
                DETECTOR,
                prompted=bool(
                    prompt_file(entry(VIDEOS, wc.video, "videos"), wc.target)
                ),
            )
        ),
        prompt=lambda wc, input: ["--prompt", input.prompt] if input.prompt else [],
        out_dir=lambda wc, output: os.path.dirname(output.instances),
    shell:
        'HF_HUB_OFFLINE=1 "$VISPIPE_PYTHON" -m vispipe.warm --gpu "$VISPIPE_SCRIPTS"/segment_first.py --config {params.cfg:q}'
        " --frames {input.frames:q} --meta {input.meta:q} --target {wildcards.target:q}"
        " --detector {input.detector:q} --sam2 {input.sam2:q} {params.prompt:q}"
        " --out-dir {params.out_dir:q} --threads {threads} --log {log:q}"


rule propagate:
    input:
        **TRACKER_INPUT,
        frames=f"{SEG}/{{video}}/frames",
        meta=f"{SEG}/{{video}}/meta.json",
        instances=f"{SEG}/{{video}}/{{target}}/{INSTANCES}",
        sam2=local(MODEL_DIRS["sam2"]),
        detector=local(MODEL_DIRS[DETECTOR]),  # for re-detection (segment.redetect)
    output:
        masks=directory(f"{SEG}/{{video}}/{{target}}/masks"),
        tracks=f"{SEG}/{{video}}/{{target}}/{TRACKS}",
        # its frames, one line each, beside it (written as they come; the scripts find them there)
        track_frames=f"{SEG}/{{video}}/{{target}}/{TRACK_FRAMES}",
        rle=f"{SEG}/{{video}}/{{target}}/masks.rle.json",
    log:
        "logs/segment/{video}/{target}/propagate.log",
    benchmark:
        "benchmarks/segment/{video}/{target}/propagate.tsv"
    conda:
        "../envs/vispipe.yaml"
    threads: config["threads"]["segment"]
    params:
        code=code("propagate.py", *step_modules("propagate", SEGCFG)),
        tracker=lambda wc, input: ["--tracker", input.tracker] if TRACKER else [],
        cfg=lambda wc: params_json(
            *propagate_blocks(
                wc.target,
                SEGCFG["redetect"]["every"] > 0,
                SEGCFG["propagate"]["method"],
                DETECTOR,
            )
        ),
    shell:
        'HF_HUB_OFFLINE=1 "$VISPIPE_PYTHON" -m vispipe.warm --gpu "$VISPIPE_SCRIPTS"/propagate.py --config {params.cfg:q}'
        " --frames {input.frames:q} --meta {input.meta:q} --instances {input.instances:q}"
        " --sam2 {input.sam2:q} --detector {input.detector:q} {params.tracker:q}"
        " --masks {output.masks:q} --tracks {output.tracks:q} --rle {output.rle:q} --threads {threads} --log {log:q}"


rule render_overlay:
    """The instances drawn over the frames: overlay.mp4, and first/overlay.png (here rather than in
    segment_first, so that a colour edit redraws pictures without rerunning detection or propagation).
    """
    input:
        frames=f"{SEG}/{{video}}/frames",
        meta=f"{SEG}/{{video}}/meta.json",
        masks=f"{SEG}/{{video}}/{{target}}/masks",
        tracks=f"{SEG}/{{video}}/{{target}}/{TRACKS}",
        track_frames=f"{SEG}/{{video}}/{{target}}/{TRACK_FRAMES}",
    output:
        video=SEG_IN_REPORT(f"{SEG}/{{video}}/{{target}}/{OVERLAY_VIDEO}"),
        first=SEG_IN_REPORT(f"{SEG}/{{video}}/{{target}}/{FIRST}/{OVERLAY}"),
    log:
        "logs/segment/{video}/{target}/render_overlay.log",
    benchmark:
        "benchmarks/segment/{video}/{target}/render_overlay.tsv"
    conda:
        "../envs/vispipe.yaml"
    params:
        code=code("render_overlay.py"),
        cfg=params_json("segment.overlay"),
    shell:
        '"$VISPIPE_PYTHON" -m vispipe.warm "$VISPIPE_SCRIPTS"/render_overlay.py --config {params.cfg:q} --frames {input.frames:q} --meta {input.meta:q}'
        " --masks {input.masks:q} --tracks {input.tracks:q} --out {output.video:q} --first {output.first:q} --log {log:q}"


rule export_annotations:
    """The tracks for annotation and training tools (segment.export.formats): YOLO, CVAT, Label Studio, COCO."""
    input:
        frames=f"{SEG}/{{video}}/frames",
        meta=f"{SEG}/{{video}}/meta.json",
        masks=f"{SEG}/{{video}}/{{target}}/masks",
        tracks=f"{SEG}/{{video}}/{{target}}/{TRACKS}",
        track_frames=f"{SEG}/{{video}}/{{target}}/{TRACK_FRAMES}",
    output:
        directory(f"{SEG}/{{video}}/{{target}}/{EXPORT}"),
    log:
        "logs/segment/{video}/{target}/export_annotations.log",
    conda:
        "../envs/vispipe.yaml"
    params:
        code=code("export_annotations.py", *step_modules("export_annotations", SEGCFG)),
        cfg=params_json("segment.export"),
    shell:
        '"$VISPIPE_PYTHON" -m vispipe.warm "$VISPIPE_SCRIPTS"/export_annotations.py --config {params.cfg:q} --frames {input.frames:q} --meta {input.meta:q}'
        " --masks {input.masks:q} --tracks {input.tracks:q} --out-dir {output:q} --log {log:q}"


rule segment_image:
    input:
        image=lambda wc: source(entry(IMAGES, wc.image, "images")["path"]),
        detector=local(MODEL_DIRS[DETECTOR]),
        sam2=local(MODEL_DIRS["sam2"]),
    output:
        **outputs(
            f"{SEG}/images/{{image}}/{{target}}",
            PICTURES,
            mark={
                OVERLAY: in_report(
                    "Segmentation", "images: {image} / {target}", "segmentation"
                )
            },
        ),
        instances=f"{SEG}/images/{{image}}/{{target}}/{INSTANCES}",
    log:
        "logs/segment/images/{image}/{target}.log",
    benchmark:
        "benchmarks/segment/images/{image}/{target}.tsv"
    conda:
        "../envs/vispipe.yaml"
    threads: config["threads"]["segment"]
    params:
        code=code("segment_image.py", *step_modules("segment_image", SEGCFG)),
        cfg=lambda wc: params_json(*image_blocks(wc.target, DETECTOR)),
        out_dir=lambda wc, output: os.path.dirname(output.instances),
    shell:
        'HF_HUB_OFFLINE=1 "$VISPIPE_PYTHON" -m vispipe.warm --gpu "$VISPIPE_SCRIPTS"/segment_image.py --config {params.cfg:q} --image {input.image:q}'
        " --target {wildcards.target:q} --detector {input.detector:q} --sam2 {input.sam2:q}"
        " --out-dir {params.out_dir:q} --threads {threads} --log {log:q}"


rule evaluate_segmentation:
    """J, F and J&F of a target's masks, for a video with ground truth (segment.videos.<key>.ground_truth)."""
    input:
        masks=f"{SEG}/{{video}}/{{target}}/masks",
        meta=f"{SEG}/{{video}}/meta.json",
        ground_truth=lambda wc: source(
            entry(VIDEOS, wc.video, "videos")["ground_truth"]
        ),
    output:
        **outputs(
            f"{SEG}/{{video}}/{{target}}/{EVAL}",
            EVAL_OUTPUTS,
            mark={
                J_PLOT: in_report(
                    "Segmentation", "videos: {video} / {target}", "segmentation"
                )
            },
        ),
    log:
        "logs/segment/{video}/{target}/evaluate_segmentation.log",
    conda:
        "../envs/vispipe.yaml"
    params:
        code=code("evaluate_segmentation.py"),
        # ids as given when a first-frame mask gave them (segment.davis; match_ids: false)
        match=lambda wc: (
            []
            if entry(VIDEOS, wc.video, "videos").get("match_ids", True)
            else ["--no-match"]
        ),
        out_dir=lambda wc, output: os.path.dirname(output.jf_md),
    shell:
        '"$VISPIPE_PYTHON" -m vispipe.warm "$VISPIPE_SCRIPTS"/evaluate_segmentation.py --masks {input.masks:q} --meta {input.meta:q}'
        " --ground-truth {input.ground_truth:q} --out-dir {params.out_dir:q} {params.match:q} --log {log:q}"


rule davis_table:
    """A DAVIS-layout dataset's tables (segment.davis), in the DAVIS 2017 evaluation's layout."""
    input:
        # in a sharded run the evaluations are made inside the shard jobs
        [shards.stamp(s) for s, keys in SHARDS.items() if set(keys) & set(DAVIS_EVALS)]
        if SHARDS
        else list(DAVIS_EVALS.values()),
    output:
        **outputs(DAVIS_DIR, DAVIS_OUTPUTS),
    log:
        "logs/segment/davis_table.log",
    conda:
        "../envs/vispipe.yaml"
    params:
        code=code("davis_table.py"),
        evals=[f"{seq}={path}" for seq, path in DAVIS_EVALS.items()],
        out_dir=lambda wc, output: os.path.dirname(output.results_md),
    shell:
        '"$VISPIPE_PYTHON" -m vispipe.warm "$VISPIPE_SCRIPTS"/davis_table.py --eval {params.evals:q}'
        " --out-dir {params.out_dir:q} --log {log:q}"


# how a shard job starts its inner run: with this run's config files and --config entries
SHARD_CONFIGFILES, SHARD_CONFIG_ARGS = shards.passed_on(
    shards.in_load_order(workflow.configfiles, workflow.config_settings.configfiles),
    workflow.config_settings.config_args,
)


# what every shard's steps run: their scripts (with the vispipe modules they import) and these rules
SHARD_CODE = [
    code(f"{step}.py", *step_modules(step, SEGCFG))
    for step in (
        "extract_frames",
        "segment_first",
        "propagate",
        "render_overlay",
        "export_annotations",
        "evaluate_segmentation",
    )
] + [
    hashlib.sha256(Path(WORKFLOW_DIR, "rules", "segment.smk").read_bytes()).hexdigest()
]


rule segment_shard:
    """The videos of one shard (a sharded run: vispipe/segment/shards.py) through frames -> first frame ->
    propagation -> overlay (and their evaluation and exports), by the rules above, in one job.
    """
    input:
        # the tracker's model, the detector and SAM2: fetched by the outer run, on the submitting host
        # (compute nodes are often offline)
        **TRACKER_INPUT,
        videos=lambda wc: [
            source(entry(VIDEOS, v, "videos")["path"]) for v in SHARDS[wc.shard]
        ],
        detector=local(MODEL_DIRS[DETECTOR]),
        sam2=local(MODEL_DIRS["sam2"]),
    output:
        shards.stamp("{shard}"),
    log:
        "logs/segment/shards/{shard}.log",
    conda:
        "../envs/vispipe.yaml"
    threads: config["threads"]["segment"]
    params:
        code=code("segment_shard.py"),
        # the config and code its steps read; the inner run then reruns exactly what changed
        digest=lambda wc: shards.digest(
            SEGCFG, SHARDS[wc.shard], config["threads"]["segment"], *SHARD_CODE
        ),
        targets=lambda wc: [
            f for v in SHARDS[wc.shard] for f in video_outputs(SEGCFG, v)
        ],
        configfiles=SHARD_CONFIGFILES,
        # the workflow's Snakefile: the working directory may hold none (a module, --directory)
        snakefile=shards.relative(WORKFLOW_DIR / "Snakefile"),
        config_args=SHARD_CONFIG_ARGS,
    shell:
        '"$VISPIPE_PYTHON" -m vispipe.gpus "$VISPIPE_PYTHON" "$VISPIPE_SCRIPTS"/segment_shard.py --targets {params.targets:q}'
        " --snakefile {params.snakefile:q} --configfile {params.configfiles:q} --config-arg {params.config_args:q}"
        " --cores {threads} --out {output:q} --log {log:q}"
