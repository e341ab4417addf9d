"""What the classification rules and steps share: the names of the files each step writes and the
config blocks it reads. Defined once here: the rules build their outputs from these names (keys by
:func:`vispipe.layout.output_key`) and the steps write them.

The rule files import this module, so it stays light: the standard library only, never torch or
torchvision (a dry run must not load them).
"""

from __future__ import annotations

CLS = "results/classify"
ROLES = ("teacher", "student")

# the data: data/{name}/ (fetch_cifar10)
SPLITS = {"train": "train.npz", "test": "test.npz"}

# training: results/classify/{role}/
HISTORY, METRICS, CURVES = "history.csv", "metrics.json", "curves.png"
TRAIN_OUTPUTS = [HISTORY, METRICS, CURVES]
MODEL = "model.pt"  # the teacher's checkpoint
BEST, LAST = "best.pt", "last.pt"  # the student's: best top-1 and last epoch
CHECKPOINTS = {"teacher": [MODEL], "student": [BEST, LAST]}
EVALUATED = {"teacher": MODEL, "student": BEST}  # the checkpoint each role is evaluated and compared by
RESUME = "resume"  # the resume state's folder: not a declared output, so Snakemake leaves it alone

# evaluation: results/classify/{role}/eval/
EVAL = "eval"
CONFUSION_COUNTS, CONFUSION_NORMALIZED = "confusion_counts.png", "confusion_normalized.png"
PER_CLASS_ACCURACY, PRED_GRID = "per_class_accuracy.png", "pred_grid.png"
REPORT_TXT, REPORT_CSV = "classification_report.txt", "classification_report.csv"
EVAL_OUTPUTS = [
    CONFUSION_COUNTS,
    CONFUSION_NORMALIZED,
    PER_CLASS_ACCURACY,
    PRED_GRID,
    REPORT_TXT,
    REPORT_CSV,
    METRICS,
]

# comparison and, with ablation variants (results/classify/variants/NAME/), their table: results/classify/
COMPARISON_MD, COMPARISON_CSV = "comparison.md", "comparison.csv"
ABLATION_MD, ABLATION_CSV, ABLATION_PNG = "ablation.md", "ablation.csv", "ablation.png"
ABLATION_OUTPUTS = [ABLATION_MD, ABLATION_CSV, ABLATION_PNG]

# Settings every training run reads besides its role's block (classify.teacher or classify.student).
TRAIN_SETTINGS = ("seed", "device", "num_workers", "compile")
EVAL_BLOCKS = ("classify.eval", "classify.device")


def train_outputs(role: str) -> list[str]:
    """Every file training ``role`` writes into its folder."""
    return [*TRAIN_OUTPUTS, *CHECKPOINTS[role]]


def final_outputs(with_variants: bool = False) -> list[str]:
    """The files ``rule all`` asks for: both evaluations, the comparison, and the ablation table
    when variants are configured (it pulls in their evaluations)."""
    evals = [f"{CLS}/{role}/{EVAL}/{name}" for role in ROLES for name in EVAL_OUTPUTS]
    ablation = [f"{CLS}/{name}" for name in ABLATION_OUTPUTS] if with_variants else []
    return evals + [f"{CLS}/{COMPARISON_MD}", f"{CLS}/{COMPARISON_CSV}", *ablation]


def train_blocks(role: str) -> tuple[str, ...]:
    """The config blocks that training ``role`` reads: what its rule passes and its provenance hashes."""
    return (f"classify.{role}", *(f"classify.{key}" for key in TRAIN_SETTINGS))
