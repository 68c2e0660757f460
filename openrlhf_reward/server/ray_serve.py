"""`openrlhf-reward serve --ray`: the same reward app as replicas on a Ray Serve deployment.

Each replica builds the backend and the app of :func:`openrlhf_reward.server.app.create_app`
itself (same protocol, auth, limits, batching, metrics and ride-through); Serve's HTTP proxy
on every node routes ``POST /get_reward`` to a live replica, replaces a replica that dies,
and adds or removes replicas under load with ``--autoscale MIN:MAX``. The trainer's Ray
cluster is used when one is running (``--ray-address auto``); otherwise a local one starts.

Serve details that shape this module (Ray 2.55):

* The app is passed to ``serve.ingress`` as a *builder function*, evaluated inside each
  replica: a FastAPI app cannot be pickled, and the backend belongs in the replica anyway.
* ``max_ongoing_requests`` is set to the app's ``--max-in-flight``, so Serve's per-replica
  limit (5 by default) does not queue requests in front of the app's own admission.
* Serve needs ``protobuf<7`` (the ``ray`` extra pins it).
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from typing import Any

from openrlhf_reward.server.config import RewardServiceConfig

APP_NAME = "openrlhf-reward"
logger = logging.getLogger("openrlhf_reward.server")


@dataclass
class RayDeployment:
    """How the app is deployed: replicas (fixed or autoscaled), resources, cluster."""

    num_replicas: int = 1
    autoscale: tuple[int, int] | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    address: str = "auto"

    def deployment_options(self, max_in_flight: int, graceful_s: float) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "name": "RewardServer",
            "max_ongoing_requests": max_in_flight,
            "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus},
            # a replica asked to stop (scale-down, redeploy) finishes what it holds first
            "graceful_shutdown_timeout_s": graceful_s,
            "health_check_period_s": 5.0,
            "health_check_timeout_s": 30.0,
        }
        if self.autoscale is not None:
            lo, hi = self.autoscale
            opts["autoscaling_config"] = {
                "min_replicas": lo, "max_replicas": hi, "initial_replicas": lo,
                # scale out while each replica has more than a few batches' worth in flight
                "target_ongoing_requests": max(2, max_in_flight // 4),
            }
        else:
            opts["num_replicas"] = self.num_replicas
        return opts


def parse_autoscale(text: str) -> tuple[int, int]:
    """``"MIN:MAX"`` -> (MIN, MAX), 1 <= MIN <= MAX."""
    lo, sep, hi = text.partition(":")
    try:
        lo_i, hi_i = int(lo), int(hi)
    except ValueError:
        lo_i = hi_i = -1
    if not sep or not 1 <= lo_i <= hi_i:
        raise ValueError(f"--autoscale must be MIN:MAX with 1 <= MIN <= MAX, got {text!r}")
    return lo_i, hi_i


def build_application(cfg: RewardServiceConfig, deployment: RayDeployment) -> Any:
    """The bound Serve application: one deployment whose replicas each run the reward app."""
    from ray import serve

    def build_app() -> Any:  # runs inside each replica
        from openrlhf_reward.server.app import create_app
        from openrlhf_reward.server.config import build_scorer

        logging.getLogger("openrlhf_reward").setLevel(cfg.server.log_level.upper())
        return create_app(build_scorer(cfg.backend, cfg.backend_args), cfg.server, cfg.backend)

    class RewardServer:
        async def check_health(self) -> None:
            # Serve replaces a replica whose batcher thread died; a failing *backend* is not
            # the replica's fault (a new replica would fail the same way): ride-through handles it.
            app = self._asgi_app  # set by Serve's ASGI wrapper
            if not app.state.batcher.alive:
                raise RuntimeError("the reward batcher thread has stopped")

    cls = serve.deployment(**deployment.deployment_options(cfg.server.max_in_flight, cfg.server.graceful_shutdown_s))(
        serve.ingress(build_app)(RewardServer))
    return cls.bind()


def _connect(address: str) -> bool:
    """Join the running cluster at ``address`` or start a local one; True when we started it."""
    import ray

    if address not in ("", "local"):
        try:
            ray.init(address=address)
            return False
        except ConnectionError:
            if address != "auto":
                raise
        logger.info("no running Ray cluster found; starting a local one")
    ray.init(include_dashboard=False)  # Serve's Python API needs no dashboard; it only costs start-up time
    return True


def run(cfg: RewardServiceConfig, deployment: RayDeployment, stop: threading.Event | None = None) -> int:
    """Deploy, print the URL, and serve until SIGTERM/SIGINT (or ``stop``); then clean up."""
    import ray
    from ray import serve

    server = cfg.server
    stop = stop or threading.Event()
    started_cluster = _connect(deployment.address)
    if threading.current_thread() is threading.main_thread():  # after ray.init, which sets its own
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(proxy_location="EveryNode",
                    http_options={"host": server.host, "port": server.port,
                                  "keep_alive_timeout_s": 5})
        app = build_application(cfg, deployment)
        serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
        replicas = (f"{deployment.autoscale[0]}-{deployment.autoscale[1]} replicas (autoscaled)"
                    if deployment.autoscale else f"{deployment.num_replicas} replica(s)")
        logger.info("serving backend %r on Ray Serve: %s, %g CPU / %g GPU each, at http://%s:%d/get_reward "
                    "(on every node of the cluster)", cfg.backend, replicas, deployment.num_cpus,
                    deployment.num_gpus, server.host, server.port)
        while not stop.wait(1.0):
            pass
        logger.info("stopping: deleting the Serve application (replicas finish what they hold)")
    finally:
        try:
            serve.delete(APP_NAME, _blocking=True)
        except Exception as e:  # the cluster may already be gone
            logger.warning("could not delete the Serve application: %s", e)
        if started_cluster:
            try:
                serve.shutdown()
            finally:
                ray.shutdown()
        else:
            ray.shutdown()  # disconnect; the trainer's cluster keeps running
    return 0

