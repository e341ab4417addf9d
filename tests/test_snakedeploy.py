"""The README's "Run it on your data": `snakedeploy deploy-workflow` from the repository, the config
edited, the run command, in a folder of its own, as Snakemake workflows are deployed.

The repository is this checkout's files committed into a local git repository, which git serves
for the GitHub URL the README names (`url.<repository>.insteadOf`): Snakedeploy's GitHub provider
clones it and writes `github("<owner>/vispipe", path="workflow/Snakefile", branch="main")`, and
Snakemake clones it again for that module, as they do for a user, offline. The environment's own
`vispipe` package is one that cannot be imported: the deployed commit's must be what runs."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess

import pytest
import yaml
from test_module import SLICE

from conftest import ROOT, env_with_venv, job_counts
from vispipe.config import deep_merge

OWNER = "someone"  # stands for the README's <your-fork>
URL = f"https://github.com/{OWNER}/vispipe"
# the README's block, its comments left out: the environment, then deploy, edit, run
README_BLOCK = [
    "source /path/to/vispipe/.venv/bin/activate",
    "snakedeploy deploy-workflow https://github.com/<your-fork>/vispipe my-project --branch main",
    "cd my-project && $EDITOR config/config.yaml",
    "snakemake --cores all",
]
TARGETS = ["data/digits/train.npz", "results/segment/bigbuckbunny/meta.json"]  # one step of each chain


def readme_block() -> list[str]:
    """The commands of README's bash block that deploys the workflow, without their comments."""
    section = re.search(r"^## Run it on your data\n(.*?)^## ", (ROOT / "README.md").read_text(), re.M | re.S)
    assert section, 'README has no "## Run it on your data" section'
    blocks = re.findall(r"^```bash\n(.*?)^```", section[1], re.M | re.S)
    block = next((b for b in blocks if "snakedeploy deploy-workflow" in b), None)
    assert block, "no bash block runs snakedeploy deploy-workflow"
    return [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def shell(tmp_path_factory) -> tuple[dict, str]:
    """The environment of the user's shell: the venv's commands first on PATH (the README's
    `source .../activate`), git and Snakemake's source cache of their own, and a `vispipe` package
    installed that fails on import; and the commit that the repository serves."""
    tmp = tmp_path_factory.mktemp("env")
    repo = tmp / "vispipe"
    shadow = tmp / "shadow" / "vispipe"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("the environment\'s vispipe, not the deployed one")\n')
    (tmp / "gitconfig").write_text(f'[url "{repo}"]\n\tinsteadOf = {URL}\n')
    env = {k: v for k, v in env_with_venv().items() if k not in ("GITHUB_TOKEN", "GITLAB_TOKEN")}
    env.update(
        GIT_CONFIG_GLOBAL=str(tmp / "gitconfig"),
        GIT_CONFIG_NOSYSTEM="1",
        XDG_CACHE_HOME=str(tmp / "cache"),
        PYTHONPATH=str(shadow.parent),
    )
    # the repository: this checkout's files as they are now (tracked, and new ones git does not ignore)
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    for rel in filter(None, listed):
        if os.path.lexists(ROOT / rel):
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, repo / rel, follow_symlinks=False)
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "vispipe"]):
        subprocess.run(["git", "-c", "user.name=vispipe", "-c", "user.email=vispipe@localhost", *cmd],
                       cwd=repo, env=env, check=True)  # fmt: skip
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)
    return env, commit.stdout.strip()


def run(cmd: list[str], cwd, env: dict) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{shlex.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout + proc.stderr


def test_deploy_edit_run_as_the_readme_shows(shell, tmp_path):
    env, commit = shell
    assert readme_block() == README_BLOCK
    _activate, deploy, edit, run_cmd = README_BLOCK  # activate: env's PATH

    # deploy: the module from GitHub, the config and profiles copied
    run(shlex.split(deploy.replace("<your-fork>", OWNER)), tmp_path, env)
    project = tmp_path / "my-project"
    snakefile = (project / "workflow" / "Snakefile").read_text()
    assert f'github("{OWNER}/vispipe", path="workflow/Snakefile", branch="main")' in snakefile
    assert (project / "config" / "README.md").is_file() and (project / "profiles" / "slurm").is_dir()

    # edit: config/config.yaml, here to the demo's CPU settings on a slice of it
    assert edit.startswith("cd my-project && ")
    config = project / "config" / "config.yaml"
    demo = yaml.safe_load((project / "config" / "demo.yaml").read_text())
    config.write_text(yaml.safe_dump(deep_merge(deep_merge(yaml.safe_load(config.read_text()), demo), SLICE)))

    # run: the whole workflow is planned, then two of its steps run
    planned = job_counts(run([*shlex.split(run_cmd), "-n"], project, env))
    assert planned.get("default") == 1, planned  # workflow/Snakefile's default target: rule all's inputs
    assert {"train_teacher", "train_student", "compare_models", "extract_frames", "propagate", "render_overlay",
            "segment_image"} <= planned.keys(), planned  # fmt: skip
    run([*shlex.split(run_cmd), "--", *TARGETS], project, env)
    copy = project / ".snakemake" / "vispipe" / commit  # the deployed commit, as files
    meta = json.loads((project / "results/segment/bigbuckbunny/meta.json").read_text())
    assert meta["video"] == str(copy / "resources/demo/bigbuckbunny.mp4")  # the demo's video, from the deployment
    assert meta["count"] == 15  # 1.2 s at every 2nd frame: the edited config/config.yaml was read
    assert (project / "data/digits/train.npz").is_file() and (project / "logs/segment/bigbuckbunny").is_dir()
    run(["snakemake", "--report", "report.zip", "--", *TARGETS], project, env)
    assert (project / "report.zip").stat().st_size > 10_000
