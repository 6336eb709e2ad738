"""The trainer under `accelerate launch` with two CPU processes (gloo) ends as one process.

accelerate 1.15's `launch --cpu --num_processes 2` starts ONE process unless mpirun
and a hostfile are given (its simple launcher); on a machine without GPUs,
`launch --multi_gpu --num_processes 2` starts two through torchrun, and accelerate
picks MULTI_CPU with gloo. The script checks it really runs in two processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train.conftest import MEMO_TRAIN

pytest.importorskip("accelerate")

SCRIPT = """
import json, sys
from pathlib import Path
from adaptlab.train import TrainOptions, train_causal_lm

base, out, batch = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
chats = json.loads(Path(sys.argv[4]).read_text())
# lora_dropout 0: each process draws its own dropout masks, so only a dropout-free
# run can match the single process
opts = TrainOptions(epochs=4, batch_size=batch, learning_rate=2e-2, eval_steps=4,
                    early_stopping_patience=None, precision="fp32", lora_dropout=0.0)
r = train_causal_lm(base, chats, chats, out, opts, seed=3)
from accelerate import PartialState
state = PartialState()
print("RESULT", json.dumps({"last_val_loss": r.last_val_loss, "steps": r.last_step,
                            "tokens": r.train_tokens, "processes": state.num_processes,
                            "backend": str(state.backend)}))
"""


def _run(cmd: list[str], cwd: Path) -> dict[str, object]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(lines[-1].split(" ", 1)[1])  # type: ignore[no-any-return]


@pytest.mark.slow
def test_two_cpu_processes_end_with_the_loss_of_one(tiny_base: Path, tmp_path: Path) -> None:
    script = tmp_path / "train_one.py"
    script.write_text(SCRIPT)
    data = tmp_path / "chats.json"
    data.write_text(json.dumps(MEMO_TRAIN))
    # 4 examples per optimizer step in both: 4 on one process, 2 on each of two.
    one = _run(
        [sys.executable, str(script), str(tiny_base), str(tmp_path / "one"), "4", str(data)],
        tmp_path,
    )
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2"]
    launch += ["--multi_gpu"]  # see the module docstring: with no GPU this is two CPU processes
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    two = _run(
        [*launch, str(script), str(tiny_base), str(tmp_path / "two"), "2", str(data)], tmp_path
    )
    assert one["processes"] == 1 and two["processes"] == 2 and two["backend"] == "gloo"
    assert one["steps"] == two["steps"] == 4
    assert one["tokens"] == two["tokens"]
    assert two["last_val_loss"] == pytest.approx(one["last_val_loss"], rel=1e-3)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["best", "last", "result.json"]
