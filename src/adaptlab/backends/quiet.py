"""Other libraries' progress bars stay out of adaptlab's own.

transformers draws "Loading weights" and huggingface_hub its download bars with
tqdm on stderr; inside a rich progress display they tear its lines apart. adaptlab
reports its own progress, so theirs are switched off before a model loads. peft
reads a property transformers 5 deprecated (``is_gradient_checkpointing``) on every
adapter it wraps; that FutureWarning is for peft's authors, not adaptlab's users,
and is silenced here too (that message only).
"""

from __future__ import annotations

import contextlib
import os
import warnings


def quiet_library_progress() -> None:
    """Switch off transformers' and huggingface_hub's progress bars and peft's deprecation
    warning; call before a model loads. Idempotent."""
    warnings.filterwarnings(
        "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
    )
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read at their import
    with contextlib.suppress(ImportError):
        from huggingface_hub import utils as hub_utils

        hub_utils.disable_progress_bars()  # type: ignore[attr-defined]
    with contextlib.suppress(ImportError):
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
