"""propagate's outputs, written as the frames come, so that memory does not grow with the video and
nothing is held back until the end: ``masks/NNNNN.png`` (instance ids), ``tracks.jsonl`` (one line
per kept frame: its file, source index and every instance's state), ``masks.rle.json``
(:mod:`.coco`, assembled from spools on disk), and ``tracks.json``, the small summary (instances,
per-instance state counts, events, stage times, provenance) that names its frames file.

Readers take the frames one at a time (:func:`frames`); :func:`load` gives a summary with its frames
as a list, for small videos and tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from tqdm import tqdm

from ...errors import UserError
from ...io import atomic_path, naming
from ..layout import TRACK_FRAMES
from ..timing import Stopwatch
from ..types import STATES, FrameResult
from .coco import VideoCoco
from .masks import atomic_dir, id_mask, write_image


class TrackWriter:
    """One target's tracks over the kept frames of ``meta`` (meta.json)."""

    def __init__(self, meta: dict, target: str, clock: Stopwatch | None = None):
        self.meta, self.target, self.clock = meta, target, clock or Stopwatch()
        self.count = 0  # frames written
        self.summary: dict[str, dict] = {}  # instance -> frames in each state
        self.events: list[dict] = []

    def write(self, results: Iterable[FrameResult], masks_dir: Path, frames_path: Path, rle_path: Path,
              weights: dict) -> None:  # fmt: skip
        """Each frame's id PNG into ``masks_dir`` and its line into ``frames_path`` as it comes (each
        appears whole at the end, or not at all), then the RLE file."""
        meta, clock = self.meta, self.clock
        h, w = meta["source"]["height"], meta["source"]["width"]
        coco = VideoCoco(meta, self.target, rle_path)
        clock.begin()
        try:
            with atomic_dir(masks_dir) as tmp, atomic_path(frames_path) as lines_tmp, open(lines_tmp, "w") as lines:
                for k, res in enumerate(
                    tqdm(results, total=meta["count"], desc=f"propagate {self.target}", unit="frame")
                ):
                    with clock("write"):
                        name = f"{k:05d}.png"
                        ids = id_mask(res.masks, (h, w))
                        write_image(tmp / name, ids, rgb=False)
                        entry = {"frame": k, "file": name, "source_index": meta["kept"][k],
                                 "instances": {str(i): v for i, v in res.info.items()}}  # fmt: skip
                        with naming(frames_path):
                            lines.write(json.dumps(entry) + "\n")
                            lines.flush()
                        coco.add(k, ids, res.masks, res.info)
                    for i, info in res.info.items():
                        self.summary.setdefault(str(i), dict.fromkeys(STATES, 0))[info["state"]] += 1
                    self.events += [{"frame": k, **e} for e in res.events]
                    self.count += 1
            coco.write(rle_path, weights)
        finally:
            coco.close()

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
            "frames_file": TRACK_FRAMES,  # beside this file, one line per kept frame
            "frame_count": self.count,
        }


def frames_path(tracks_path: str | Path, tracks: dict) -> Path:
    """The frames file a tracks.json names (beside it)."""
    return Path(tracks_path).with_name(tracks.get("frames_file", TRACK_FRAMES))


def frames(tracks_path: str | Path, tracks: dict) -> Iterator[dict]:
    """The per-frame entries of a propagate run, one at a time; a missing or damaged file is a
    UserError naming it and the rule that rewrites it."""
    path = frames_path(tracks_path, tracks)
    try:
        with open(path) as f:
            for n, line in enumerate(f, start=1):
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(
                        f"{path}, line {n} is damaged ({e}); delete it and rerun the propagate rule"
                    ) from None
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; rerun the propagate rule") from None


def load(tracks_path: str | Path) -> dict:
    """A tracks.json with its frames as a list (``frames``): for small videos and tests."""
    tracks = json.loads(Path(tracks_path).read_text())
    return {**tracks, "frames": list(frames(tracks_path, tracks))}
