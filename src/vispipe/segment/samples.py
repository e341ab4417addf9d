"""Videos and images from sample sheets and folder patterns, beside the config's own keys.

A dataset is rarely typed into YAML one key per file. ``segment.samples`` names a sheet (TSV or CSV,
one row per file: id, path, targets, and for videos an optional ground_truth, fps and prompts) and ``segment.globs``
lists folder patterns, each with its targets. :func:`with_samples` merges both into
``segment.videos`` and ``segment.images`` before the workflow plans anything, so every rule sees one
dict per kind, keyed by id, exactly as if the entries had been written in the config. No rule takes a
sheet as an input or a param: editing one row changes that file's inputs alone, and Snakemake reruns
that file's steps and no others.

Every problem is a :class:`ConfigError` naming where it is (the sheet, its line and column, or the
config key of the pattern) and what to do: an unknown column, a missing file, an unknown target, an
id used twice (both places named), a pattern that matches nothing, two files that would share a key.

A sheet, and any path in it, may be a storage URL (``s3://bucket/key``, :mod:`vispipe.remote`): the
sheet is read through ``fetch`` (the workflow downloads it with Snakemake's storage plugin), and the
files it names are left for the plugin to find when their steps run. Folder patterns match local
files only.

This module runs in the workflow layer (dry runs on a login node): the standard library only.
"""

from __future__ import annotations

import csv
import glob
import math
import re
from collections.abc import Callable
from pathlib import Path

from ..config import ConfigError
from ..remote import is_url
from .layout import KEY

KINDS = ("videos", "images")
COLUMNS = {"videos": ("id", "path", "targets", "ground_truth", "fps", "prompts"), "images": ("id", "path", "targets")}
REQUIRED = ("id", "path", "targets")
RESERVED = {"videos": {"images"}, "images": set()}  # results/segment/images/ holds the still images


# reads a sheet given as a storage URL: the URL -> a local copy of it, or None when storage has no such file
Fetch = Callable[[str], "Path | None"]


def with_samples(seg: dict, fetch: Fetch | None = None) -> dict:
    """``seg`` (the ``segment`` block) with its sheets' rows and its patterns' files added to
    ``videos`` and ``images``; the config's own entries come first and are not changed. ``fetch``
    reads a sheet given as a storage URL (the workflow passes one that uses Snakemake's plugin)."""
    out = dict(seg)
    targets = seg.get("targets") or {}
    for kind in KINDS:
        entries = dict(seg.get(kind) or {})
        where = {key: f"config key segment.{kind}.{key}" for key in entries}
        sheet = (seg.get("samples") or {}).get(kind)
        if sheet:
            for key, entry, place in read_sheet(sheet, kind, targets, fetch):
                _add(entries, where, key, entry, place)
        for i, spec in enumerate((seg.get("globs") or {}).get(kind) or []):
            for key, entry, place in expand_glob(spec, f"segment.globs.{kind}[{i}]", kind, targets):
                _add(entries, where, key, entry, place)
        if kind == "videos" and (seg.get("davis") or {}).get("root"):
            for key, entry, place in davis_sequences(seg["davis"], targets):
                _add(entries, where, key, entry, place)
        out[kind] = entries
    return out


def davis_sequences(davis: dict, targets: dict) -> list[tuple[str, dict, str]]:
    """The sequences of a DAVIS-layout dataset (``segment.davis``) as video entries: the frame folder,
    the first annotation as the target's prompt, the annotations as ground truth, ids as given."""
    root, res, target = Path(davis["root"]), davis.get("resolution", "480p"), davis.get("target", "objects")
    place = "config key segment.davis"
    if is_url(davis["root"]):
        raise ConfigError(f"{place}.root: {davis['root']} is a storage URL; a DAVIS dataset is read from a local"
                          " folder (a sequence's own path may be a URL: list it in segment.videos or a sheet)")  # fmt: skip
    frames, notes = root / "JPEGImages" / res, root / "Annotations" / res
    for folder in (frames, notes):
        if not folder.is_dir():
            raise ConfigError(
                f"{place}: {folder} is not a folder; root must hold JPEGImages/{res}/ and Annotations/{res}/"
            )
    if target not in targets:
        raise ConfigError(f"{place}: target {target!r} is not a key of segment.targets; add {target}: {{prompt: null}}"
                          " (the sequences are prompted by their first annotation)")  # fmt: skip
    names = davis.get("sequences") or sorted(p.name for p in frames.iterdir() if p.is_dir())
    if not names:
        raise ConfigError(f"{place}: {frames} holds no sequence folder")
    rows = []
    for name in names:
        _check_key(name, "videos", f"{place}, sequence {name}")
        _check_exists(str(frames / name), f"{place}, sequence {name}", "frame folder", folder=True)
        pngs = sorted(p for p in (notes / name).glob("*.png")) if (notes / name).is_dir() else []
        if not pngs:
            raise ConfigError(f"{place}, sequence {name}: {notes / name} holds no annotation PNG")
        entry = {"path": str(frames / name), "targets": [target], "prompts": {target: str(pngs[0])},
                 "ground_truth": str(notes / name), "match_ids": False}  # fmt: skip
        rows.append((name, entry, f"{place}, sequence {name}"))
    return rows


