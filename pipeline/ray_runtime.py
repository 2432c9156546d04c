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


def check_local_capacity(config) -> None:
    """Refuse, with the keys to change, a job the local Ray can never schedule.

    Ray waits forever for resources that never free up: two engine actors of one CPU each on a
    2-CPU machine leave nothing for the shard tasks, and the job would hang without a word.  On a
    cluster (an address given) nodes may still join, so only the in-process Ray is checked.  Ray's
    totals are compared, not what is free now: what other work holds (an engine started beforehand
    and handed to the job, another job) is given back in time, so waiting for it is not hanging."""
    import ray

    from pipeline.config import ConfigError

    if config.ray.address or os.environ.get("RAY_ADDRESS"):
        return
    models = [("policy", config.policy)] + [(f"annotators[{index}].model", entry.model)
                                            for index, entry in enumerate(config.annotators)
                                            if getattr(entry, "model", None) is not None]
    actors = [(key, model) for key, model in models if model.engine == "vllm"]
    need_cpus = sum(model.num_cpus * model.replicas for _, model in actors) + config.ray.shard_cpus
    need_gpus = sum(model.num_gpus * model.replicas for _, model in actors)
    total = ray.cluster_resources()
    have_cpus, have_gpus = total.get("CPU", 0.0), total.get("GPU", 0.0)
    if need_cpus > have_cpus + 1e-9 or need_gpus > have_gpus + 1e-9:
        parts = " + ".join(f"{key}.num_cpus {model.num_cpus:g} x {model.replicas}" for key, model in actors)
        raise ConfigError(
            f"the local Ray has {have_cpus:g} CPUs and {have_gpus:g} GPUs in all; this job needs {need_cpus:g} CPUs "
            f"({parts} + ray.shard_cpus {config.ray.shard_cpus:g}) and {need_gpus:g} GPUs. Lower those settings, "
            f"or raise ray.num_cpus (Ray's CPUs are scheduling slots, not cores)")
