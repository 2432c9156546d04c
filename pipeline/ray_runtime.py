"""Start or join Ray: in-process by default, a cluster when an address is given."""
from __future__ import annotations

import os

from pipeline.config import PROJECT_ROOT, RayConfig

# Passed to every worker: the run never reaches a model hub, and workers import our packages.
WORKER_ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def ensure_ray(settings: RayConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    address = settings.address or os.environ.get("RAY_ADDRESS")
    env = dict(WORKER_ENV)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    runtime_env = {"env_vars": env}
    if address:
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
    else:
        ray.init(num_cpus=settings.num_cpus or os.cpu_count(), include_dashboard=False,
                 runtime_env=runtime_env, log_to_driver=False, configure_logging=False)
