"""Faults: a killed engine actor, a killed shard worker, a killed driver; and a multi-node Ray cluster.

Each faulty run must end with the same rows as an uninterrupted one (per-request seeds), none lost or
duplicated.  Processes are found by the titles Ray gives them and killed with SIGKILL, as a crash would.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pyarrow.parquet as pq
import yaml

from pipeline.config import build_config
from pipeline.runner import run_job
from tests.conftest import PROJECT_ROOT
from tests.test_pipeline import prm_by_solution, small_config


def ray_processes(title: str) -> set[int]:
    found = set()
    for process in psutil.process_iter(["pid", "cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if command.startswith(title):
            found.add(process.info["pid"])
    return found


def shards_done(out) -> int:
    try:
        return len(json.loads((out / "manifest.json").read_text())["shards"])
    except (OSError, ValueError, KeyError):
        return 0


def wait_for(condition, timeout: float = 300.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def fault_config() -> dict:
    return small_config(problems={"source": "toy", "domain": "toy", "toy": {"n": 12, "seed": 3}},
                        output={"shard_size": 2}, ray={"max_shards_in_flight": 1})


def same_rows(expected_out, actual_out) -> None:
    expected, actual = prm_by_solution(expected_out), prm_by_solution(actual_out)
    assert expected.keys() == actual.keys()
    for solution_id, row in expected.items():
        assert actual[solution_id]["labels"] == row["labels"]
        assert actual[solution_id]["first_error_step"] == row["first_error_step"]
    ids = pq.read_table(actual_out / "solutions").column("solution_id").to_pylist()
    assert len(ids) == len(set(ids))


def test_killed_engine_actor_and_shard_worker_do_not_change_the_output(tmp_path, policy_engine):
    config = build_config(fault_config())
    run_job(config, str(tmp_path / "whole"), engine=policy_engine, progress=False)
    out = tmp_path / "faulty"
    existing_actors = ray_processes("ray::EngineActorBody")  # the session's own engine stays alive
    killed: list[str] = []

    def inject_faults() -> None:
        if wait_for(lambda: shards_done(out) >= 1):
            for pid in ray_processes("ray::EngineActorBody") - existing_actors:
                os.kill(pid, signal.SIGKILL)
                killed.append("engine actor")
        if wait_for(lambda: ray_processes("ray::shard_task") and shards_done(out) >= 2):
            for pid in ray_processes("ray::shard_task"):
                os.kill(pid, signal.SIGKILL)
                killed.append("shard worker")

    monitor = threading.Thread(target=inject_faults, daemon=True)
    monitor.start()
    summary = run_job(config, str(out), progress=False)  # Ray tasks and a new engine actor
    monitor.join(timeout=5)
    assert "engine actor" in killed and "shard worker" in killed, killed
    assert summary.shards_total == 6 and shards_done(out) == 6
    same_rows(tmp_path / "whole", out)


def test_kill_9_of_the_driver_then_the_same_command_resumes(tmp_path, policy_engine):
    config = fault_config()
    run_job(build_config(config), str(tmp_path / "whole"), engine=policy_engine, progress=False)
    config_file = tmp_path / "job.yaml"
    config_file.write_text(yaml.safe_dump(config))
    out = tmp_path / "resumed"
    command = [sys.executable, str(PROJECT_ROOT / "run.py"), "label", "--config", str(config_file), "--out", str(out)]
    # its own session, so that kill -9 reaches the driver and the local Ray it started
    driver = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: shards_done(out) >= 2 or driver.poll() is not None, timeout=600)
        os.killpg(driver.pid, signal.SIGKILL)
    finally:
        driver.wait()
    done_before = shards_done(out)
    assert 0 < done_before < 6
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["summary"]["shards_skipped"] == done_before
    same_rows(tmp_path / "whole", out)


CLUSTER_SCRIPT = textwrap.dedent("""
    import json, sys
    from ray.cluster_utils import Cluster

    if __name__ == "__main__":
        sys.path.insert(0, {root!r})
        from pipeline.config import build_config
        from pipeline.runner import run_job

        cluster = Cluster(initialize_head=True, head_node_args={{"num_cpus": 1}})
        cluster.add_node(num_cpus=1)
        cluster.add_node(num_cpus=1)
        config = json.loads({config!r})
        config["ray"] = {{"address": cluster.address, "max_shards_in_flight": 2}}
        try:
            summary = run_job(build_config(config), {out!r}, progress=False)
            import ray
            nodes = len([node for node in ray.nodes() if node["Alive"]])
            print(json.dumps({{"nodes": nodes, "prm_rows": summary.prm_rows}}))
        finally:
            import ray
            ray.shutdown()
            cluster.shutdown()
""")


def test_same_config_on_a_three_node_local_cluster(tmp_path, policy_engine):
    config = small_config()
    run_job(build_config(config), str(tmp_path / "single"), engine=policy_engine, progress=False)
    script = tmp_path / "cluster_job.py"
    script.write_text(CLUSTER_SCRIPT.format(root=str(PROJECT_ROOT), config=json.dumps(config),
                                            out=str(tmp_path / "cluster")))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=900,
                            env={**os.environ, "RAY_ADDRESS": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["nodes"] == 3
    same_rows(tmp_path / "single", tmp_path / "cluster")
