"""Which source files each step runs (read from import statements), and their hash."""

from pathlib import Path

from conftest import ROOT
from vispipe.codedeps import code_hash, source_files

SRC = ROOT / "src"


def names(script: str) -> set[str]:
    return {
        str(f.relative_to(SRC))
        for f in source_files((ROOT / "scripts" / script).resolve(), SRC)
        if f.is_relative_to(SRC)
    }


def test_each_script_reaches_its_own_chain_only():
    train, compare, propagate = names("train_student.py"), names("compare_models.py"), names("propagate.py")
    assert {"vispipe/classify/train.py", "vispipe/classify/trivial_augment.py", "vispipe/classify/vit.py"} <= train
    assert "vispipe/classify/compare.py" in compare and "vispipe/classify/train.py" not in compare
    assert {"vispipe/segment/track/loop.py", "vispipe/segment/steps/propagate.py"} <= propagate
    # a tracker is picked by name (vispipe/segment/registry.py): the rules add it to the hash, not the imports
    assert "vispipe/segment/track/flow.py" not in propagate
    assert not any(n.startswith("vispipe/classify/") for n in propagate)
    assert not any(n.startswith("vispipe/segment/") for n in train)
    assert {"vispipe/__init__.py", "vispipe/cli.py"} <= train & compare & propagate  # shared plumbing


def _package(root: Path) -> Path:
    (root / "vispipe/sub").mkdir(parents=True)
    (root / "vispipe/__init__.py").write_text("")
    (root / "vispipe/sub/__init__.py").write_text("")
    (root / "vispipe/sub/a.py").write_text("def f():\n    from .b import g  # imported inside a function\n")
    (root / "vispipe/sub/b.py").write_text("from .. import c\n")
    (root / "vispipe/c.py").write_text("import os\n")
    (root / "vispipe/unused.py").write_text("x = 1\n")
    script = root / "script.py"
    script.write_text("from vispipe.sub import a\n")
    return script


def test_relative_and_function_level_imports_are_followed(tmp_path):
    script = _package(tmp_path)
    got = {str(f.relative_to(tmp_path)) for f in source_files(script, tmp_path)}
    assert got == {"script.py", "vispipe/__init__.py", "vispipe/sub/__init__.py", "vispipe/sub/a.py",
                   "vispipe/sub/b.py", "vispipe/c.py"}  # fmt: skip


def test_the_hash_changes_with_the_code_the_script_runs_and_only_with_it(tmp_path):
    script = _package(tmp_path)
    before = code_hash(script, tmp_path)
    (tmp_path / "vispipe/unused.py").write_text("x = 2\n")
    assert code_hash(script, tmp_path) == before
    (tmp_path / "vispipe/c.py").write_text("import os  # edited\n")
    source_files.cache_clear()
    assert code_hash(script, tmp_path) != before


def test_the_hash_does_not_depend_on_where_the_checkout_lies(tmp_path):
    def checkout(where: Path) -> tuple[Path, Path]:
        _package(where / "src")
        (where / "scripts").mkdir()
        script = where / "scripts" / "step.py"
        script.write_text("from vispipe.sub import a\n")
        return script, where / "src"

    # the scripts folder sorts after the package in one checkout and before it in the other
    (tmp_path / "a").mkdir()
    first = checkout(tmp_path / "a")
    second = checkout(tmp_path / "b" / "0")
    (second[1].parent / "scripts").rename(tmp_path / "b" / "zscripts")
    assert code_hash(*first) == code_hash(tmp_path / "b" / "zscripts" / "step.py", second[1])


def test_modules_a_step_imports_by_name_join_its_hash(tmp_path):
    """``modules``: what a registry imports by name (no import line shows it), with what they import."""
    script = _package(tmp_path)
    assert "vispipe/unused.py" not in {str(f.relative_to(tmp_path)) for f in source_files(script, tmp_path)}
    got = {str(f.relative_to(tmp_path)) for f in source_files(script, tmp_path, ("vispipe.unused",))}
    assert "vispipe/unused.py" in got
    before = code_hash(script, tmp_path, ("vispipe.unused",))
    (tmp_path / "vispipe/unused.py").write_text("x = 2\n")
    source_files.cache_clear()
    assert code_hash(script, tmp_path, ("vispipe.unused",)) != before
