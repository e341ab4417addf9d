# The repository's root as a folder, for workflow/Snakefile (no rules here): this checkout, or the
# deployed commit's copy. A module read from the repository by Snakemake (Snakedeploy's
# `github("<owner>/vispipe", path="workflow/Snakefile", ...)`, or `gitlab(...)`, `gitfile(...)`)
# has no folder of its own: the commit is extracted once, into .snakemake/vispipe/<commit>/ in the
# working directory, beside its other caches, and that copy is what runs.

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.sourcecache import LocalSourceFile


def workflow_root(basedir) -> Path:
    """The repository's root for the folder ``basedir`` (workflow/, as Snakemake names it)."""
    if isinstance(basedir, LocalSourceFile):
        return Path(basedir.get_path_or_uri(secret_free=True)).parent
    try:  # github(...), gitlab(...): Snakemake's clone; gitfile(...): the repository itself
        repo = getattr(basedir, "repo_path", None) or basedir.hosted_repo.repo_clone
        ref = basedir.ref
    except AttributeError:
        raise WorkflowError(
            f"vispipe runs from a folder or a git repository, not from {basedir}"
        ) from None
    git = ["git", "-C", str(repo)]
    commit = subprocess.run(
        [*git, "rev-parse", "--verify", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    root = Path(".snakemake", "vispipe", commit).resolve()
    if not root.is_dir():  # extracted beside it, then renamed: no run sees half a copy
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=root.parent, prefix=f".{commit}.")
        umask = os.umask(0)
        os.umask(umask)
        # a folder like any other, not mkdtemp's private one
        os.chmod(tmp, 0o777 & ~umask)
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        try:
            with subprocess.Popen(
                [*git, "archive", commit], stdout=subprocess.PIPE
            ) as git_archive:
                with tarfile.open(fileobj=git_archive.stdout, mode="r|") as tar:
                    tar.extractall(tmp, **safe)
            if git_archive.returncode:
                raise WorkflowError(f"git archive {commit} failed in {repo}")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        try:
            os.rename(tmp, root)
        except OSError:  # another run extracted it first
            shutil.rmtree(tmp)
    return root
