"""The evaluate_segmentation and davis_table steps: J, F, J&F and identity against ground truth, and a
DAVIS-layout dataset's tables."""

from __future__ import annotations

import logging
import os
from array import array
from pathlib import Path

import pandas as pd

from ...errors import UserError
from ...io import atomic_path, write_json, write_text
from ..evaluation import vos
from ..files.masks import IdPngs, InFolder, Numbered, image_size
from ..layout import DAVIS_GLOBAL, DAVIS_MD, DAVIS_PER_SEQUENCE, IDENTITY, J_PLOT, JF_CSV, JF_MD
from .common import read_json

log = logging.getLogger(__name__)


def evaluate_segmentation(
    masks_dir: Path, meta_path: Path, gt_dir: Path, out_dir: Path, match: bool = True
) -> pd.DataFrame:
    """J, F and J&F of a target's masks against a video's ground truth: ``jf.md`` (per object and
    mean, and whether the ids held), ``jf.csv`` (per frame and object), ``j_per_frame.png`` and
    ``identity.json`` (ID switches, IDF1, MOTA, HOTA: :func:`.vos.identity`) in ``out_dir``. ``match``:
    predicted ids are matched to the ground truth's once per video; False compares them as they are
    (the semi-supervised protocol, whose first-frame mask gave the ids)."""
    # only the kept frames' numbers, as a flat array: the rest of the meta (a name and a time per frame) let go
    kept = array("q", read_json(meta_path, "extract_frames", ("kept",))["kept"])
    # names, not Path objects: a few MB less for an hour of frames
    gt_files = (
        sorted(e.name for e in os.scandir(gt_dir) if e.name.lower().endswith(".png")) if Path(gt_dir).is_dir() else []
    )
    if not gt_files:
        raise UserError(f"ground truth {gt_dir} holds no PNG: set segment.videos.<key>.ground_truth to a folder of "
                        "id PNGs, one per source frame")  # fmt: skip
    if max(kept) >= len(gt_files):
        raise UserError(
            f"{gt_dir} holds {len(gt_files)} PNGs but the kept frames reach source frame {max(kept)}: "
            "it needs one PNG per source frame (in name order)"
        )
    pred = IdPngs(InFolder(masks_dir, Numbered(len(kept), ".png")))
    gt = IdPngs(InFolder(gt_dir, [gt_files[i] for i in kept]), "ground truth", "replace the file")
    for p, g in zip(pred.paths, gt.paths):  # sizes from the headers, before any pixel is read
        size, want = image_size(g, "ground truth"), image_size(p, "mask")
        if size != want:
            raise UserError(f"{g} is {size[0]}x{size[1]} but the video's frames are {want[0]}x{want[1]}: the ground "
                            "truth must match the video's size")  # fmt: skip
    # read from disk on each pass (a few): memory does not grow with the video
    per_frame = vos.evaluate(pred, gt, frames=kept, match=match)
    table = vos.summary(per_frame)
    ids = vos.identity(pred, gt)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = [
        f"J&F of {masks_dir} against {gt_dir} ({len(pred)} kept frames; means skip the first and the last).",
        "Predicted ids are matched to ground-truth objects once per video (largest total IoU)." if match
        else "Predicted ids are the ground truth's (semi-supervised: the first-frame mask gave them).",
        "",
        table.to_markdown(index=False, floatfmt=".3f"),
        "",
        "matched ids (ground truth -> predicted): "
        + ", ".join(f"{o} -> {'none' if pd.isna(p) else int(p)}" for o, p in per_frame.groupby("object")["pred_id"].first().items()),
        "",
        f"Identity, frame by frame (CLEAR MOT and ID measures as py-motmetrics defines them: a predicted and a true mask pair at IoU >= {vos.IDENTITY_IOU};"
        " HOTA, DetA, AssA: TrackEval, averaged over IoU thresholds 0.05 ... 0.95):",
        "",
        pd.DataFrame([ids]).to_markdown(index=False, floatfmt=".3f"),
    ]  # fmt: skip
    write_text(out_dir / JF_MD, "\n".join(md) + "\n")
    write_json(out_dir / IDENTITY, {"iou": vos.IDENTITY_IOU, **ids})
    with atomic_path(out_dir / JF_CSV) as tmp:  # written in chunks, not made as one string first
        per_frame.to_csv(tmp, index=False)
    target_dir = Path(masks_dir).parent
    vos.j_plot(per_frame, out_dir / J_PLOT, f"J per frame: {target_dir.parent.name} / {target_dir.name}")
    log.info("J&F\n%s", table.to_string(index=False))
    return table


def davis_table(evals: dict[str, Path], out_dir: Path) -> pd.DataFrame:
    """The dataset's tables from each sequence's ``jf.csv`` (``evals``: sequence -> file), in the
    DAVIS 2017 evaluation's layout: ``global_results.csv``, ``per-sequence_results.csv`` and
    ``results.md`` in ``out_dir``; returns the global row."""
    per_frame = {}
    for seq, path in evals.items():
        try:
            per_frame[seq] = pd.read_csv(path)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise UserError(f"cannot read {path} ({e}); rerun evaluate_segmentation for {seq}") from None
    global_df, per_seq = vos.davis_tables(per_frame)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / DAVIS_GLOBAL, global_df.to_csv(index=False, float_format="%.6f"))
    write_text(out_dir / DAVIS_PER_SEQUENCE, per_seq.to_csv(index=False, float_format="%.6f"))
    md = [
        f"Semi-supervised results on {len(per_frame)} sequences ({len(per_seq)} objects), in the layout of the"
        " DAVIS 2017 evaluation (first and last frames not scored; means over objects).",
        "", "Global results:", "", global_df.to_markdown(index=False, floatfmt=".3f"),
        "", "Per sequence results:", "", per_seq.to_markdown(index=False, floatfmt=".3f"),
    ]  # fmt: skip
    write_text(out_dir / DAVIS_MD, "\n".join(md) + "\n")
    log.info("J&F-Mean %.3f over %d objects of %d sequences", global_df["J&F-Mean"][0], len(per_seq), len(per_frame))
    return global_df
