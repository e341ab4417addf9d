"""What the classification rules and steps share: the config blocks each step reads.

The rule files import this module, so it stays light: the standard library only, never torch or
torchvision (a dry run must not load them).
"""

from __future__ import annotations

# Settings every training run reads besides its role's block (classify.teacher or classify.student).
TRAIN_SETTINGS = ("seed", "device", "num_workers", "compile")
EVAL_BLOCKS = ("classify.eval", "classify.device")


def train_blocks(role: str) -> tuple[str, ...]:
    """The config blocks that training ``role`` reads: what its rule passes and its provenance hashes."""
    return (f"classify.{role}", *(f"classify.{key}" for key in TRAIN_SETTINGS))
