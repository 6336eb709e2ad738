"""``adaptlab export --format vllm``: what ``vllm serve --enable-lora`` needs for a LoRA
candidate, and how to put that server behind ``adaptlab serve``.

vLLM serves the base model with the adapter as a second model name
(``--lora-modules NAME=PATH``; https://docs.vllm.ai/en/latest/features/lora.html);
clients then ask for ``NAME``. The prompt template, shots and answer parsing stay
adaptlab's: ``adaptlab serve --model NAME=DIR --remote NAME=http://HOST:8000/v1``
renders each prompt here and sends it to vLLM, so answers are parsed and logged as
the run measured them.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from adaptlab.backends.gguf import BUNDLED
from adaptlab.engine.manifest import ExportError, Manifest


def base_model_id(name: str) -> str:
    """What vLLM loads as the base: the Hub id of a bundled model, else the name as is."""

    bundled = BUNDLED.get(name)
    return bundled.hub_id if bundled is not None and bundled.hub_id else name


def write_vllm(folder: Path, manifest: Manifest, final: Path) -> dict[str, Any]:
    """Write ``vllm.json`` and ``VLLM.md`` into ``folder``, an export of a LoRA candidate
    that will be renamed to ``final`` (the paths in the command).

    Raises :class:`ExportError` for a candidate that is not a LoRA (or full) fine-tune
    of a local model.
    """
    llm = manifest.llm or {}
    if not manifest.generative or llm.get("backend") != "hf" or not manifest.llm_folders:
        raise ExportError(
            f"--format vllm exports a fine-tuned local model (llm-finetune), and "
            f"'{manifest.candidate}' is a {manifest.strategy} candidate",
            fix="export it without --format (adaptlab serve --model serves every kind)",
            code="not-exportable",
        )
    name = manifest.candidate
    if "adapter" in manifest.llm_folders:
        config = json.loads((folder / "adapter" / "adapter_config.json").read_text())
        rank = int(config.get("r", 16))
        base = base_model_id(str(llm.get("name")))
        command = [
            "vllm", "serve", base, "--enable-lora",
            "--lora-modules", f"{name}={final.resolve() / 'adapter'}",
            "--max-lora-rank", str(max(8, rank)),
        ]  # fmt: skip
    else:  # a full fine-tune: the model folder is the model
        base = str(final.resolve() / "model")
        command = ["vllm", "serve", base, "--served-model-name", name]
    spec = {"model_name": name, "base_model": base, "command": command}
    (folder / "vllm.json").write_text(json.dumps(spec, indent=2), encoding="utf-8")
    line = shlex.join(command)
    (folder / "VLLM.md").write_text(
        f"""# Serving {name} with vLLM

```
{line}
```

Clients ask for the model `{name}`. adaptlab's prompt template, shots and answer
parsing are not in vLLM: to serve answers as the run measured them, put vLLM behind
adaptlab, which renders each prompt, sends it to vLLM and logs the answer:

```
adaptlab serve -p PROJECT --model {name}={final.resolve()} --remote {name}=http://HOST:8000/v1
```

The adapter was trained on the weights adaptlab loaded ({llm.get("name")}); vLLM loads
`{base}`. For a bundled GGUF model that is the unquantised original, so answers can
differ slightly from the run's: compare with `adaptlab logs stats` before switching.
""",
        encoding="utf-8",
    )
    return spec
