"""``--precision``: the encoder arithmetic of ``adaptlab predict`` and ``adaptlab serve``.

One option for both commands, so that predict can reproduce what serve answers (and the
other way round) by naming the same value.
"""

from __future__ import annotations

import click

PRECISIONS = ("fp32", "bf16", "auto")

precision_option = click.option(
    "--precision",
    default="fp32",
    show_default=True,
    type=click.Choice(PRECISIONS),
    help="Encoder arithmetic (encoder candidates only). fp32: an input's answer does not "
    "depend on which other inputs share its batch. bf16: batches of 5 or more inputs run "
    "under bf16 autocast, about half fp32's CPU time a text at batch 32 on hardware with "
    "native bf16 (AMX or AVX512_BF16 CPUs, Ampere+ GPUs; elsewhere emulated and slower); "
    "scores then move by up to ~0.002 with the batch, so a near-tie's label can depend on "
    "which inputs share its batch. auto: bf16 where native, else fp32.",
)
