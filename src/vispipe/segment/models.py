"""The two models: fetched once into a local folder, then always loaded from it with the Hub offline.

``source: hub`` downloads the configured repos (``snapshot_download``) and re-saves them with
``from_pretrained(...).save_pretrained(...)``; ``source: random-tiny`` builds tiny randomly
initialised models of the same classes (``CLIPSegConfig`` / ``Sam2VideoConfig`` shrunk) for the
offline demo and the tests. Either way the folder holds what ``save_pretrained`` writes plus
``source.json``, and every compute step loads it through the same ``from_pretrained`` path.

SAM2 is saved through ``Sam2VideoModel`` / ``Sam2VideoProcessor``: the hub repos carry the memory
weights (memory attention, memory encoder, object pointers) that SAM2's own tracker needs, and
``Sam2Model`` re-saving would drop them. Both ``Sam2Model`` (image refinement) and ``Sam2VideoModel``
(``segment.propagate.method: sam2_video``) load from the one folder.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from . import edgetam
from .layout import KINDS, RANDOM_TINY
from .layout import model_dirs as model_dirs  # re-exported; it lives in .layout so the rules need no torch
from .masks import atomic_dir

log = logging.getLogger(__name__)

SOURCE_FILE = "source.json"
RANDOM_WARNING = (
    "RANDOM WEIGHTS: these are tiny, randomly initialised models (segment.models.source: random-tiny) "
    "that only exercise the pipeline. Expect heatmaps of noise and masks that cover arbitrary regions, "
    "not the prompt's object; every picture and video carries a red RANDOM WEIGHTS strip. For the real "
    "CLIPSeg and SAM2 (network once, about 1 GB): snakemake --cores all --configfile config/demo.yaml "
    "--config 'segment={models: {source: hub}}'"
)


def _classes(kind: str, video: bool = False) -> tuple[Any, Any]:
    """The model and processor classes of ``kind``; ``video``: SAM2's tracker (what fetch saves SAM2 as)."""
    import transformers as t

    if kind in TRACKERS_ONLY:  # EdgeTAM: its model and SAM2's video processor, as its repo has them
        return edgetam.model_class(), t.Sam2VideoProcessor
    if kind == "sam3":  # detector and tracker in one folder, saved as the tracker (as SAM2)
        return (t.Sam3VideoModel, t.Sam3VideoProcessor) if video else (t.Sam3Model, t.Sam3Processor)
    if video:
        return t.Sam2VideoModel, t.Sam2VideoProcessor
    return {
        "clipseg": (t.CLIPSegForImageSegmentation, t.CLIPSegProcessor),
        "grounding_dino": (t.GroundingDinoForObjectDetection, t.GroundingDinoProcessor),
        "owlv2": (t.Owlv2ForObjectDetection, t.Owlv2Processor),
        "sam2": (t.Sam2Model, t.Sam2Processor),
    }[kind]


# ---------------------------------------------------------------------------------------------- fetch


def fetch(models_cfg: dict, out: dict[str, Path]) -> None:
    """Fill each ``out[kind]`` folder (written whole or not at all) from the configured source."""
    for kind in out:
        if kind not in KINDS:
            raise UserError(f"unknown model kind {kind!r} (known: {', '.join(KINDS)})")
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
    model_cls, processor_cls = _classes(kind, video=kind in ("sam2", "sam3"))
    model_cls.from_pretrained(snapshot, local_files_only=True).save_pretrained(out)
    processor_cls.from_pretrained(snapshot, local_files_only=True).save_pretrained(out)
    return {"source": "hub", "repo": repo, "revision": revision, "commit": snapshot.name, "random_weights": False}


# ---------------------------------------------------------------------------- tiny random models

# Small enough to run a frame in tens of milliseconds on a laptop CPU, shaped like the real models:
# CLIPSeg keeps patch 16 and the decoder; SAM2 keeps the Hiera stages, the FPN and the mask decoder.
TINY_CLIPSEG_SIZE = 224
TINY_SAM2_SIZE = 256


