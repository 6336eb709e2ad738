"""Files a fitted strategy is saved to for serving, and read back without running code.

An exported model folder may come from someone else, so nothing in it is unpickled:
arrays are ``.npz`` files read with ``allow_pickle=False``, scikit-learn models go
through skops (``skops.io``), which rebuilds only types it trusts (scikit-learn,
numpy, scipy) and refuses anything else, and model weights are safetensors (written
by sentence-transformers and PEFT). Every read names the file and the fix when the
file is missing or not what it should be.

Nothing in such a folder chooses how much memory it costs: an ``.npz`` member's
``.npy`` header (shape, dtype) is read first and checked against its stored size, the
model's expected shape and :func:`max_state_bytes` before any array is allocated (a
248-byte file can declare a terabyte array; a 4 MB one can inflate to 4 GB).
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from adaptlab.core.errors import AdaptlabError
from adaptlab.core.files import ArrayTooLarge, read_npy, read_regular_file

#: The environment variable that raises the bound on one model folder's state file.
MAX_STATE_MB_VAR = "ADAPTLAB_MAX_STATE_MB"
DEFAULT_MAX_STATE_MB = 2048  # a k-NN index of 1M examples x 512 float32 dims fits
#: A JSON file of a model folder holds label names and settings, never data.
JSON_MAX_BYTES = 64 << 20


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


def max_state_bytes() -> int:
    """The most bytes one state file of a model folder may hold (and its arrays
    declare): ``ADAPTLAB_MAX_STATE_MB`` (MB), 2048 by default. Only the user's own
    environment raises it, never the folder. Raises :class:`AdaptlabError` for a value
    that is not a positive number."""
    raw = os.environ.get(MAX_STATE_MB_VAR, "").strip()
    if not raw:
        return DEFAULT_MAX_STATE_MB << 20
    try:
        mb = float(raw)
    except ValueError:
        mb = -1.0
    if not 0 < mb < 1 << 30:
        raise AdaptlabError(
            f"{MAX_STATE_MB_VAR} is {raw[:40]!r}, not a size in MB",
            fix=f"set {MAX_STATE_MB_VAR} to a number of MB, such as 4096, or unset it "
            f"for the default of {DEFAULT_MAX_STATE_MB}",
            code="bad-setting",
        )
    return int(mb * (1 << 20))


def load_arrays(
    folder: Path,
    name: object,
    keys: tuple[str, ...],
    shapes: Mapping[str, tuple[int | None, ...]] | None = None,
) -> dict[str, Any]:
    """Numeric arrays (bool, int, float) from ``folder/name``, nothing unpickled.

    ``shapes`` gives the shape the model expects per key (None: any length on that
    axis). Every header is checked before its array is allocated: a numeric dtype, the
    expected shape, data no larger than the member stores, and all of them together
    within :func:`max_state_bytes`. Raises :class:`StateError` when the file is
    missing, not an npz, lacks one of ``keys`` or fails a check; the message names the
    array, what it declares, and the bound with the variable that raises it.
    """
    path = _file(folder, name)
    limit = max_state_bytes()
    raise_fix = (
        f"if the model is meant to be this large, raise {MAX_STATE_MB_VAR} (MB, now "
        f"{limit >> 20:,}) in your environment; otherwise export the candidate again"
    )

    def too_big(what: str) -> StateError:
        return StateError(
            f"{what}, over the limit of {limit >> 20:,} MB for a model's state file",
            file=path,
            fix=raise_fix,
        )

    size = path.stat().st_size
    if size > limit:
        raise too_big(f"is {size:,} bytes")
    out: dict[str, Any] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
            missing = [k for k in keys if f"{k}.npy" not in members]
            if missing:
                raise StateError(f"lacks the array(s) {', '.join(missing)}", file=path)
            left = limit
            for key in keys:
                info = members[f"{key}.npy"]
                if info.file_size > left:  # what the zip says it inflates to
                    raise too_big(f"says array '{key}' inflates to {info.file_size:,} bytes")
                with archive.open(info) as fh:
                    try:
                        out[key] = read_npy(
                            fh,
                            stored_bytes=info.file_size,
                            max_bytes=left,
                            shape=(shapes or {}).get(key),
                        )
                    except ArrayTooLarge as exc:
                        raise StateError(
                            f"is not a readable array file (array '{key}': {exc})",
                            file=path,
                            fix=raise_fix,
                        ) from None
                    except ValueError as exc:
                        raise StateError(
                            f"is not a readable array file (array '{key}': {exc})", file=path
                        ) from None
                left -= info.file_size
    except StateError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, NotImplementedError) as exc:
        # a damaged archive, a bad CRC, an unsupported compression: refused, not read
        raise StateError(f"is not a readable array file ({exc})", file=path) from None
    return out


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
        raw = read_regular_file(
            path,
            max_bytes=JSON_MAX_BYTES,
            limit_name="for a model folder's JSON file",
            what="model file",
        )
    except AdaptlabError as exc:  # as a StateError: same message, the folder's fix
        raise StateError(exc.issue.message, file=path) from None
    try:
        return json.loads(raw.decode("utf-8"))
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
