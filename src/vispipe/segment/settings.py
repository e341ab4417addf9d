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

from ..config import SCHEMA_HINT, ConfigError, schema_keys, validate

BLOCKS = tuple(schema_keys("segment"))  # every block the schema knows: a new model's block needs no edit here


# blocks whose keys a rule passes one by one (each step reads its own few): validated key by key
PER_KEY = ("limits",)


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
    limits: dict  # only the keys the step's rule passes (each step reads its own limits)
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
        blocks = {
            name: validate(segment[name], f"segment.{name}")
            for name in BLOCKS
            if name in segment and name not in PER_KEY
        }
        for name in PER_KEY:
            if name in segment:
                block = segment[name]
                if not isinstance(block, dict) or set(block) - schema_keys(f"segment.{name}"):
                    validate(block, f"segment.{name}")  # names the wrong type or the unknown key
                blocks[name] = {k: validate(v, f"segment.{name}.{k}") for k, v in block.items()}
        return cls(blocks)

    def __getattr__(self, name: str) -> Any:
        if name not in BLOCKS:
            raise AttributeError(name)
        try:
            return self._blocks[name]
        except KeyError:
            raise ConfigError(f"config key segment.{name} is missing ({SCHEMA_HINT})") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("settings are read-only: parse a new config instead")

    def limit(self, key: str) -> Any:
        """``segment.limits.<key>``, which the step's rule passes; a ConfigError naming it when it did not."""
        try:
            return self.limits[key]
        except KeyError:
            raise ConfigError(f"config key segment.limits.{key} is missing ({SCHEMA_HINT})") from None

    def has(self, name: str) -> bool:
        """Whether the config gave block ``name``."""
        return name in self._blocks

    def as_config(self) -> dict:
        """The blocks as a config again (``{"segment": {...}}``), for provenance hashes."""
        return {"segment": dict(self._blocks)}
