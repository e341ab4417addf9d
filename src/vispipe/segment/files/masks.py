"""Masks on disk: instance-id PNGs, COCO run-length encoding, pictures and folders written atomically."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from ...errors import UserError
from ...io import atomic_path, naming, umask


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        with naming(path):
            yield tmp
        tmp.chmod(0o777 & ~umask())  # mkdtemp makes 0700 folders; honour the umask
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_image(path: str | Path, image: np.ndarray, rgb: bool = True, jpeg_quality: int = 95) -> None:
    """Write an image (RGB, or single-channel) atomically; the format follows the suffix."""
    path = Path(path)
    if rgb and image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(path.suffix, image, params)
    if not ok:
        raise OSError(f"OpenCV could not encode {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def read_image(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3); a clear error when OpenCV cannot read it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"image not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise UserError(
            f"cannot read image {path}: empty, corrupt or not an image format OpenCV knows; replace the file"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def image_size(path: str | Path, what: str = "image") -> tuple[int, int]:
    """(width, height) of an image file from its header, without decoding a pixel: the check before
    a file of unknown size is read. A damaged file, or one over PIL's decompression-bomb limit, is a
    UserError naming it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except Image.DecompressionBombError as e:
        raise UserError(f"{what} {path} is too large to read: {e} Give a smaller file") from None
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e}; replace the file") from None


def read_ids(path: str | Path, what: str = "mask", fix: str = "rerun propagate") -> np.ndarray:
    """The object ids of a PNG: a palette PNG's indices (DAVIS's annotations; never its colours) or a
    grey PNG's values, 8- or 16-bit (the id PNGs :func:`id_mask` makes): uint8, or uint16 where an id
    is above 255. The one reader of id PNGs: masks, prompts and ground truth. A file it cannot read,
    or of another kind, is a UserError naming it as ``what`` and saying ``fix``."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L", "I;16", "I"):
                raise UserError(f"{what} {path} is a {im.mode} image; give a palette (DAVIS) or greyscale id PNG"
                                " (pixel = object id, 0 = background)")  # fmt: skip
            ids = np.array(im)
    except Image.DecompressionBombError as e:
        raise UserError(f"{what} {path} is too large to read: {e} Give a smaller file") from None
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e}; {fix}") from None
    if ids.ndim != 2 or ids.min(initial=0) < 0 or ids.max(initial=0) > MAX_ID:
        raise UserError(f"{what} {path} holds no ids from 0 to {MAX_ID}; {fix}")
    return ids if ids.dtype == np.uint8 else ids.astype(np.uint8 if ids.max(initial=0) <= 255 else np.uint16)


class Numbered(Sequence):
    """The names ``00000<suffix>``, ``00001<suffix>``, ... as a sequence (extract_frames' frames,
    propagate's id PNGs), held as two values rather than a string per frame."""

    def __init__(self, count: int, suffix: str):
        self.count, self.suffix = count, suffix

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, k: int) -> str:
        if not 0 <= k < self.count:
            raise IndexError(k)
        return f"{k:05d}{self.suffix}"


class InFolder(Sequence):
    """Files of one folder by name (``names``: e.g. :class:`Numbered`), as paths made when indexed: a
    few bytes a name where a list of :class:`~pathlib.Path` objects takes a few hundred each. The
    paths are strings (``os.path.join``): pathlib interns each name it parses, and a name held here
    would stay in the interpreter's table of interned strings for the rest of the step."""

    def __init__(self, folder: str | Path, names: Sequence[str]):
        self.folder, self.names = str(folder), names

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, k: int) -> str:
        return os.path.join(self.folder, self.names[k])


class IdPngs(Sequence):
    """A video's id PNGs as a sequence that reads each file when indexed (every time): the masks of
    any number of frames without holding them in memory. ``paths``: any sequence of paths
    (:class:`InFolder` for a long video)."""

    def __init__(self, paths: Sequence[str | Path], what: str = "mask", fix: str = "rerun propagate"):
        self.paths, self.what, self.fix = paths, what, fix

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, k: int) -> np.ndarray:
        return read_ids(self.paths[k], self.what, self.fix)


def read_id_mask(path: str | Path) -> np.ndarray:
    """An id PNG that propagate wrote (:func:`read_ids`)."""
    return read_ids(path)


MAX_ID = 65535  # a 16-bit PNG's largest value


def id_mask(masks: Mapping[int, np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Paint boolean masks into one image of instance ids; where they overlap, the lower id wins.

    uint8 while every id is 255 or less (an 8-bit PNG, as DAVIS's); uint16 (a 16-bit grey PNG) on a
    frame with a higher id: many prompted objects, or a long crowded video whose re-detection keeps
    giving births. Every reader here takes both (:func:`read_id_mask`)."""
    top = max(masks, default=0)
    if top > MAX_ID:
        raise UserError(f"instance id {top} does not fit a 16-bit id PNG (at most {MAX_ID} ids per target)")
    ids = np.zeros(shape, dtype=np.uint8 if top <= 255 else np.uint16)
    for inst_id in sorted(masks, reverse=True):
        ids[masks[inst_id]] = inst_id
    return ids


def encode_rle(mask: np.ndarray) -> dict:
    """COCO run-length encoding of a boolean mask, JSON-ready (``counts`` as text)."""
    from pycocotools import mask as coco_mask  # here: the GPU benchmarks run without it

    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict) -> np.ndarray:
    """Inverse of :func:`encode_rle`."""
    from pycocotools import mask as coco_mask

    return coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)
