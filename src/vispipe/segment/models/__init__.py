"""Every model: fetched once into a local folder, then always loaded from it with the Hub offline.

``source: hub`` downloads the configured repos (``snapshot_download``) and re-saves them with
``from_pretrained(...).save_pretrained(...)``; ``source: random-tiny`` builds tiny randomly
initialised models of the same classes for the offline demo and the tests. Either way the folder
holds what ``save_pretrained`` writes plus ``source.json``, and every compute step loads it through
the same ``from_pretrained`` path.

Which classes a kind loads and how its tiny model is built is its family module's
(:mod:`vispipe.segment.registry`: a detector's own module, or ``models/sam2.py``,
``models/edgetam.py``): ``classes(video)``, ``tiny()``, and ``FETCH_VIDEO`` where the folder is saved
as the video model (SAM2, SAM 3: the hub repos carry the memory weights their trackers need, which
re-saving the image model would drop; the image model loads from the same folder). This module is
the same for all of them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from ...errors import UserError
from .. import registry
from ..files.masks import atomic_dir
from ..layout import RANDOM_TINY, RANDOM_WARNING
from ..layout import model_dirs as model_dirs  # re-exported; it lives in .layout so the rules need no torch
from ..types import Loaded

log = logging.getLogger(__name__)

SOURCE_FILE = "source.json"


def family(kind: str):
    """The module that knows ``kind``'s classes and tiny model (registry.MODELS)."""
    if kind not in registry.MODELS:
        raise UserError(f"unknown model kind {kind!r} (known: {', '.join(registry.MODELS)})")
    return registry.load(registry.MODELS, kind)


def _classes(kind: str, video: bool = False) -> tuple[Any, Any]:
    """The model and processor classes of ``kind``; ``video``: its tracker (what fetch saves SAM2 and SAM 3 as)."""
    module = family(kind)
    if hasattr(module, "classes"):
        return module.classes(video)
    import transformers

    return tuple(getattr(transformers, name) for name in module.CLASSES)  # an image model: (model, processor)


# ---------------------------------------------------------------------------------------------- fetch


def fetch(models_cfg: dict, out: dict[str, Path]) -> None:
    """Fill each ``out[kind]`` folder (written whole or not at all) from the configured source."""
    for kind in out:
        family(kind)  # an unknown kind is an error before any folder is made
        with atomic_dir(out[kind]) as tmp:
            if models_cfg["source"] == RANDOM_TINY:
                log.warning(RANDOM_WARNING)
                info = build_random_tiny(kind, tmp)
            else:
                info = download(kind, models_cfg[kind], tmp, Path(models_cfg["dir"]) / ".hf-cache")
            (tmp / SOURCE_FILE).write_text(json.dumps(info, indent=2) + "\n")
        log.info("%s -> %s (%s)", kind, out[kind], info.get("commit", info["source"]))


def download(kind: str, spec: dict, out: Path, cache_dir: Path) -> dict:
    """Download ``spec['repo']`` at ``spec['revision']`` and re-save it with ``save_pretrained`` into ``out``."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError

    repo, revision = spec["repo"], spec["revision"]
    log.info("downloading %s@%s", repo, revision)
    try:
        snapshot = Path(snapshot_download(repo, revision=revision, cache_dir=cache_dir))
    except GatedRepoError as e:  # SAM 3's weights: a licence to accept, then a token
        raise UserError(
            f"{repo} (segment.models.{kind}) is gated: its weights download only for accounts that accepted its "
            f"licence. Open https://huggingface.co/{repo}, log in and request access; once granted, create a "
            "read token (https://huggingface.co/settings/tokens) and run again with HF_TOKEN=<token> in the "
            f"environment (or `hf auth login` once). The Hub said: {str(e).splitlines()[0]}"
        ) from e
    except (HfHubHTTPError, LocalEntryNotFoundError) as e:
        raise UserError(
            f"could not download {repo}@{revision} (segment.models.{kind}): {e}\n"
            "Check the network (HF_ENDPOINT, HF_TOKEN, proxies; HF_HUB_OFFLINE must be unset) and the repo "
            "and revision, or use segment.models.source: random-tiny for the offline demo."
        ) from e
    model_cls, processor_cls = _classes(kind, video=getattr(family(kind), "FETCH_VIDEO", False))
    model_cls.from_pretrained(snapshot, local_files_only=True).save_pretrained(out)
    processor_cls.from_pretrained(snapshot, local_files_only=True).save_pretrained(out)
    return {"source": "hub", "repo": repo, "revision": revision, "commit": snapshot.name, "random_weights": False}


# ---------------------------------------------------------------------------- tiny random models


def build_random_tiny(kind: str, out: Path, seed: int = 0) -> dict:
    """Save a tiny randomly initialised ``kind`` model and its processor into ``out``."""
    torch.manual_seed(seed)
    model, processor = family(kind).tiny()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    return {"source": RANDOM_TINY, "random_weights": True, "params": params, "seed": seed, "warning": RANDOM_WARNING}


# ----------------------------------------------------------------------------------------------- load


# Models a warm worker (vispipe.warm) loaded once on the CPU before forking the steps: a step takes
# its copy-on-write copy instead of reading and parsing the folder again. By (kind, folder, video).
_PRELOADED: dict[tuple[str, str, bool], tuple[Any, Any, dict, tuple]] = {}


def _folder_state(folder: Path) -> tuple:
    """What a preloaded model must still match: every file's name, size and modification time."""
    return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()))


