"""Ray start-up for a sweep: join a cluster, or start a single-machine Ray that listens on loopback only."""

from __future__ import annotations

import os

import ray

from sweeps.ray_private import keep_ray_on_loopback, skip_uv_worker_hook


def start_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Join the cluster at `address` (or RAY_ADDRESS), else start a local Ray bound to loopback. Returns whether
    this call connected (and so should `ray.shutdown()`: that stops a local Ray, and only disconnects from a
    cluster)."""
    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        return True
    # Ray's switch for a single-machine Ray (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, the default on Windows and
    # macOS) keeps 127.0.0.1 as the node address, so GCS, raylet and workers listen there, not on every
    # interface; without it Ray swaps 127.0.0.1 for this machine's network address. To listen wider, start a
    # cluster yourself (`ray start --head`) and pass --address.
    keep_ray_on_loopback()
    # Ray's uv hook: a driver started by `uv run` makes every worker `uv run` too, after packaging the working
    # folder (8-12 s at start-up on 2 cores, and again per worker). A local Ray's workers are this machine's
    # processes in the driver's own environment, so the hook buys nothing here; on a cluster it stays as Ray sets
    # it (nodes get the driver's code and lock that way). RAY_ENABLE_UV_RUN_RUNTIME_ENV=1 keeps it locally too.
    if os.environ.get("RAY_ENABLE_UV_RUN_RUNTIME_ENV") is None:
        skip_uv_worker_hook()
    ray.init(
        address="local",  # a Ray of its own: without it ray.init joins a Ray already running here (another sweep's)
        num_cpus=num_cpus or os.cpu_count(),
        include_dashboard=False,
        logging_level="ERROR",
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
        # Ray starts a worker per CPU at once, for tasks; Tune's trials are actors with a runtime environment of
        # their own (Tune's env_vars) that never run on those: they would only take CPU from the start-up
        _system_config={"enable_worker_prestart": False, "prestart_worker_first_driver": False},
    )
    return True
