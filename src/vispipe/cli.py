"""What every script shares: argument parsing, logging to the rule's log, clean errors.

A script's ``main(args)`` raises :class:`~vispipe.errors.UserError` (``ConfigError`` and
``DataError`` are kinds of it) for input the user can fix; :func:`run` prints the message
without a traceback and exits 2.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .config import load
from .errors import UserError
from .io import FULL

log = logging.getLogger("vispipe")


def parser(
    description: str, config: bool = True, threads: bool = False, tracking: bool = False
) -> argparse.ArgumentParser:
    """An ArgumentParser with the options every script has (``--config``, ``--log``; ``--threads`` for
    compute steps; ``--tracking`` for the classification steps that track experiments)."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    if tracking:
        p.add_argument(
            "--tracking",
            metavar="JSON",
            help="the config's tracking block as JSON, e.g. '{\"tensorboard\": true}' (default: $VISPIPE_TRACKING, "
            "which the rules set from the config; empty: off)",
        )
    if config:
        p.add_argument(
            "--config",
            action="append",
            metavar="FILE|JSON",
            help="config YAML file(s) or inline JSON, merged in order (default: config/config.yaml)",
        )
    p.add_argument("--log", type=Path, help="also write the log to this file")
    if threads:
        p.add_argument("--threads", type=int, help="CPU threads for PyTorch and OpenCV (Snakemake passes the rule's)")
    return p


def set_threads(threads: int | None) -> None:
    """Apply ``--threads`` so that parallel jobs do not each take every core."""
    if threads:
        import cv2
        import torch

        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)


def load_config(args: argparse.Namespace) -> dict:
    return load(args.config or ["config/config.yaml"])


def setup_logging(log_file: Path | None) -> None:
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    root = logging.getLogger()
    root.handlers.clear()
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    root.setLevel(logging.INFO)


class Terminated(BaseException):
    """SIGTERM arrived (a Slurm time limit or preemption, ``kill``).

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` swallows it.
    """


def _raise_terminated(signum, frame):
    raise Terminated()


def run(
    main: Callable[[argparse.Namespace], None], p: argparse.ArgumentParser, argv: Sequence[str] | None = None
) -> None:
    """Parse arguments, set up logging, call ``main``; turn user errors into exit code 2.

    SIGTERM and Ctrl-C unwind the stack (temporary files are removed) and exit 143/130.
    """
    args = p.parse_args(argv)
    setup_logging(getattr(args, "log", None))
    set_threads(getattr(args, "threads", None))
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        main(args)
    except (UserError, FileNotFoundError) as e:
        log.error("%s", e)
        sys.exit(2)
    except OSError as e:
        if e.errno not in FULL:
            raise
        where = f" writing {e.filename}" if e.filename else ""
        log.error(
            "no space left on the device%s (%s); nothing half-written was kept: free space and rerun %s",
            where, e.strerror, Path(sys.argv[0]).name,
        )  # fmt: skip
        sys.exit(2)
    except (KeyboardInterrupt, Terminated) as e:
        log.error(
            "%s; outputs were not written (training resumes from its last finished epoch when rerun)",
            "terminated" if isinstance(e, Terminated) else "interrupted",
        )
        sys.exit(143 if isinstance(e, Terminated) else 130)
    finally:
        # the work is done (or failed): a SIGTERM from now on ends the process quietly, instead of
        # raising Terminated into the interpreter's shutdown ("Exception ignored ... Traceback")
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