def tiny_clip_tokenizer(max_length: int = 77):
    """A CLIP byte-level BPE tokenizer over the smallest complete vocabulary: the 256 byte symbols,
    their end-of-word forms and the two special tokens, no merges (every text tokenizes, letter by letter)."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def _tiny_clipseg():
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor, ViTImageProcessor

    tokenizer = tiny_clip_tokenizer()
    config = CLIPSegConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=2,
            image_size=TINY_CLIPSEG_SIZE, patch_size=16,
        ),
        projection_dim=64, extract_layers=[0, 1, 2], reduce_dim=32,
        decoder_intermediate_size=64, decoder_num_attention_heads=2,
    )  # fmt: skip
    # CIDAS/clipseg-rd64-refined's preprocessing: ImageNet mean/std, square resize
    images = ViTImageProcessor(
        size={"height": TINY_CLIPSEG_SIZE, "width": TINY_CLIPSEG_SIZE},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    return CLIPSegForImageSegmentation(config), CLIPSegProcessor(image_processor=images, tokenizer=tokenizer)


def _tiny_sam2():
    """SAM2 with a 4-stage Hiera of widths 64..512 at 256 px, and a one-layer memory (attention at 128
    channels, encoder, object pointers) so that it also tracks. Hidden sizes stay multiples of 64 above
    64, and no global-attention block opens a stage (the query-pooling block needs a window there).
    The sub-configs go in as config objects: Sam2VideoConfig turns a ``mask_decoder_config`` dict into
    a prompt-encoder config (transformers 5.18), so a partial dict would lose the decoder's defaults."""
    from transformers import Sam2ImageProcessor, Sam2VideoConfig, Sam2VideoModel, Sam2VideoProcessor
    from transformers.models.sam2_video.configuration_sam2_video import (
        Sam2VideoMaskDecoderConfig,
        Sam2VideoPromptEncoderConfig,
    )
    from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor

    s, top = TINY_SAM2_SIZE, TINY_SAM2_SIZE // 16
    config = Sam2VideoConfig(
        vision_config=dict(
            backbone_config=dict(
                hidden_size=64, embed_dim_per_stage=[64, 128, 256, 512], num_attention_heads_per_stage=[1, 1, 2, 4],
                blocks_per_stage=[1, 1, 2, 1], global_attention_blocks=[3], window_size_per_stage=[8, 4, 4, 4],
                window_positional_embedding_background_size=[4, 4], image_size=[s, s],
            ),
            backbone_channel_list=[512, 256, 128, 64],
            backbone_feature_sizes=[[s // 4, s // 4], [s // 8, s // 8], [top, top]],
            fpn_hidden_size=128,
        ),
        prompt_encoder_config=Sam2VideoPromptEncoderConfig(hidden_size=128, image_size=s, patch_size=16),
        mask_decoder_config=Sam2VideoMaskDecoderConfig(
            hidden_size=128, mlp_dim=256, num_attention_heads=4, iou_head_hidden_dim=128
        ),
        image_size=s, memory_attention_hidden_size=128, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=256, memory_attention_rope_feat_sizes=[top, top],
        memory_encoder_hidden_size=128, mask_downsampler_embed_dim=128, memory_fuser_embed_dim=128,
        memory_fuser_intermediate_dim=256,
    )  # fmt: skip
    images = Sam2ImageProcessor(size={"height": s, "width": s}, mask_size={"height": s // 4, "width": s // 4})
    frames = Sam2VideoVideoProcessor(size={"height": s, "width": s})
    return Sam2VideoModel(config), Sam2VideoProcessor(image_processor=images, video_processor=frames)


def tiny_bert_tokenizer():
    """A BERT WordPiece tokenizer over letters and digits (each word splits into its characters) plus
    the special tokens and the full stop Grounding DINO ends each phrase with."""
    import string

    from transformers import BertTokenizer

    chars = string.ascii_lowercase + string.digits
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *chars, *(f"##{c}" for c in chars)]
    return BertTokenizer(vocab={w: i for i, w in enumerate(words)})


TINY_DETECTOR_SIZE = 224


def _tiny_grounding_dino():
    """Grounding DINO with a one-block-per-stage Swin, a one-layer BERT, one encoder and two decoder
    layers (the box heads of decoder layers after the first are tied to its own: two is the least)."""
    from transformers import (
        BertConfig,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    tokenizer = tiny_bert_tokenizer()
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(
            embed_dim=32, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=7, image_size=TINY_DETECTOR_SIZE,
            out_features=["stage2", "stage3", "stage4"],
        ),
        text_config=BertConfig(
            vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=128, max_position_embeddings=256,
        ),
        d_model=64, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
        encoder_attention_heads=2, decoder_attention_heads=2, num_queries=30, encoder_n_points=2,
        decoder_n_points=2, max_text_len=64,
    )  # fmt: skip
    images = GroundingDinoImageProcessor(
        size={"shortest_edge": TINY_DETECTOR_SIZE, "longest_edge": 2 * TINY_DETECTOR_SIZE}
    )
    return GroundingDinoForObjectDetection(config), GroundingDinoProcessor(image_processor=images, tokenizer=tokenizer)


def _tiny_owlv2():
    """OWLv2 with a 2-layer ViT at 224 px (patch 16) and a 1-layer text tower over the tiny CLIP tokenizer."""
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    tokenizer = tiny_clip_tokenizer()
    config = Owlv2Config(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
            num_attention_heads=2, max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
            image_size=TINY_DETECTOR_SIZE, patch_size=16,
        ),
        projection_dim=64,
    )  # fmt: skip
    images = Owlv2ImageProcessor(size={"height": TINY_DETECTOR_SIZE, "width": TINY_DETECTOR_SIZE})
    return Owlv2ForObjectDetection(config), Owlv2Processor(image_processor=images, tokenizer=tokenizer)


def _tiny_sam3():
    """SAM 3's detector and tracker (:func:`vispipe.segment.sam3.tiny`) over the tiny CLIP tokenizer."""
    from . import sam3  # it imports this module

    return sam3.tiny(tiny_clip_tokenizer(max_length=32))


TINY_BUILDERS = {
    "clipseg": _tiny_clipseg,
    "grounding_dino": _tiny_grounding_dino,
    "owlv2": _tiny_owlv2,
    "sam2": _tiny_sam2,
    "edgetam": edgetam.tiny,
    "sam3": _tiny_sam3,
}


def build_random_tiny(kind: str, out: Path, seed: int = 0) -> dict:
    """Save a tiny randomly initialised ``kind`` model and its processor into ``out``."""
    torch.manual_seed(seed)
    model, processor = TINY_BUILDERS[kind]()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    return {"source": RANDOM_TINY, "random_weights": True, "params": params, "seed": seed, "warning": RANDOM_WARNING}


# ----------------------------------------------------------------------------------------------- load


@dataclass
class Loaded:
    """A model in eval mode on its device, its processor and what ``source.json`` says about it."""

    model: Any
    processor: Any
    source: dict
    device: torch.device

    @property
    def random(self) -> bool:
        return bool(self.source.get("random_weights"))


# Models a warm worker (vispipe.warm) loaded once on the CPU before forking the steps: a step takes
# its copy-on-write copy instead of reading and parsing the folder again. By (kind, folder, video).
_PRELOADED: dict[tuple[str, str, bool], tuple[Any, Any, dict, tuple]] = {}


def _folder_state(folder: Path) -> tuple:
    """What a preloaded model must still match: every file's name, size and modification time."""
    return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()))


TRACKERS_ONLY = ("edgetam",)  # kinds that load as their video model whatever ``video`` says


def _key(kind: str, folder: Path, video: bool) -> tuple[str, str, bool]:
    return kind, str(folder.resolve()), video or kind in TRACKERS_ONLY


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