def _add(entries: dict, where: dict, key: str, entry: dict, place: str) -> None:
    if key in entries:
        raise ConfigError(f"{place}: id {key!r} is already used by {where[key]}; give one of them another id")
    entries[key], where[key] = entry, place


def _targets(text: str) -> list[str]:
    return [t for t in re.split(r"[,\s]+", text.strip()) if t]


def _prompts(text: str, targets: list[str], place: str) -> dict[str, str]:
    """A sheet's prompts cell: ``target=file`` pairs (commas or spaces between them), or one file for
    a row with one target; each file must exist and each target be the row's."""
    items = _targets(text)
    if len(items) == 1 and "=" not in items[0]:
        if len(targets) != 1:
            raise ConfigError(f"{place}: the row has {len(targets)} targets; name each file's: target=file, ...")
        items = [f"{targets[0]}={items[0]}"]
    prompts = {}
    for item in items:
        target, sep, path = item.partition("=")
        if not sep or not path:
            raise ConfigError(f"{place}: {item!r} is not target=file")
        if target not in targets:
            raise ConfigError(f"{place}: a prompt file for {target!r}, which the row's targets ({', '.join(targets)})"
                              " do not list")  # fmt: skip
        if Path(path).suffix.lower() not in (".png", ".json"):
            raise ConfigError(f"{place}: {path}: a prompt file is a .png mask or a .json of boxes and points")
        _check_exists(path, place, "prompt file")
        prompts[target] = path
    return prompts


def _check_targets(names: list[str], known: dict, place: str) -> None:
    if not names:
        raise ConfigError(f"{place}: no targets; list keys of segment.targets, separated by commas or spaces")
    for name in names:
        if name not in known:
            raise ConfigError(
                f"{place}: target {name!r} is not a key of segment.targets (known: {', '.join(known) or 'none'});"
                " add it there or fix the name"
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"{place}: a target is listed twice ({', '.join(names)})")


def _check_key(key: str, kind: str, place: str) -> None:
    if not re.fullmatch(KEY, key) or key in RESERVED[kind]:
        raise ConfigError(
            f"{place}: id {key!r} cannot name an output folder; use letters, digits, _ and - only"
            + (f" (and not {', '.join(sorted(RESERVED[kind]))})" if RESERVED[kind] else "")
        )


def _check_exists(path: str, place: str, what: str, folder: bool = False) -> None:
    """A local ``path`` must exist (a file, or a folder); a storage URL is the storage plugin's to find."""
    if is_url(path):
        return
    p = Path(path)
    if not (p.is_dir() if folder else p.is_file()):
        found = "is not a folder" if folder and p.exists() else "is not a file" if p.exists() else "does not exist"
        raise ConfigError(f"{place}: the {what} {path} {found} (paths are relative to the working directory)")


