"""The segmentation steps' settings, parsed once.

A script reads the ``segment`` blocks its rule passes, and :meth:`Settings.parse` validates each of
them once, against the one schema (``config.schema.yaml``, the source of truth for every key), at
the script's entry. The library then takes this object and reads its attributes
(``settings.frames["stride"]``), never the raw config and a key path, and validates nothing again.

A block the step needs but the config lacks is the same error as before, naming the key, raised
where the step first reads it.
"""

from __future__ import annotations

from typing import Any

from ..config import SCHEMA_HINT, ConfigError, validate

BLOCKS = ("seed", "device", "models", "targets", "videos", "images", "samples", "globs", "frames", "detector",
          "clipseg", "grounding_dino", "owlv2", "sam2", "flow", "propagate", "redetect", "overlay", "sam2_video", "edgetam_video",
          "sam3", "sam3_video", "export", "davis")  # fmt: skip


class Settings:
    """The validated ``segment`` blocks of one step, as attributes (one per key of ``segment``)."""

    seed: int
    device: str
    models: dict
    targets: dict
    videos: dict
    images: dict
    samples: dict
    globs: dict
    frames: dict
    detector: str
    clipseg: dict
    grounding_dino: dict
    owlv2: dict
    sam2: dict
    flow: dict
    propagate: dict
    redetect: dict
    overlay: dict
    sam2_video: dict
    edgetam_video: dict
    sam3: dict
    sam3_video: dict
    export: dict
    davis: dict

    __slots__ = ("_blocks",)

    def __init__(self, blocks: dict[str, Any]) -> None:
        object.__setattr__(self, "_blocks", dict(blocks))

    @classmethod
    def parse(cls, cfg: dict) -> Settings:
        """Validate every ``segment`` block ``cfg`` holds, once each; unknown blocks are the schema's error."""
        segment = cfg.get("segment") or {}
        unknown = sorted(set(segment) - set(BLOCKS))
        if unknown:
            validate(segment, "segment")  # names the unknown key the way every config error does
        return cls({name: validate(segment[name], f"segment.{name}") for name in BLOCKS if name in segment})

    def __getattr__(self, name: str) -> Any:
        if name not in BLOCKS:
            raise AttributeError(name)
        try:
            return self._blocks[name]
        except KeyError:
            raise ConfigError(f"config key segment.{name} is missing ({SCHEMA_HINT})") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("settings are read-only: parse a new config instead")

    def has(self, name: str) -> bool:
        """Whether the config gave block ``name``."""
        return name in self._blocks

    def as_config(self) -> dict:
        """The blocks as a config again (``{"segment": {...}}``), for provenance hashes."""
        return {"segment": dict(self._blocks)}
