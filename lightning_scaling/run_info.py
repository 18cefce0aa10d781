"""The run-info file: what the callbacks know about a run that is not a scalar, written beside its logs.

Each callback writes its own section of ``lightning_scaling.json`` in the logger's ``log_dir`` (rank zero, at the
start of the fit and at its end): the model's parameter count and the dataset size (EffectiveEpochs), the stopping
rule's options and what it concluded (ExtraEarlyStopping). ``lightning-scaling replay`` / ``report`` / ``fit`` read it,
so a replay uses the live run's options without retyping them, and a sweep's runs carry their N and D.

The format is versioned JSON, one object of sections::

    {"version": 1,
     "model": {"n_params": 84032, "trainable_params": 84032},
     "data": {"dataset_size": 65536, "unit": "tokens"},
     "stopping": {"monitor": "val_loss", "time_axis": "steps", "use_data_floor": true,
                  "options": {...StoppingRule keyword arguments...},
                  "outcome": {"stopped_step": 475, "reason": "...", "n_points": 40}}}

Writes are atomic (a temporary file, then ``os.replace``), so a reader never sees half a file. Pure: no Lightning.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

#: The file's name in a run's log directory.
FILENAME = "lightning_scaling.json"
#: The format's version (the ``version`` key).
VERSION = 1
#: Callback arguments that no longer exist (``lightning_scaling.callbacks._common.REMOVED_ARGUMENTS``): a file
#: written by an earlier version may hold them in a section or in its ``options``; :func:`read` drops them.
REMOVED_KEYS = ("check_finite", "figure_interval")


def read(run_dir: str | Path) -> dict[str, Any]:
    """The run-info sections of ``run_dir`` (a log directory, or the file itself); ``{}`` when there is none.

    Keys of removed callback arguments (:data:`REMOVED_KEYS`), which files of earlier versions may hold, are dropped.

    Raises:
        ValueError: the file exists but is not a run-info object of a known version (the message names the file).
    """
    path = Path(run_dir)
    if path.is_dir():
        path = path / FILENAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable run-info JSON file ({err})") from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise ValueError(f"{path}: not a lightning-scaling run-info file of version {VERSION}")
    return {k: _without_removed(v) for k, v in data.items() if k != "version"}


def _without_removed(section: Any) -> Any:
    """``section`` without the keys of :data:`REMOVED_KEYS`, in itself and in its ``options``."""
    if not isinstance(section, dict):
        return section
    kept = {k: v for k, v in section.items() if k not in REMOVED_KEYS}
    if isinstance(kept.get("options"), dict):
        kept["options"] = {k: v for k, v in kept["options"].items() if k not in REMOVED_KEYS}
    return kept


def write(log_dir: str | Path, section: str, values: Mapping[str, Any]) -> Path:
    """Merge ``values`` into ``section`` of the run-info file in ``log_dir`` (created if needed), atomically.

    Args:
        log_dir: the run's log directory (a logger's ``log_dir``).
        section: the section to update, e.g. ``"stopping"``.
        values: JSON-serialisable values; keys already in the section are replaced, others kept.

    Returns the file's path. Raises ``OSError`` when the directory cannot be written, ``TypeError`` for values
    JSON cannot hold.

    Example:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> _ = write(d, "model", {"n_params": 1000})
        >>> read(d)["model"]["n_params"]
        1000
    """
    folder = Path(log_dir)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        data = read(folder)
    except ValueError:
        data = {}  # a corrupt or foreign file is replaced by this run's
    merged = dict(data.get(section) or {})
    merged.update(values)
    data[section] = merged
    return write_atomic(folder / FILENAME, json.dumps({"version": VERSION, **data}, indent=1, sort_keys=True))


def write_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically: into a temporary ``.<name>.*.partial`` file in the same folder, flushed
    to disk, then ``os.replace``d over ``path``. A reader (on any machine sharing the folder) sees the old file or the
    new one, never half of one; a writer killed mid-write leaves only the temporary file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".partial")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
