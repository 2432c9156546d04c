"""Peak memory of the driver for N problems and for factor × N problems (same shard size).

Each size runs in a fresh process (Ray started in it, shards as Ray tasks), which reports its own peak
resident set (``ru_maxrss``).  Memory is bounded by the shard size when the two peaks are close: the
driver keeps the problem list and at most ``max_shards_in_flight`` shards of results, and reads its
output back one shard at a time.  Engine actors and shard workers are separate processes: their peak
depends on the model and the shard, not on the number of problems.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

JOB = textwrap.dedent("""
    import json, resource, sys
    if __name__ == "__main__":
        sys.path.insert(0, {root!r})
        from pipeline.config import build_config
        from pipeline.runner import run_job
        config = build_config({config})
        summary = run_job(config, {out!r}, progress=False)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({{"problems": summary.problems, "solutions": summary.solutions, "wall_s": summary.wall_s,
                          "driver_peak_mb": round(peak_mb, 1)}}))
""")


def measure(n_problems: int, shard_size: int, samples: int) -> dict:
    config = {"problems": {"source": "toy", "domain": "toy", "toy": {"n": n_problems, "seed": 0}},
              "sampling": {"n": samples, "max_tokens": 64},
              "annotators": [{"type": "omegaprm", "k": 4, "initial_rollouts": 8, "search_limit": 2}],
              "output": {"shard_size": shard_size}}
    with tempfile.TemporaryDirectory(prefix="prmforge-memory-") as folder:
        script = Path(folder) / "job.py"
        script.write_text(JOB.format(root=str(PROJECT_ROOT), config=repr(config), out=str(Path(folder) / "out")))
        result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=3600)
        if result.returncode != 0:
            raise RuntimeError(f"memory benchmark job failed: {result.stderr[-2000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])


def benchmark(n_problems: int = 40, factor: int = 10, shard_size: int = 8, samples: int = 2) -> dict:
    small = measure(n_problems, shard_size, samples)
    large = measure(n_problems * factor, shard_size, samples)
    return {"shard_size": shard_size, "small": small, "large": large,
            "peak_ratio_large_to_small": round(large["driver_peak_mb"] / small["driver_peak_mb"], 3)}
