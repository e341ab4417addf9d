"""Start-up paid once per run: a warm worker that has imported the ML stack forks one child per step.

Every segmentation step is a separate process, and most of a short clip's time went into starting
them: Python, then torch, transformers and OpenCV imported again by each of four steps per clip
(``bench/dataset.py`` measures it). The rules therefore start their scripts through this module:

    python -m vispipe.warm [--gpu] scripts/propagate.py --frames ... --masks ...

- When ``$VISPIPE_WARM`` names the socket of a running worker, this launcher hands the worker its
  arguments, working directory, environment and its own stdin/stdout/stderr (passed as file
  descriptors). The worker forks a child, which runs the script as ``__main__`` exactly as
  ``python scripts/propagate.py ...`` would, already imported. The launcher waits and exits with
  the child's status; SIGTERM, SIGINT and SIGHUP sent to the launcher are passed on to the child, and
  a launcher that dies (SIGKILL) takes its child with it: the worker kills a child whose launcher's
  connection closes. So Snakemake, Slurm and ``timeout`` see the same process behaviour as before.
- Otherwise (no worker, or one that does not answer) the launcher replaces itself with
  ``python SCRIPT ARGS``: the same as calling the script directly.
- ``--gpu`` (the GPU steps): first take a GPU slot, as ``python -m vispipe.gpus`` does; the launcher
  holds it for as long as the step runs.
- What the step used: a rule's benchmark file (Snakemake's ``benchmark:``) measures the processes
  below the job's shell, which under the worker is the launcher alone (a few MB), not the worker's
  child that did the work. The worker measures the child (``wait4``: wall and CPU seconds, max RSS,
  which counts the pages it shares with the worker, as a cold run would hold them itself) and tells
  the launcher, which writes the figures in Snakemake's benchmark columns beside the step's log
  (``--log logs/.../propagate.log`` -> ``logs/.../propagate.usage.tsv``) and as the log's last line.
  Without the worker there is no such file (the launcher removes an old one): Snakemake's benchmark
  file measures the step itself.

The Snakefile starts one worker per local Snakemake run (``onstart``) and stops it at the end; the
worker also exits when the Snakemake process that started it dies. It never touches CUDA itself
(a CUDA context does not survive ``fork``): each child initialises its own GPU.

The run's models load once too: before the first child that comes once their folders exist
(``$VISPIPE_WARM_MODELS``, which :func:`start` sets), the worker loads each on the CPU
(:func:`vispipe.segment.models.preload`); a step then takes its copy-on-write copy, and moves it to
its device, instead of reading and parsing the folder again. A folder changed since is read again.

The launcher side is standard library only, so the launcher starts in milliseconds.
"""

from __future__ import annotations

import array
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

ENV = "VISPIPE_WARM"
MODELS_ENV = "VISPIPE_WARM_MODELS"  # {"kind": model folder}: what the worker loads once (preload_models)
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# What a child needs imported to start at once: the segmentation steps, the config validator, and the
# model, processor, tokenizer and image-processor modules that loading CLIPSeg and SAM2 imports (the
# list a step imports beyond this one was measured by running all four steps after it: nothing left).
_T = "transformers.models."
PRELOAD = (
    *(f"vispipe.segment.steps.{m}" for m in ("frames", "first", "propagate", "overlay", "export")),
    "vispipe.segment.detect.clipseg",  # the default detector and tracker (others import by name when chosen)
    "vispipe.segment.track.flow",
    "jsonschema",
    "av",
    "pycocotools.mask",
    *(_T + m for m in ("clipseg.modeling_clipseg", "clipseg.processing_clipseg", "clip.tokenization_clip",
                       "vit.image_processing_vit", "sam2.modeling_sam2",
                       "sam2.processing_sam2", "sam2.image_processing_sam2", "sam2_video.modeling_sam2_video",
                       "sam2_video.processing_sam2_video")),
)  # fmt: skip


# ------------------------------------------------------------------------------------ the launcher


class Job(NamedTuple):
    pid: int
    argv: list[str]
    started: float


