"""The warm worker (vispipe/warm.py) behaves, to Snakemake and to the step, like ``python SCRIPT``.

A worker is started with a light preload (json) so that these tests take seconds; the segmentation
steps' own results through the worker are compared with cold runs in test_segment_pipeline.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vispipe import warm

STEP = textwrap.dedent(
    """
    import json, os, signal, sys, time
    from pathlib import Path
    out = Path(sys.argv[1])
    def term(signum, frame):
        (out / "got_sigterm").write_text("yes")
        sys.exit(143)
    signal.signal(signal.SIGTERM, term)
    (out / "pid").write_text(str(os.getpid()))
    print(json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "env": os.environ.get("STEP_VAR"),
                      "ppid": os.getppid(), "main": __name__, "warm_env": os.environ.get("VISPIPE_WARM")}))
    print("to stderr", file=sys.stderr)
    mode = sys.argv[2]
    if mode == "sleep":
        time.sleep(60)
    if mode == "raise":
        raise RuntimeError("boom")
    sys.exit(int(mode))
    """
)


@pytest.fixture
def worker(tmp_path):
    sock = tmp_path / "w.sock"
    env = dict(os.environ, VISPIPE_WARM_PRELOAD="json")
    proc = subprocess.Popen([sys.executable, "-m", "vispipe.warm", "--serve", str(sock), str(os.getpid())],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while not sock.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() else "slow"
        time.sleep(0.02)
    yield proc, sock
    proc.terminate()
    proc.wait(timeout=10)


def launch(tmp_path: Path, sock: Path | None, mode: str, **popen) -> subprocess.Popen:
    script = tmp_path / "step.py"
    script.write_text(STEP)
    env = dict(os.environ, STEP_VAR="from the launcher")
    env.pop(warm.ENV, None)
    if sock:
        env[warm.ENV] = str(sock)
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "vispipe.warm", str(script), str(tmp_path), mode]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


@pytest.mark.parametrize("mode, code", [("0", 0), ("2", 2), ("raise", 1)])
def test_the_worker_runs_the_step_as_python_would(worker, tmp_path, mode, code):
    proc, sock = worker
    step = launch(tmp_path, sock, mode)
    out, err = step.communicate(timeout=60)
    assert step.returncode == code, err
    seen = json.loads(out)
    assert seen["ppid"] == proc.pid, "the step did not run in the worker"
    assert seen["argv"] == [str(tmp_path / "step.py"), str(tmp_path), mode] and seen["main"] == "__main__"
    assert seen["cwd"] == str(tmp_path / "cwd") and seen["env"] == "from the launcher"
    assert seen["warm_env"] is None  # a step that starts Python itself starts it cold
    assert "to stderr" in err
    assert ("RuntimeError: boom" in err) == (mode == "raise")


def test_without_a_worker_the_launcher_is_python_script(tmp_path):
    for sock in (None, tmp_path / "nobody.sock"):  # unset, or a socket nobody listens on
        step = launch(tmp_path, sock, "2")
        out, _ = step.communicate(timeout=60)
        assert step.returncode == 2
        assert json.loads(out)["ppid"] == os.getpid()  # the launcher replaced itself with the step


def wait_for(path: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"no {path}"
        time.sleep(0.02)
    return path.read_text()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (the worker has not reaped it yet) is dead too
    if not Path("/proc/self/status").exists():
        return True  # no procfs: kill's answer is all there is
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False  # gone between the two looks


def test_sigterm_reaches_the_step_and_its_exit_code_comes_back(worker, tmp_path):
    _, sock = worker
    step = launch(tmp_path, sock, "sleep")
    wait_for(tmp_path / "pid")
    step.send_signal(signal.SIGTERM)
    step.communicate(timeout=30)
    assert step.returncode == 143
    assert (tmp_path / "got_sigterm").read_text() == "yes"


def test_a_killed_launcher_takes_its_step_with_it(worker, tmp_path):
    _, sock = worker
    step = launch(tmp_path, sock, "sleep")
    pid = int(wait_for(tmp_path / "pid"))
    assert alive(pid)
    step.kill()
    step.wait(timeout=10)
    deadline = time.monotonic() + 10
    while alive(pid):
        assert time.monotonic() < deadline, "the step outlived its launcher"
        time.sleep(0.05)


def test_the_worker_ends_with_the_process_that_started_it(tmp_path):
    sock = tmp_path / "w.sock"
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    env = dict(os.environ, VISPIPE_WARM_PRELOAD="json")
    proc = subprocess.Popen([sys.executable, "-m", "vispipe.warm", "--serve", str(sock), str(parent.pid)], env=env)
    wait_for_socket = time.monotonic() + 60
    while not sock.exists():
        assert time.monotonic() < wait_for_socket
        time.sleep(0.02)
    parent.kill()
    parent.wait()
    proc.wait(timeout=10)
    assert not sock.exists()


HOLD_300_MB = textwrap.dedent(
    """
    import sys, time
    block = bytearray(300 * 2**20)  # 300 MB, every page written
    time.sleep(2)  # long enough for Snakemake's first benchmark sample
    open(sys.argv[sys.argv.index("--log") + 1], "a").write("held 300 MB\\n")
    """
)


def test_a_steps_memory_and_cpu_reach_a_file_with_and_without_the_worker(worker, tmp_path):
    """A step that holds 300 MB, run by Snakemake with a benchmark file. Without the worker the
    launcher is the step (exec) and Snakemake's file shows the 300 MB. Under the worker that file sees
    the launcher only; the worker measures its child and the launcher writes the figures beside the
    step's log (``step.usage.tsv``, Snakemake's columns) and as the log's last line."""
    _, sock = worker
    (tmp_path / "step.py").write_text(HOLD_300_MB)
    (tmp_path / "Snakefile").write_text(
        textwrap.dedent(
            f"""
            rule step:
                output: "done"
                log: "logs/step.log"
                benchmark: "bench.tsv"
                shell: "{sys.executable} -m vispipe.warm step.py --log {{log}} && touch {{output}}"
            """
        )
    )

    def run(with_worker: bool) -> tuple[dict, dict | None]:
        env = {k: v for k, v in os.environ.items() if k != warm.ENV}
        if with_worker:
            env[warm.ENV] = str(sock)
        for old in ("done", "bench.tsv"):
            (tmp_path / old).unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--quiet"]
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        read = lambda p: dict(zip(*(line.split("\t") for line in p.read_text().splitlines())))  # noqa: E731
        usage = tmp_path / "logs/step.usage.tsv"
        return read(tmp_path / "bench.tsv"), read(usage) if usage.exists() else None

    cold, none = run(with_worker=False)
    assert float(cold["max_rss"]) >= 300 and none is None, cold
    launcher, usage = run(with_worker=True)
    assert float(launcher["max_rss"]) < 300, launcher  # Snakemake's file: the launcher alone
    assert list(usage) == list(warm.USAGE_COLUMNS) and usage["max_vms"] == "NA"
    assert float(usage["max_rss"]) >= 300 and float(usage["s"]) >= 2 and float(usage["cpu_time"]) > 0, usage
    assert "max RSS" in (tmp_path / "logs/step.log").read_text().splitlines()[-1]
    cold, none = run(with_worker=False)  # a cold run again: no stale usage file left
    assert none is None
