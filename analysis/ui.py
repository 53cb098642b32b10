"""Links into the MLflow UI that open where a user means to go, and the UI itself on loopback for a local store.

MLflow 3.17's UI opens an experiment on its GenAI "Overview" page (traces) in a fresh browser, whatever the
experiment's tags say; the URL parameter `workflowType=machine_learning` opens the training runs instead."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

FRONT_FILTER = 'tags.pareto_front = "true"'
DEFAULT_PORT = 5000
# MLflow's server jobs (GenAI evaluation and prompt optimisation; samat uses none) start 8 worker processes, each
# importing MLflow: 35 CPU-s on 2 cores, and the UI answered 3-4 s later for them
NO_JOB_WORKERS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def ui_base(tracking_uri: str, port: int = DEFAULT_PORT) -> str:
    """Where the UI for this store is served: the tracking server itself, or `samat frontier ui` on loopback."""
    return tracking_uri.rstrip("/") if tracking_uri.startswith(("http://", "https://")) else f"http://127.0.0.1:{port}"


def runs_page(base: str, experiment_id: str, search_filter: str = FRONT_FILTER) -> str:
    """The experiment's training-runs table, filtered (default: the Pareto front)."""
    query = urllib.parse.urlencode(
        {"workflowType": "machine_learning", "searchFilter": search_filter}, quote_via=urllib.parse.quote
    )
    return f"{base}/#/experiments/{experiment_id}/runs?{query}"


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def start_ui(
    tracking_uri: str, artifacts_uri: str | None, port: int = DEFAULT_PORT, timeout_s: float = 120
) -> subprocess.Popen:
    """`mlflow ui` on 127.0.0.1 for a local store, returned once it answers HTTP (6-7 s on 2 idle cores)."""
    if not port_free(port):
        raise RuntimeError(f"port {port} on 127.0.0.1 is in use (choose another with --port)")
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        tracking_uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        # one user's local UI: one worker answers it; MLflow's default four each import MLflow (11 CPU-s more on
        # 2 cores, and the first answer 2-4 s later)
        "--workers",
        "1",
    ]
    if artifacts_uri:
        command += ["--default-artifact-root", artifacts_uri]
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - lives as long as the server; not a pipe: a chatty server must never block on a full one
    # its own process group: `mlflow ui` starts uvicorn and its workers, and stop_ui ends them all
    server = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, **NO_JOB_WORKERS},
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            last = (log.read().strip().splitlines() or ["no output"])[-1]
            stop_ui(server)
            raise RuntimeError(f"mlflow ui exited ({server.returncode}): {last}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return server
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    stop_ui(server)
    raise RuntimeError(f"mlflow ui did not answer on 127.0.0.1:{port} within {timeout_s:.0f} s")


def stop_ui(server: subprocess.Popen) -> None:
    """End the UI and every process it started."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