def _send(sock: socket.socket, message: dict, fds: list[int] = ()) -> None:
    data = json.dumps(message).encode() + b"\n"
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sock.sendmsg([data], ancillary)


def launch(script: str, args: list[str]) -> None:
    """Run ``script`` with ``args`` in the warm worker named by ``$VISPIPE_WARM``, or here."""
    path = os.environ.get(ENV)
    usage_path = usage_file(args)
    if usage_path is not None:
        try:
            os.unlink(usage_path)  # an earlier warm run's: this run's figures are Snakemake's, or new ones
        except OSError:
            pass
    status = _delegate(path, script, args, usage_path) if path else None
    if status is None:  # no worker: exactly `python SCRIPT ARGS`
        os.execv(sys.executable, [sys.executable, script, *args])
    if status < 0:  # the child died of a signal: die of the same one
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    sys.exit(status)


USAGE_COLUMNS = ("s", "h:m:s", "max_rss", "max_vms", "max_uss", "max_pss", "io_in", "io_out", "mean_load", "cpu_time")


def usage_file(args: list[str]) -> str | None:
    """Where the step's usage goes: beside its ``--log`` file (``name.log`` -> ``name.usage.tsv``)."""
    if "--log" not in args[:-1]:
        return None
    log = args[args.index("--log") + 1]
    return os.path.join(os.path.dirname(log), os.path.basename(log).rsplit(".", 1)[0] + ".usage.tsv")


def write_usage(path: str, log: str | None, usage: dict) -> None:
    """The worker's figures for the step, in Snakemake's benchmark columns (NA where wait4 has none),
    to ``path``, and as a last line of the step's ``log``."""
    s, cpu = usage["seconds"], usage["cpu_s"]
    row = {"s": f"{s:.4f}", "h:m:s": time.strftime("%H:%M:%S", time.gmtime(s)), "max_rss": f"{usage['max_rss_mb']:.2f}",
           "mean_load": f"{100 * cpu / s if s else 0:.2f}", "cpu_time": f"{cpu:.2f}"}  # fmt: skip
    try:
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write("\t".join(USAGE_COLUMNS) + "\n" + "\t".join(row.get(c, "NA") for c in USAGE_COLUMNS) + "\n")
        os.replace(tmp, path)
        if log:
            with open(log, "a") as f:
                f.write(f"vispipe.warm: the step used {s:.2f} s, CPU {cpu:.2f} s, max RSS {usage['max_rss_mb']:.0f} MB"
                        f" (in the warm worker's child; the rule's benchmark file measured the launcher: {path})\n")  # fmt: skip
    except OSError as e:
        print(f"vispipe.warm: could not write {path}: {e}", file=sys.stderr)


def _delegate(path: str, script: str, args: list[str], usage_path: str | None = None) -> int | None:
    """The child's exit status (negative: killed by that signal), or None when no worker took the job;
    its usage goes to ``usage_path`` (:func:`write_usage`)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        request = {"argv": [str(Path(script).resolve()), *args], "cwd": os.getcwd(), "env": dict(os.environ)}
        _send(sock, request, [0, 1, 2])
        reader = sock.makefile("r")
        started = reader.readline()  # the child's pid, once the worker has forked it
    except OSError:
        sock.close()
        return None
    if not started:
        return None  # the worker went away before forking: run here

    def forward(signum, frame):
        try:
            sock.sendall(f"{signum}\n".encode())
        except OSError:
            pass

    for sig in FORWARDED:
        signal.signal(sig, forward)
    line = reader.readline()
    if not line:
        print(f"vispipe.warm: the worker at {path} died while running {script}", file=sys.stderr)
        return 1
    reply = json.loads(line)  # {"code": exit status, "seconds", "cpu_s", "max_rss_mb"}
    if usage_path is not None:
        write_usage(usage_path, args[args.index("--log") + 1], reply)
    return reply["code"]


# -------------------------------------------------------------------------------------- the worker


def _child(conn: socket.socket, listener: socket.socket, request: dict, fds: list[int]) -> None:
    """In the forked child: become the script's process and run it; never returns."""
    code = 1
    try:
        listener.close()
        conn.close()
        os.setpgid(0, 0)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        for sig in (*FORWARDED, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ.pop(ENV, None)  # a step that starts Python itself runs it cold
        sys.argv = list(request["argv"])
        sys.path[0] = str(Path(sys.argv[0]).parent)
        import runpy

        runpy.run_path(sys.argv[0], run_name="__main__")
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int | None):
            print(e.code, file=sys.stderr)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    fds = array.array("i")
    data = b""
    while not data.endswith(b"\n"):
        chunk, ancillary, _, _ = conn.recvmsg(1 << 20, socket.CMSG_SPACE(3 * fds.itemsize))
        if not chunk:
            raise ConnectionError("the launcher went away")
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
        data += chunk
    return json.loads(data), list(fds)


