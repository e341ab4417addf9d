"""Experiment tracking (config key tracking): a tiny teacher trained and evaluated by the scripts with
TensorBoard and MLflow on, each read back with that library's own reader and compared with the
run's history.csv, metrics.json and provenance."""

from __future__ import annotations

import csv
import json

import pytest

from conftest import ROOT, run_script

pytest.importorskip("tensorboard", reason="make env installs the tracking extra")
pytest.importorskip("mlflow", reason="make env installs the tracking extra")

CONFIG = ["--config", str(ROOT / "config/config.yaml"), "--config", str(ROOT / "config/demo.yaml"), "--config",
          json.dumps({"classify": {"device": "cpu", "data": {"limit_train": 300}, "teacher": {"train": {"epochs": 2}}}})]  # fmt: skip


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """fetch_cifar10, train_teacher and evaluate with both trackers on; the run folder and the MLflow URI."""
    root = tmp_path_factory.mktemp("tracked")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tracking = json.dumps({"tensorboard": True, "mlflow": {"uri": uri, "experiment": "test"}})
    run_script("fetch_cifar10", *CONFIG, "--out-dir", root / "data", cwd=root)
    run = root / "results/classify/teacher"
    run_script("train_teacher", *CONFIG, "--data", root / "data", "--out-dir", run, "--tracking", tracking, cwd=root)
    run_script("evaluate", *CONFIG, "--checkpoint", run / "model.pt", "--test", root / "data/test.npz",
               "--train-metrics", run / "metrics.json", "--out-dir", run / "eval", "--tracking", tracking, cwd=root)  # fmt: skip
    return run, uri


def history(run) -> list[dict]:
    return list(csv.DictReader(open(run / "history.csv")))


def test_tensorboard_holds_every_epoch_the_provenance_and_the_confusion_matrix(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, _ = tracked
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0, "tensors": 0}).Reload()
    rows = history(run)
    assert len(rows) == 2
    for tag, column in (("test/top1", "test_acc"), ("train/loss", "train_loss"), ("train/lr", "lr"),
                        ("train/accuracy", "train_acc"), ("train/images_per_s", "images_per_s")):  # fmt: skip
        got = [(e.step, e.value) for e in events.Scalars(tag)]
        assert got == [(int(r["epoch"]), pytest.approx(float(r[column]), rel=1e-6)) for r in rows], tag
    texts = {t: events.Tensors(t)[0].tensor_proto.string_val[0].decode() for t in events.Tags()["tensors"]}
    prov = json.loads((run / "metrics.json").read_text())["provenance"]
    assert prov["config_sha256"] in texts["train/provenance/text_summary"]
    assert '"epochs": 2' in texts["train/config/text_summary"]
    (image,) = events.Images("eval/confusion_normalized")
    assert image.width > 300 and image.height > 300 and image.step == 2


def test_mlflow_holds_the_run_its_metrics_params_provenance_and_confusion_matrix(tracked):
    import mlflow

    run, uri = tracked
    client = mlflow.MlflowClient(tracking_uri=uri)
    metrics = json.loads((run / "metrics.json").read_text())
    (found,) = client.search_runs([client.get_experiment_by_name("test").experiment_id])
    assert found.info.run_id == metrics["mlflow_run_id"] and found.info.status == "FINISHED"
    assert found.info.run_name == "teacher"
    got = [(m.step, m.value) for m in client.get_metric_history(found.info.run_id, "test_top1")]
    assert got == [(int(r["epoch"]), pytest.approx(float(r["test_acc"]))) for r in history(run)]
    assert found.data.params["train.epochs"] == "2" and found.data.params["model.arch"] == "resnet"
    prov = metrics["provenance"]
    assert found.data.tags["vispipe.config_sha256"] == prov["config_sha256"]
    assert found.data.tags["vispipe.torch"] == prov["torch"]
    assert [a.path for a in client.list_artifacts(found.info.run_id)] == ["confusion_normalized.png"]


def test_the_tracking_block_is_off_by_default_and_validated():
    from vispipe.tracking import settings

    assert settings("") == {"tensorboard": False, "mlflow": None} == settings("{}")
    with pytest.raises(Exception, match="tracking.mlflow"):
        settings('{"mlflow": {"experiment": "x"}}')  # no uri: named by the schema
