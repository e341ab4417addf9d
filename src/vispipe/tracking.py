"""Experiment tracking, optional and off by default (config key ``tracking``): every training run's
curves and provenance in TensorBoard and/or MLflow, live while it trains.

- ``tracking.tensorboard: true``: TensorBoard event files in the run's own folder,
  ``results/classify/<run>/tensorboard/``, so ``tensorboard --logdir results/classify`` shows the
  teacher, the student, every variant and every seed side by side. Per epoch: train loss, train
  accuracy, test top-1 and top-5, learning rate and images/s; the run's provenance and config as
  text; the evaluation adds its confusion matrix as an image.
- ``tracking.mlflow: {uri: ..., experiment: ...}``: the same into an MLflow run, in a local store
  (``uri: sqlite:///mlflow.db``, artifacts in ``./mlruns``) or on a tracking server. Each run's
  config block is its parameters, its provenance its tags (``vispipe.git_commit``, ...), the
  confusion matrix an artifact. MLflow rather than W&B: a local store needs no account, no server
  and no network (compute nodes often have none), ``mlflow ui`` (the full mlflow package) reads it, and the same
  client talks to a team's server later. ``pip install -e '.[tracking]'`` installs both libraries
  (``make`` does).

The rules hand the block to the scripts in ``$VISPIPE_TRACKING`` (the scripts' ``--tracking``), not
as a param: switching tracking on or off reruns nothing. A tracker that cannot start (its library
missing) is a clear error naming the fix; both libraries are imported only when switched on.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from .errors import UserError

ENV = "VISPIPE_TRACKING"
TENSORBOARD_DIR = "tensorboard"  # below the run's folder
OFF = {"tensorboard": False, "mlflow": None}
SCALARS = {  # history.csv column -> tag
    "train_loss": "train/loss",
    "train_acc": "train/accuracy",
    "test_acc": "test/top1",
    "test_top5": "test/top5",
    "lr": "train/lr",
    "images_per_s": "train/images_per_s",
}

log = logging.getLogger("vispipe")


def settings(text: str | None = None) -> dict:
    """The tracking block from ``text`` (JSON; default ``$VISPIPE_TRACKING``), off when empty."""
    text = os.environ.get(ENV, "") if text is None else text
    if not text.strip():
        return dict(OFF)
    from .config import validate

    try:
        block = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"--tracking / ${ENV} is not JSON ({e}): give the config's tracking block") from None
    return validate({**OFF, **block}, "tracking")


def flat(obj, prefix: str = "") -> dict[str, str]:
    """Nested dicts as one level of ``a.b.c`` keys with string values (MLflow's params and tags)."""
    out: dict[str, str] = {}
    for key, value in (obj or {}).items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = (
                json.dumps(value) if isinstance(value, (list, bool)) or value is None else str(value)
            )
    return out


class Tracker:
    """One training run's trackers: :meth:`epoch` per history row, :meth:`image` for pictures,
    :meth:`close` at the end. With tracking off every call does nothing."""

    def __init__(self, cfg: dict, run_dir: Path, name: str, provenance: dict, config: dict,
                 mlflow_run_id: str | None = None, step: str = "train") -> None:  # fmt: skip
        """``run_dir``: the run's folder (TensorBoard writes below it); ``provenance`` and ``config``:
        what ``step`` ("train" or "eval") ran with; ``mlflow_run_id``: go on in that MLflow run."""
        self.writer = self.mlflow = self.run_id = None
        if cfg["tensorboard"]:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise UserError(
                    "tracking.tensorboard is on but TensorBoard is not installed: pip install -e '.[tracking]'"
                ) from None
            self.writer = SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR))
            self.writer.add_text(f"{step}/provenance", f"```\n{json.dumps(provenance, indent=1)}\n```")
            self.writer.add_text(f"{step}/config", f"```\n{json.dumps(config, indent=1)}\n```")
        if cfg["mlflow"]:
            try:
                import mlflow
            except ImportError:
                raise UserError(
                    "tracking.mlflow is set but MLflow is not installed: pip install -e '.[tracking]'"
                ) from None
            self.mlflow = mlflow.MlflowClient(tracking_uri=cfg["mlflow"]["uri"])
            if mlflow_run_id is None:
                name_ = cfg["mlflow"].get("experiment", "vispipe")
                exp = self.mlflow.get_experiment_by_name(name_)
                exp_id = exp.experiment_id if exp else self.mlflow.create_experiment(name_)
                tags = {"mlflow.runName": name, **flat(provenance, "vispipe.")}
                self.run_id = self.mlflow.create_run(exp_id, tags=tags).info.run_id
                for key, value in flat(config).items():
                    self.mlflow.log_param(self.run_id, key, value[:6000])
            else:
                self.run_id = mlflow_run_id
            log.info("tracking in MLflow at %s, run %s", cfg["mlflow"]["uri"], self.run_id)

    def epoch(self, row: dict) -> None:
        """One epoch's history row, at step ``row["epoch"]``."""
        step = int(row["epoch"])
        values = {tag: float(row[key]) for key, tag in SCALARS.items() if row.get(key) is not None}
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)
            self.writer.flush()  # live: TensorBoard shows the epoch now, not at the end
        if self.mlflow is not None:
            for tag, value in values.items():
                self.mlflow.log_metric(self.run_id, tag.replace("/", "_"), value, step=step)

    def image(self, tag: str, path: Path, step: int = 0) -> None:
        """A picture the run made (the confusion matrix): an image in TensorBoard, an artifact in MLflow."""
        if self.writer is not None:
            import numpy as np
            from PIL import Image

            with Image.open(path) as im:
                self.writer.add_image(tag, np.asarray(im.convert("RGB")), step, dataformats="HWC")
            self.writer.flush()
        if self.mlflow is not None:
            self.mlflow.log_artifact(self.run_id, str(path))

    def close(self, finished: bool = True) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.mlflow is not None and finished:
            self.mlflow.set_terminated(self.run_id)
