"""How long ``adaptlab demo`` takes on this machine: the README's figure, measured.

Runs ``python -m adaptlab demo DIR`` (``--full`` with ``--full``) in a fresh temporary
folder as a user would, output going to a file (plain progress lines), and times it.
Prints the whole wall time, each candidate's seconds as the run printed them
(``✓ name (N s)``), the time before the first candidate (loading, the estimates), the
load average before and after, and whether it is within ``--goal-s`` (default 300 s,
the README's "about 5 minutes"). The bundled SmolLM2 GGUF is converted once per
machine; ``--cold`` removes that conversion first, so its minute or so counts too.
Exits 1 when the goal is missed.

    python bench/demo_time.py [--full] [--goal-s 300] [--cold]

Results: bench/results/demo_time.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "demo_time.json"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="adaptlab demo --full (LoRA too)")
    ap.add_argument("--goal-s", type=float, default=300.0, help="the README's stated time")
    ap.add_argument("--cold", action="store_true", help="convert the bundled GGUF again")
    args = ap.parse_args()

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "100"}
    if args.cold:
        from adaptlab.backends.gguf import cache_root

        shutil.rmtree(cache_root() / "gguf", ignore_errors=True)
    before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "demo.log"
        cmd = [sys.executable, "-m", "adaptlab", "demo", str(Path(tmp) / "demo")]
        if args.full:
            cmd.append("--full")
        t0 = time.perf_counter()
        with log.open("w") as fh:
            code = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env).returncode
        wall = time.perf_counter() - t0
        text = log.read_text()
    after = os.getloadavg()[0]
    if code != 0:
        print(text[-3000:])
        print(f"adaptlab demo exited {code}")
        return 1
    done = {m[1]: float(m[2]) for m in re.finditer(r"✓ (\S+) \(([\d.]+) s\)", text)}
    estimate = re.search(r"time: about (.+) in all", text)
    print(f"adaptlab demo{' --full' if args.full else ''}: {wall:.0f} s wall ({wall / 60:.1f} min)")
    for name, seconds in done.items():
        print(f"  {name}: {seconds:.0f} s (fit and test answers, as the run printed)")
    if estimate:
        print(f"  the run's own estimate at its start: about {estimate[1]}")
    print(f"load average (1 min): {before:.1f} before, {after:.1f} after, {os.cpu_count()} cores")
    ok = wall <= args.goal_s
    print(f"goal: within {args.goal_s:.0f} s: {'met' if ok else 'missed'}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "full": args.full,
                "wall_s": round(wall, 1),
                "candidates_s": done,
                "load_before": before,
                "load_after": after,
                "goal_s": args.goal_s,
            },
            indent=1,
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