def read_sheet(sheet: str | Path, kind: str, targets: dict, fetch: Fetch | None = None) -> list[tuple[str, dict, str]]:
    """The rows of ``sheet`` (a path, or a storage URL read through ``fetch``) as (id, entry, where),
    each checked; ``where`` is "<sheet>, line N"."""
    local = Path(sheet)
    sheet = str(sheet)  # as given: Path() would fold the // of s3://
    delimiter = {".tsv": "\t", ".csv": ","}.get(Path(sheet).suffix.lower())
    if delimiter is None:
        raise ConfigError(f"config key segment.samples.{kind}: {sheet} must end in .tsv (tabs) or .csv (commas)")
    if is_url(sheet):
        if fetch is None:
            raise ConfigError(f"config key segment.samples.{kind}: {sheet} is a storage URL, which only the"
                              " workflow reads (through Snakemake's storage plugin)")  # fmt: skip
        local = fetch(sheet)
    if local is None or not local.is_file():
        raise ConfigError(f"config key segment.samples.{kind}: the sample sheet {sheet} does not exist")
    with open(local, newline="", encoding="utf-8-sig") as f:  # utf-8-sig: spreadsheets often write a BOM
        lines = [(n, row) for n, row in enumerate(csv.reader(f, delimiter=delimiter), 1)
                 if any(cell.strip() for cell in row) and not row[0].lstrip().startswith("#")]  # fmt: skip
    if not lines:
        raise ConfigError(f"{sheet}: no header row; the first line names the columns: {', '.join(COLUMNS[kind])}")
    header_line, header = lines[0]
    header = [h.strip() for h in header]
    for col in header:
        if col not in COLUMNS[kind]:
            raise ConfigError(
                f"{sheet}, line {header_line}: unknown column {col!r} (a {kind} sheet has {', '.join(COLUMNS[kind])})"
            )
    for col in REQUIRED:
        if col not in header:
            raise ConfigError(f"{sheet}, line {header_line}: no column {col!r} (required: {', '.join(REQUIRED)})")
    if len(set(header)) != len(header):
        raise ConfigError(f"{sheet}, line {header_line}: a column is named twice ({', '.join(header)})")
    rows, seen = [], {}
    for n, cells in lines[1:]:
        if len(cells) != len(header):
            raise ConfigError(
                f"{sheet}, line {n}: {len(cells)} cells for {len(header)} columns"
                f" ({'tabs' if delimiter == chr(9) else 'commas'} separate the cells)"
            )
        row = {col: cell.strip() for col, cell in zip(header, cells)}
        place = f"{sheet}, line {n}"
        key = row["id"]
        _check_key(key, kind, f"{place}, column id")
        if key in seen:
            raise ConfigError(f"{place}, column id: id {key!r} is also on line {seen[key]}; ids must be unique")
        seen[key] = n
        if not row["path"]:
            raise ConfigError(f"{place}, column path: empty; give the file's path")
        _check_exists(
            row["path"],
            f"{place}, column path",
            "file",
            folder=kind == "videos" and not is_url(row["path"]) and Path(row["path"]).is_dir(),
        )
        names = _targets(row["targets"])
        _check_targets(names, targets, f"{place}, column targets")
        entry: dict = {"path": row["path"], "targets": names}
        if row.get("ground_truth"):
            _check_exists(row["ground_truth"], f"{place}, column ground_truth", "ground-truth folder", folder=True)
            entry["ground_truth"] = row["ground_truth"]
        if row.get("prompts"):
            entry["prompts"] = _prompts(row["prompts"], names, f"{place}, column prompts")
        if row.get("fps"):
            try:
                fps = float(row["fps"])
            except ValueError:
                fps = 0.0
            if not (fps > 0 and math.isfinite(fps)):
                raise ConfigError(f"{place}, column fps: {row['fps']!r} is not a positive number (frames per second)")
            entry["fps"] = fps
        rows.append((key, entry, place))
    return rows


def _fixed_folder(pattern: str) -> Path:
    """The folders of ``pattern`` before its first wildcard: what a match's key is relative to."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path()


def key_of(path: Path, fixed: Path) -> str:
    """A match's key: its path below ``fixed``, folders joined by ``__``, without the suffix, other
    characters than letters, digits, _ and - replaced by _."""
    rel = path.relative_to(fixed).with_suffix("")
    return "__".join(re.sub(r"[^A-Za-z0-9_-]", "_", part) for part in rel.parts)


def expand_glob(spec: dict, name: str, kind: str, targets: dict) -> list[tuple[str, dict, str]]:
    """The files ``spec["pattern"]`` matches as (key, entry, where), in path order."""
    pattern = spec["pattern"]
    if is_url(pattern):
        raise ConfigError(f"config key {name}.pattern: {pattern!r} is a storage URL; patterns match local files"
                          " only: list the files in storage in a sample sheet (segment.samples) instead")  # fmt: skip
    _check_targets(list(spec["targets"]), targets, f"config key {name}.targets")
    matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    if not matches:
        raise ConfigError(f"config key {name}.pattern: {pattern!r} matches no file (relative to the working directory)")
    fixed, found, rows = _fixed_folder(pattern), {}, []
    for path in matches:
        key = key_of(path, fixed)
        place = f"config key {name} ({path})"
        _check_key(key, kind, place)
        if key in found:
            raise ConfigError(
                f"config key {name}: {found[key]} and {path} would both get the id {key!r};"
                " rename one, or narrow the pattern"
            )
        found[key] = path
        rows.append((key, {"path": str(path), "targets": list(spec["targets"])}, place))
    return rows
