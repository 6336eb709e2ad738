"""Files a fitted strategy is saved to for serving, and read back without running code.

An exported model folder may come from someone else, so nothing in it is unpickled:
arrays are ``.npz`` files read with ``allow_pickle=False``, scikit-learn models go
through skops (``skops.io``), which rebuilds only types it trusts (scikit-learn,
numpy, scipy) and refuses anything else, and model weights are safetensors (written
by sentence-transformers and PEFT). Every read names the file and the fix when the
file is missing or not what it should be.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from adaptlab.core.errors import AdaptlabError


class StateError(AdaptlabError):
    """A saved model file is missing, damaged, or holds something it should not."""

    def __init__(self, message: str, *, file: Path, fix: str | None = None) -> None:
        super().__init__(
            message,
            file=file,
            fix=fix
            or "export the candidate again (adaptlab export --candidate NAME DIR) into an "
            "empty folder",
            code="bad-model-file",
        )


def check(condition: bool, folder: Path, what: str) -> None:
    """Raise :class:`StateError` about ``folder``'s state unless ``condition``: a state
    that does not fit the model (shapes, label indices) must fail at load, not answer
    wrongly or fail at the first request."""
    if not condition:
        raise StateError(f"holds a state that does not fit this model: {what}", file=folder)


def save_arrays(folder: Path, name: str, **arrays: Any) -> str:
    """Write numeric arrays to ``folder/name`` (.npz); returns the file name."""
    import numpy as np

    np.savez(folder / name, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]
    return name


def load_arrays(folder: Path, name: object, keys: tuple[str, ...]) -> dict[str, Any]:
    """Numeric arrays from ``folder/name``; no object arrays (nothing is unpickled).

    Raises :class:`StateError` when the file is missing, not an npz, holds object
    arrays or lacks one of ``keys``.
    """
    import numpy as np

    path = _file(folder, name)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise StateError(f"lacks the array(s) {', '.join(missing)}", file=path)
            return {k: data[k] for k in keys}
    except StateError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        # allow_pickle=False raises ValueError for object arrays: refused, not read.
        raise StateError(f"is not a readable array file ({exc})", file=path) from None


def save_sklearn(folder: Path, name: str, obj: Any) -> str:
    """Write scikit-learn objects with skops; returns the file name."""
    import skops.io as sio

    sio.dump(obj, folder / name)
    return name


def load_sklearn(folder: Path, name: object) -> Any:
    """A scikit-learn object written by :func:`save_sklearn`.

    skops loads only the types it trusts by default; a file naming any other type
    (which could run code when rebuilt) raises :class:`StateError` listing them.
    """
    import skops.io as sio

    path = _file(folder, name)
    try:
        untrusted = sio.get_untrusted_types(file=path)
        if untrusted:
            raise StateError(
                "names types that are not scikit-learn's and could run code when loaded: "
                + ", ".join(sorted(untrusted)[:5]),
                file=path,
                fix="use a model folder exported by adaptlab; never load this file",
            )
        return sio.load(path)
    except StateError:
        raise
    except Exception as exc:  # skops raises many kinds for a damaged archive
        raise StateError(
            f"is not a readable skops file ({type(exc).__name__})", file=path
        ) from None


def load_json(folder: Path, name: object) -> Any:
    """A JSON file of an exported model folder, with the file named on error."""
    path = _file(folder, name)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise StateError(f"is not valid JSON ({exc})", file=path) from None


def _file(folder: Path, name: object) -> Path:
    # State files sit at the top of the model folder: a name with a path in it (absolute,
    # '..', a sub-folder) could make a folder from someone else read any file here.
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise StateError(
            f"names the state file {name!r}, which is not a file of the model folder",
            file=folder,
        )
    path = folder / name
    # A link could point anywhere on the machine: an exported folder holds plain files.
    if path.is_symlink() or not path.is_file():
        raise StateError("is missing (or is not a plain file)", file=path)
    return path