def _key(kind: str, folder: Path, video: bool) -> tuple[str, str, bool]:
    # a tracker-only model (EdgeTAM) loads as its video model whatever ``video`` says
    return kind, str(folder.resolve()), video or getattr(family(kind), "VIDEO_ONLY", False)


def preload(kind: str, folder: str | Path, video: bool = False) -> None:
    """Load a model folder on the CPU and keep it for this process and the processes it forks."""
    folder = Path(folder).resolve()
    model, processor, source = _from_folder(kind, folder, video)
    _PRELOADED[_key(kind, folder, video)] = (model, processor, source, _folder_state(folder))


def load(kind: str, folder: str | Path, device: torch.device, video: bool = False) -> Loaded:
    """Load a model folder written by fetch_models, never touching the network; ``video``: SAM2 as its
    video tracker (``Sam2VideoModel`` + ``Sam2VideoProcessor``). A model :func:`preload` kept for this
    folder, unchanged since, is taken instead of reading the folder (once: a second load reads it)."""
    folder = Path(folder)
    kept = _PRELOADED.pop(_key(kind, folder, video), None)
    if kept is not None and folder.is_dir() and kept[3] == _folder_state(folder):
        model, processor, source = kept[:3]
    else:
        model, processor, source = _from_folder(kind, folder, video)
    model = model.to(device).eval()
    if source.get("random_weights"):
        log.warning("%s: %s", kind, RANDOM_WARNING)
    else:
        log.info("%s: %s@%s (commit %s)", kind, source.get("repo"), source.get("revision"), source.get("commit"))
    return Loaded(model, processor, source, device)


def _from_folder(kind: str, folder: Path, video: bool) -> tuple[Any, Any, dict]:
    """(model, processor, source.json) from the folder, on the CPU; a UserError naming what is wrong."""
    source_file = folder / SOURCE_FILE
    if not (folder / "config.json").is_file() or not source_file.is_file():
        raise UserError(
            f"{kind} model missing in {folder}: run the fetch_models rule first "
            f"(snakemake fetch_models, or scripts/fetch_models.py)"
        )
    model_cls, processor_cls = _classes(kind, video)

    def damaged(e: Exception) -> UserError:  # transformers, safetensors and json raise many types
        return UserError(
            f"{kind} model in {folder} is incomplete or damaged ({type(e).__name__}: {str(e)[:300]}); "
            "delete the folder and rerun the fetch_models rule"
        )

    try:
        source = json.loads(source_file.read_text())
        model, info = model_cls.from_pretrained(folder, local_files_only=True, output_loading_info=True)
    except Exception as e:
        raise damaged(e) from e
    if info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        raise UserError(
            f"{kind} model in {folder} lacks {len(missing)} weights {model_cls.__name__} needs ({missing[0]}, ...)"
            + (": it was saved without SAM2's memory (by an older fetch_models)" if video else "")
            + "; delete the folder and rerun the fetch_models rule"
        )
    try:
        processor = processor_cls.from_pretrained(folder, local_files_only=True)
    except Exception as e:
        raise damaged(e) from e
    return model, processor, source


def weights_note(*models: Loaded) -> dict:
    """What outputs record about the weights they came from."""
    random = any(m.random for m in models)
    note = {"random": random, "models": [m.source.get("repo", m.source["source"]) for m in models]}
    if random:
        note["warning"] = RANDOM_WARNING
    return note
