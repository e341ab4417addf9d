"""Real CIFAR-10: demo-size teacher and student on a subset, on the CPU.

Runs only where the JPEG copy of CIFAR-10 sits at ../shared/data/cifar10-jpeg.tar.gz.
Measured on a 2-core CPU (3,000 training / 1,000 test images, seed 0, the recipe's augmentation;
two minutes): teacher (ResNet [1,1,1,1], width 8, 4 epochs) 31.8% top-1, student (the demo's
ViT, 8x8 patches, 64/4/4, distilled, 6 epochs) 25.2%. The thresholds sit about 5 points below
those and far above chance (10%). (With the earlier width-16 teacher: 35.4% and 23.7%; with
5,000 images and 5 / 8 epochs: 39.9% and 32.4%, in three minutes and a half.)
"""

import json

import pytest

from conftest import CIFAR_JPEG, ROOT, run_script

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CIFAR_JPEG.exists(), reason=f"real CIFAR-10 not found at ../shared/data/{CIFAR_JPEG.name}"),
]

TEACHER_MIN, STUDENT_MIN = 0.27, 0.20


def test_short_cpu_training_on_real_cifar10(tmp_path):
    override = {
        "classify": {
            "data": {
                "source": "folder",
                "name": "cifar10_subset",
                "path": str(CIFAR_JPEG),
                "limit_train": 3000,
                "limit_test": 1000,
            },
            # photos again: the recipe's TrivialAugmentWide and flip, which the digits demo turns off
            "teacher": {"train": {"epochs": 4, "augment": {"trivial_augment": True, "hflip": True}}},
            "student": {
                "train": {"epochs": 6, "clean_last_epochs": 2, "augment": {"trivial_augment": True, "hflip": True}}
            },
        }
    }
    cfg = [
        "--config",
        str(ROOT / "config/config.yaml"),
        "--config",
        str(ROOT / "config/demo.yaml"),
        "--config",
        json.dumps(override),
    ]
    data = tmp_path / "data"
    run_script("fetch_cifar10", *cfg, "--out-dir", data)
    run_script("train_teacher", *cfg, "--data", data, "--out-dir", tmp_path / "teacher")
    run_script(
        "train_student",
        *cfg,
        "--data",
        data,
        "--teacher",
        tmp_path / "teacher/model.pt",
        "--out-dir",
        tmp_path / "student",
    )
    run_script(
        "evaluate",
        *cfg,
        "--checkpoint",
        tmp_path / "student/best.pt",
        "--test",
        data / "test.npz",
        "--out-dir",
        tmp_path / "eval",
    )

    teacher = json.loads((tmp_path / "teacher/metrics.json").read_text())
    student = json.loads((tmp_path / "eval/metrics.json").read_text())
    assert student["per_class"].keys() == {
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    }
    assert student["n_test"] == 1000
    print(f"teacher {teacher['last_test_acc']:.4f}, student {student['top1']:.4f}")
    assert teacher["last_test_acc"] >= TEACHER_MIN, teacher
    assert student["top1"] >= STUDENT_MIN, student["top1"]
