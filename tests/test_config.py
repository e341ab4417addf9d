import json

import pytest

from conftest import ROOT
from vispipe.config import ConfigError, block, deep_merge, load, params_json, validate


def full():
    return load([ROOT / "config/config.yaml"])


def test_shipped_configs_validate():
    validate(full())
    demo = load([ROOT / "config/config.yaml", ROOT / "config/demo.yaml"])
    validate(demo)
    assert demo["classify"]["data"]["source"] == "digits"
    # the override changed only what it names; the rest of the recipe is the full one
    assert demo["classify"]["student"]["train"]["mixup_alpha"] == 0.4
    assert demo["classify"]["student"]["model"]["dim"] == 64


def test_full_config_is_the_seed_recipe():
    s = full()["classify"]["student"]
    assert (s["model"]["patch_size"], s["model"]["dim"], s["model"]["depth"], s["model"]["heads"]) == (4, 256, 12, 8)
    assert s["model"]["class_attn_blocks"] == 4 and s["model"]["dropout"] == 0.05 and s["model"]["drop_path"] == 0.15
    t = s["train"]
    assert t["optimizer"] == {"name": "adamw", "lr": 6e-4, "weight_decay": 0.05}
    assert (t["epochs"], t["batch_size"], t["eval_batch_size"], t["warmup_frac"]) == (300, 192, 512, 0.05)
    assert (t["label_smoothing"], t["mixup_alpha"], t["cutmix_alpha"], t["clean_last_epochs"]) == (0.05, 0.4, 1.0, 15)
    assert t["augment"] == {"trivial_augment": True, "crop_padding": 4, "hflip": True, "erasing_p": 0.25}
    assert t["ema"] == {"enabled": True, "decay_start": 0.995, "decay_end": 0.9995}
    assert s["kd"] == {"temperature": 2.0, "alpha": 0.5}


@pytest.mark.parametrize(
    "override, key",
    [
        ({"classify": {"student": {"train": {"epochs": 0}}}}, "classify.student.train.epochs"),
        (
            {"classify": {"student": {"train": {"optimizer": {"name": "lamb"}}}}},
            "classify.student.train.optimizer.name",
        ),
        ({"classify": {"teacher": {"model": {"stem": "tiny"}}}}, "classify.teacher.model.stem"),
        ({"classify": {"data": {"sourse": "digits"}}}, "classify.data"),
        ({"classify": {"student": {"kd": {"alpha": 1.5}}}}, "classify.student.kd.alpha"),
    ],
)
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        validate(deep_merge(full(), override))
    assert f"config key {key}:" in str(err.value)
    assert "config.schema.yaml" in str(err.value)


def test_block_validates_only_its_part():
    cfg = {"classify": {"eval": {"batch_size": 8, "grid_images": 4}}}
    assert block(cfg, "classify.eval")["batch_size"] == 8
    with pytest.raises(ConfigError, match="classify.eval.batch_size"):
        block({"classify": {"eval": {"batch_size": 0, "grid_images": 4}}}, "classify.eval")
    with pytest.raises(ConfigError, match="classify.teacher is missing"):
        block(cfg, "classify.teacher")


def test_params_json_is_stable_and_minimal():
    cfg = full()
    a = params_json(cfg, "classify.student", "classify.seed")
    assert a == params_json(
        deep_merge(cfg, {"classify": {"teacher": {"train": {"epochs": 1}}}}), "classify.student", "classify.seed"
    )
    assert set(json.loads(a)["classify"]) == {"student", "seed"}
    assert load([a]) == json.loads(a)  # scripts read the same JSON back


def test_load_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load([tmp_path / "nope.yaml"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("classify: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load([bad])
    with pytest.raises(ConfigError, match="not valid JSON"):
        load(["{oops"])


def demo_with(variants: dict) -> dict:
    return deep_merge(
        load([ROOT / "config/config.yaml", ROOT / "config/demo.yaml"]), {"classify": {"variants": variants}}
    )


def test_shipped_ablations_validate_and_each_changes_one_thing():
    from vispipe.classify import variants

    cfg = load([ROOT / "config/config.yaml", ROOT / "config/ablations.yaml"])
    validate(cfg)
    variants.validate_variants(cfg)
    assert variants.names(cfg) == ["abs_pos_emb", "no_class_attn", "no_ema", "no_kd", "no_mix", "patch8"]
    student = cfg["classify"]["student"]
    for name in variants.names(cfg):
        merged = variants.student_block(cfg, variants.run_dir(name))
        changed = {
            f"{part}.{key}"
            for part in ("model", "train", "kd")
            for key in merged[part]
            if merged[part][key] != student[part][key]
        }
        assert changed and len(changed) <= 2, (name, changed)
    assert variants.student_block(cfg, "variants/no_ema")["train"]["ema"]["enabled"] is False
    assert variants.student_block(cfg, "student") is student
    assert variants.kd_control(cfg) == "no_kd"
    assert not variants.uses_teacher(variants.student_block(cfg, "variants/no_kd"))
    assert variants.uses_teacher(variants.student_block(cfg, "variants/patch8"))


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"deep": {"model": {"depht": 6}}}, "classify.variants.deep.model"),  # a typo
        ({"wide": {"model": {"dim": 4}}}, "classify.variants.wide.model.dim"),
        ({"ca": {"model": {"class_attn_blocks": -1}}}, "classify.variants.ca.model.class_attn_blocks"),
        ({"lr": {"train": {"optimizer": {"lr": 0}}}}, "classify.variants.lr.train.optimizer.lr"),
    ],
)
def test_a_bad_key_inside_a_variant_is_named_there(bad, key):
    from vispipe.classify.variants import validate_variants

    cfg = demo_with(bad)
    validate(cfg)  # the variants block itself is a mapping of mappings: fine
    with pytest.raises(ConfigError) as err:
        validate_variants(cfg)
    assert f"config key {key}:" in str(err.value)


def test_variant_names_must_be_folder_names():
    with pytest.raises(ConfigError, match="classify.variants"):
        validate(demo_with({"no kd/1": {"kd": {"alpha": 0.0}}}))


@pytest.mark.parametrize(
    "overrides, control",
    [
        ({"kd": {"alpha": 0.0}}, True),
        ({"kd": {"alpha": 0.0}, "model": {"distill_token": False}}, True),
        ({"kd": {"alpha": 0.0}, "model": {"depth": 2}}, False),  # another student: no KD gain from it
        ({"kd": {"alpha": 0.2}}, False),
        ({"kd": {"alpha": 0.0}, "train": {"epochs": 3}}, False),
    ],
)
def test_only_the_same_student_without_kd_is_the_kd_control(overrides, control):
    from vispipe.classify.variants import kd_control

    cfg = load([ROOT / "config/config.yaml"])
    cfg["classify"]["variants"] = {"v": overrides}
    assert kd_control(cfg) == ("v" if control else None)
