"""propagate's outputs, written as the frames come: ``masks/NNNNN.png`` (instance ids), the per-frame
entries and events of ``tracks.json``, and ``masks.rle.json`` (:mod:`.coco`)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tqdm import tqdm

from ...io import write_json
from ..timing import Stopwatch
from ..types import STATES, FrameResult
from .coco import VideoCoco
from .masks import atomic_dir, id_mask, write_image


class TrackWriter:
    """One target's tracks over the kept frames of ``meta`` (meta.json)."""

    def __init__(self, meta: dict, target: str, clock: Stopwatch | None = None):
        self.meta, self.target, self.clock = meta, target, clock or Stopwatch()
        self.frames: list[dict] = []  # tracks.json's "frames"
        self.summary: dict[str, dict] = {}  # instance -> frames in each state
        self.events: list[dict] = []
        self.coco = VideoCoco(meta, target)

    def write(self, results: Iterable[FrameResult], masks_dir: Path, rle_path: Path, weights: dict) -> None:
        """Each frame's id PNG into ``masks_dir`` (which appears whole, or not at all), then the RLE file."""
        meta, clock = self.meta, self.clock
        h, w = meta["source"]["height"], meta["source"]["width"]
        clock.begin()
        with atomic_dir(masks_dir) as tmp:
            for k, res in enumerate(tqdm(results, total=meta["count"], desc=f"propagate {self.target}", unit="frame")):
                with clock("write"):
                    name = f"{k:05d}.png"
                    ids = id_mask(res.masks, (h, w))
                    write_image(tmp / name, ids, rgb=False)
                    self.frames.append(
                        {
                            "frame": k,
                            "file": name,
                            "source_index": meta["kept"][k],
                            "instances": {str(i): v for i, v in res.info.items()},
                        }
                    )
                    self.coco.add(k, ids, res.masks, res.info)
                for i, info in res.info.items():
                    self.summary.setdefault(str(i), dict.fromkeys(STATES, 0))[info["state"]] += 1
                self.events += [{"frame": k, **e} for e in res.events]
        write_json(rle_path, self.coco.document(weights))

    def tracks(self, first: dict, method: str, weights: dict) -> dict:
        """tracks.json's document, less its stage times and provenance."""
        return {
            "target": self.target,
            "prompt": first["prompt"],
            "video": self.meta["video"],
            "method": method,
            "weights": weights,
            "instances": sorted(int(i) for i in self.summary),
            "summary": self.summary,
            "events": self.events,
            "frames": self.frames,
        }