def serve(path: str, parent: int | None = None, preload: tuple[str, ...] = PRELOAD) -> None:
    """Listen on ``path``; import ``preload``; fork a child per launcher until ``parent`` dies or SIGTERM."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = f"{path}.{os.getpid()}.tmp"
    listener.bind(tmp)
    os.replace(tmp, path)  # launchers connect from now on and wait for the imports below
    listener.listen(64)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches Snakemake and the steps; Snakemake stops us
    t0 = time.perf_counter()
    import importlib

    preload = tuple(filter(None, os.environ.get("VISPIPE_WARM_PRELOAD", ",".join(preload)).split(",")))
    for name in preload:
        try:
            importlib.import_module(name)
        except ImportError as e:  # another transformers version names its modules differently
            print(f"vispipe.warm: not preloaded: {name} ({e})", file=sys.stderr)
    from .config import schema

    schema()  # parsed once here (0.3 s of YAML), not in every step: children inherit the cache
    print(f"vispipe.warm: ready in {time.perf_counter() - t0:.1f} s at {path}", file=sys.stderr, flush=True)

    to_load = json.loads(os.environ.get(MODELS_ENV) or "{}")  # kind -> folder, until loaded once
    jobs: dict[socket.socket, Job] = {}  # launcher connection -> its child
    gone: set[socket.socket] = set()  # connections whose launcher went away
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    try:
        while not stop and (parent is None or _alive(parent)):
            for key, _ in selector.select(timeout=0.05):
                if key.fileobj is listener:
                    conn, _ = listener.accept()
                    try:
                        request, fds = _receive(conn)
                    except (OSError, ValueError):
                        conn.close()
                        continue
                    if to_load:
                        preload_models(to_load)
                    sys.stdout.flush()
                    sys.stderr.flush()
                    pid = os.fork()
                    if pid == 0:
                        _child(conn, listener, request, fds)
                    for fd in fds:
                        os.close(fd)
                    jobs[conn] = Job(pid, request["argv"], time.perf_counter())
                    selector.register(conn, selectors.EVENT_READ)
                    _reply(conn, pid)
                else:  # a forwarded signal, or the launcher is gone (EOF): pass it on / kill the child
                    conn = key.fileobj
                    try:
                        data = conn.recv(64)
                    except OSError:
                        data = b""
                    for signum in data.split() if data else [str(int(signal.SIGKILL))]:
                        _kill(jobs[conn].pid if conn in jobs else None, int(signum))
                    if not data:
                        selector.unregister(conn)
                        gone.add(conn)
            _reap(jobs, selector, gone)
    finally:
        for job in jobs.values():
            _kill(job.pid, signal.SIGKILL)
        try:
            os.unlink(path)
        except OSError:
            pass


def preload_models(to_load: dict[str, str]) -> None:
    """Load each model of ``to_load`` whose folder is complete, on the CPU and on one thread (no
    OpenMP pool in a parent of forked children), for the children to take; drop it from ``to_load``
    (a failure too: the step reports a damaged folder itself)."""
    from .segment import models

    ready = {kind: folder for kind, folder in to_load.items() if (Path(folder) / models.SOURCE_FILE).is_file()}
    if not ready:
        return
    import torch
    import transformers

    t0 = time.perf_counter()
    threads, verbosity = torch.get_num_threads(), transformers.logging.get_verbosity()
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    try:
        for kind, folder in ready.items():
            del to_load[kind]
            try:
                models.preload(kind, folder)
                if kind == "sam2":  # its video tracker too (segment.propagate.method: sam2_video)
                    models.preload(kind, folder, video=True)
            except Exception as e:  # noqa: BLE001 - the step reads the folder itself and says what is wrong
                print(f"vispipe.warm: not preloaded: the {kind} model ({type(e).__name__}: {e})", file=sys.stderr)
    finally:
        torch.set_num_threads(threads)
        transformers.logging.set_verbosity(verbosity)
    print(f"vispipe.warm: loaded {', '.join(ready)} in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _kill(pid: int | None, signum: int) -> None:
    if pid:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def _reply(conn: socket.socket, value: int | dict) -> None:
    try:
        conn.sendall((json.dumps(value) + "\n").encode())
    except OSError:
        pass


def _reap(jobs: dict[socket.socket, Job], selector: selectors.BaseSelector, gone: set[socket.socket]) -> None:
    """Collect finished children, tell their launchers how they ended, and log what each used (a rule's
    benchmark file sees only the launcher)."""
    for conn, job in list(jobs.items()):
        done, status, usage = os.wait4(job.pid, os.WNOHANG)
        if not done:
            continue
        del jobs[conn]
        code = os.waitstatus_to_exitcode(status)
        used = {"code": code, "seconds": time.perf_counter() - job.started, "cpu_s": usage.ru_utime + usage.ru_stime,
                "max_rss_mb": usage.ru_maxrss / 1024}  # fmt: skip
        print(f"vispipe.warm: {Path(job.argv[0]).name} (pid {job.pid}) exit {code}"
              f"{' (launcher gone)' if conn in gone else ''}: {used['seconds']:.2f} s, "
              f"CPU {used['cpu_s']:.2f} s, max RSS {used['max_rss_mb']:.0f} MB", file=sys.stderr, flush=True)  # fmt: skip
        if conn in gone:
            gone.discard(conn)
        else:
            _reply(conn, used)
            selector.unregister(conn)
        conn.close()


# ------------------------------------------------------------------------------- the Snakefile's side


def start(folder: Path, log: Path, model_dirs: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a worker for this process's run (the Snakefile's ``onstart``): its socket in ``folder``,
    its messages in ``log``, the models of ``model_dirs`` ({kind: folder}) loaded once they exist;
    steps started from here on find it through ``$VISPIPE_WARM``."""
    path = str(Path(folder) / "warm.sock")
    log.parent.mkdir(parents=True, exist_ok=True)
    # the steps it serves run offline; set before the worker imports huggingface_hub, which reads it once
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env[MODELS_ENV] = json.dumps(model_dirs or {})
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "vispipe.warm", "--serve", path, str(os.getpid())],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)  # fmt: skip
    # until its socket exists (a fraction of a second: it binds before importing anything heavy), a
    # step that starts at once would find no worker and run cold: extract_frames, the first, did
    deadline = time.monotonic() + 10
    while not os.path.exists(path) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.environ[ENV] = path
    return proc


def stop(proc: subprocess.Popen | None) -> None:
    """Stop a worker (``onsuccess``/``onerror``); its running children, if any, are killed."""
    os.environ.pop(ENV, None)
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:  # python -m vispipe.warm --serve SOCKET [PARENT_PID]
        serve(argv[1], int(argv[2]) if len(argv) > 2 else None)
        return
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return
    if argv[0] == "--gpu":  # a GPU step: take a GPU slot first (vispipe/gpus.py), held while it runs
        from .errors import UserError
        from .gpus import take_slot

        try:
            take_slot()
        except UserError as e:
            print(f"vispipe.warm: {e}", file=sys.stderr)
            sys.exit(2)
        argv = argv[1:]
    launch(argv[0], argv[1:])


if __name__ == "__main__":
    main()
