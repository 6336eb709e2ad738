"""Resume checkpoints: what ``last.pt``/``best.pt`` hold, and how they are read back.

A checkpoint sits in the project folder, which may come from someone else, so it
is untrusted input: it is read with ``torch.load(weights_only=True)`` (tensors,
numbers, strings and containers of them; never a pickled object, so nothing in it
can run), and every part is checked against what training expects before any of
it is applied. What fails either check is :class:`CheckpointError`, and the caller
discards the files and trains from scratch.

Resume is exact: besides weights, optimiser, scheduler and batch order, the files
keep every random state training draws from — torch's global CPU generator (dropout
uses it), the CUDA generators, Python's ``random`` and numpy's global generator —
so the epochs after a resume draw what an uninterrupted run would have drawn.

The encoder trainer (:mod:`adaptlab.train.encoder`) writes and reads them.
"""

from __future__ import annotations

import os
import random
import shutil
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adaptlab.core.errors import AdaptlabError, ConfigError

if TYPE_CHECKING:
    import torch


class CheckpointError(Exception):
    """A checkpoint file that cannot be used: unreadable, unsafe or not ours."""


def refuse_linked_folder(folder: Path) -> None:
    """Training writes only inside the project: never into a folder that is a link."""
    if folder.is_symlink():
        raise ConfigError(
            f"the checkpoint folder is a link to {folder.resolve()}; fine-tuning "
            "writes only inside the project",
            file=folder,
            fix=f"remove the link (rm {folder}) and run again",
        )


def is_regular(path: Path) -> bool:
    """``path`` is a plain file itself (not a link, folder or device)."""
    return stat.S_ISREG(os.lstat(path).st_mode)


def remove(path: Path) -> None:
    """Remove a file, link (not its target) or folder (links inside as links)."""
    if not os.path.lexists(path):
        return
    if stat.S_ISDIR(os.lstat(path).st_mode):
        shutil.rmtree(path)
    else:
        path.unlink()


def save(obj: dict[str, Any], path: Path) -> None:
    """A kill mid-write leaves the previous file intact, never a truncated one."""
    import torch

    tmp = path.with_suffix(".tmp")
    if os.path.lexists(tmp):  # never write through a link someone left there
        os.unlink(tmp)
    try:
        torch.save(obj, tmp)
    except RuntimeError as exc:  # torch reports a failed write (a full disk) this way
        Path(tmp).unlink(missing_ok=True)
        raise AdaptlabError(
            f"cannot write the resume checkpoint {tmp}: {exc}".splitlines()[0],
            file=tmp,
            fix="free disk space (df -h) and rerun 'adaptlab run': training resumes from "
            "the last checkpoint that was written",
            code="disk",
        ) from None
    os.replace(tmp, path)  # replaces a link at `path` itself, not what it points to


def load(path: Path) -> dict[str, Any]:
    """The file's tensors and plain values; a pickled object (code) is refused."""
    import pickle
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # torch warns about the protocol of foreign pickles
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unpickling failed"
        raise CheckpointError(f"it holds more than tensors ({first[:200]})") from None
    except Exception as exc:  # truncated, empty, random bytes, not a torch file at all
        raise CheckpointError(f"it is not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"it holds a {type(obj).__name__}, not a checkpoint")
    return obj


def rng_state() -> dict[str, Any]:
    """Every global random state training can draw from, as tensors and plain values."""
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Any) -> None:
    """Restore :func:`rng_state`; checks every part before setting any."""
    import numpy as np
    import torch

    need(isinstance(state, dict), "no random state")
    t = state.get("torch")
    need(isinstance(t, torch.Tensor) and t.dtype == torch.uint8, "bad torch random state")
    py = state.get("python")
    need(
        isinstance(py, tuple | list)
        and len(py) == 3
        and isinstance(py[1], tuple | list)
        and all(isinstance(v, int) for v in py[1]),
        "bad Python random state",
    )
    npy = state.get("numpy")
    need(isinstance(npy, dict), "bad numpy random state")
    keys = npy.get("keys")
    need(
        isinstance(keys, torch.Tensor) and keys.shape == (624,) and npy.get("kind") == "MT19937",
        "bad numpy random state",
    )
    cuda = state.get("cuda")
    torch.set_rng_state(t)
    random.setstate((py[0], tuple(py[1]), py[2]))
    np.random.set_state(
        (
            "MT19937",
            keys.numpy().astype(np.uint32),
            int(npy["pos"]),
            int(npy["has_gauss"]),
            float(npy["gauss"]),
        )
    )
    if cuda is not None and torch.cuda.is_available():
        need(
            isinstance(cuda, list) and len(cuda) == torch.cuda.device_count(),
            "CUDA random state for another number of devices",
        )
        torch.cuda.set_rng_state_all(cuda)


def need(condition: bool, reason: str) -> None:
    if not condition:
        raise CheckpointError(f"it does not match this training run ({reason})")


def check_weights(saved: Any, module: Any, what: str) -> None:
    """``saved`` is a state dict with exactly ``module``'s tensors (names, shapes, dtypes)."""
    import torch

    ref = module.state_dict()
    need(isinstance(saved, dict) and saved.keys() == ref.keys(), f"{what}: other weights")
    for name, value in saved.items():
        need(
            isinstance(value, torch.Tensor)
            and value.shape == ref[name].shape
            and value.dtype == ref[name].dtype,
            f"{what}: '{name}' has another shape or type",
        )


def check_optimizer(saved: Any, optimizer: torch.optim.Optimizer) -> None:
    import torch

    ref = optimizer.state_dict()
    need(isinstance(saved, dict) and set(saved) == set(ref), "optimizer")
    groups = saved["param_groups"]
    need(
        isinstance(groups, list)
        and len(groups) == len(ref["param_groups"])
        and all(
            isinstance(g, dict) and set(g) == set(r) and g["params"] == r["params"]
            for g, r in zip(groups, ref["param_groups"], strict=True)
        ),
        "optimizer parameter groups",
    )
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state = saved["state"]
    need(isinstance(state, dict), "optimizer state")
    for pid, values in state.items():
        need(isinstance(pid, int) and 0 <= pid < len(params), "optimizer state")
        need(isinstance(values, dict), "optimizer state")
        for key, value in values.items():
            need(key in ("step", "exp_avg", "exp_avg_sq"), f"optimizer state '{key}'")
            if key == "step":
                need(isinstance(value, torch.Tensor | int | float), "optimizer step")
            else:
                need(
                    isinstance(value, torch.Tensor) and value.shape == params[pid].shape,
                    f"optimizer state '{key}'",
                )


def check_plain(saved: Any, ref: dict[str, Any], what: str) -> None:
    """A dict of plain values with ``ref``'s keys and value types (scheduler, counters)."""
    need(isinstance(saved, dict) and set(saved) == set(ref), what)
    for key, value in ref.items():
        got = saved[key]
        need(type(got) is type(value) or value is None, f"{what} '{key}'")
        if isinstance(value, list):
            need(
                len(got) == len(value)
                and all(type(a) is type(b) for a, b in zip(got, value, strict=True)),
                f"{what} '{key}'",
            )
