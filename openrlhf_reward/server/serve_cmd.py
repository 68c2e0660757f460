"""`openrlhf-reward serve`: the reward server for OpenRLHF's ``--reward.remote_url``."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
import sys

from openrlhf_reward.server.config import (
    API_KEY_ENV,
    ConfigError,
    add_server_flags,
    build_scorer,
    resolve_config,
    server_overrides_from_args,
)

HELP = "Serve a reward backend over HTTP with OpenRLHF's remote reward protocol (POST /get_reward)."

EPILOG = f"""\
examples:
  openrlhf-reward serve --backend rules
  openrlhf-reward serve --backend bt --model /ckpt/rm --host 127.0.0.1 --port 5000
  openrlhf-reward serve --config reward.yaml --max-batch-size 128
  openrlhf-reward serve --ray --num-replicas 8 --num-gpus 1 --backend bt --model /ckpt/rm --host 0.0.0.0
then train with: --reward.remote_url http://127.0.0.1:5000/get_reward --data.label_key label
With an API key (--api-key or ${API_KEY_ENV}), OpenRLHF's client authenticates through the
URL: http://127.0.0.1:5000/get_reward?api_key=KEY
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--backend", help="reward backend name (rules, bt, per-requirement, classifier, judge, ensemble, remote) or package.module:Class")
    parser.add_argument("--model", help="model path or name for model backends (sets the backend's model argument)")
    parser.add_argument("--config", help="YAML or JSON file with backend, backend_args and server sections; flags override it")
    parser.add_argument("--backend-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="a backend argument (value read as JSON when it is JSON); repeatable")
    ray = parser.add_argument_group("Ray Serve (replicas behind one URL per node; needs the 'ray' extra)")
    ray.add_argument("--ray", action="store_true",
                     help="deploy on Ray Serve instead of one process: Serve's proxy on --host/--port routes "
                          "to live replicas and replaces dead ones")
    ray.add_argument("--num-replicas", type=int, default=1, help="replicas (default 1)")
    ray.add_argument("--autoscale", metavar="MIN:MAX", help="autoscale between MIN and MAX replicas on load")
    ray.add_argument("--ray-address", default="auto",
                     help="Ray cluster to join (default auto: the running one, else a new local one; local: always a new one)")
    ray.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per replica (fractions allowed; default 1)")
    ray.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per replica (fractions allowed; default 0)")
    add_server_flags(parser)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    try:
        cfg = resolve_config(
            args.config, backend=args.backend, model=args.model, backend_args=args.backend_arg,
            server_overrides=server_overrides_from_args(args),
        )
        api_key = cfg.server.resolved_api_key()  # refuses an empty $OPENRLHF_REWARD_API_KEY
    except ConfigError as e:
        print(f"openrlhf-reward serve: error: {e}", file=sys.stderr)
        return 2
    server = cfg.server
    logging.basicConfig(level=server.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("openrlhf_reward.server")
    if not _is_loopback(server.host) and not api_key:
        log.warning("binding %s without an API key: anyone who can reach this port can use the server", server.host)

    if args.ray:
        return _run_ray(args, cfg)
    _raise_open_file_limit()
    sockets = None
    if server.reuse_port:  # bound before the backend loads: a taken port fails in a second, not after minutes
        try:
            sockets = [_shared_socket(server)]
        except OSError as e:
            print(f"openrlhf-reward serve: error: cannot share {server.host}:{server.port} (--reuse-port): {e}",
                  file=sys.stderr)
            return 2
    log.info("loading backend %r", cfg.backend)
    try:
        scorer = build_scorer(cfg.backend, cfg.backend_args)
    except ConfigError as e:
        print(f"openrlhf-reward serve: error: {e}", file=sys.stderr)
        return 2

    import uvicorn

    from openrlhf_reward.server.app import create_app
    from openrlhf_reward.server.http_protocol import uvicorn_config

    app = create_app(scorer, server, cfg.backend)
    log.info(
        "serving backend %r on http://%s:%d/get_reward (max batch %d, max wait %.1f ms, auth %s)",
        cfg.backend, server.host, server.port, server.max_batch_size,
        server.effective_max_wait_ms(cfg.backend),
        "on" if api_key else "off",
    )
    uvicorn.Server(uvicorn_config(app, server)).run(sockets=sockets)
    return 0


def _shared_socket(server) -> socket.socket:
    """A listening address another server may bind too (SO_REUSEPORT): the kernel spreads new
    connections over both until the old one stops listening, so a rolling restart (new up,
    then SIGTERM old) refuses none."""
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((server.host, server.port))
    sock.set_inheritable(True)
    return sock


def _raise_open_file_limit() -> None:
    """One file descriptor per connection: a burst of thousands of one-sample requests (plus
    idle clients) must not hit a low soft limit, so raise it to the hard limit."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
    except (ImportError, ValueError, OSError):  # not on this platform, or not allowed: keep the limit
        pass


def _run_ray(args: argparse.Namespace, cfg) -> int:
    from openrlhf_reward.server import ray_serve

    try:
        from ray import serve  # noqa: F401
    except ImportError as e:
        print(f"openrlhf-reward serve: error: --ray needs Ray Serve: pip install 'weval-wrl[ray]' ({e})",
              file=sys.stderr)
        return 2
    try:
        autoscale = ray_serve.parse_autoscale(args.autoscale) if args.autoscale else None
        if args.num_replicas < 1 or args.num_cpus < 0 or args.num_gpus < 0:
            raise ValueError("--num-replicas must be >= 1 and --num-cpus / --num-gpus >= 0")
    except ValueError as e:
        print(f"openrlhf-reward serve: error: {e}", file=sys.stderr)
        return 2
    deployment = ray_serve.RayDeployment(num_replicas=args.num_replicas, autoscale=autoscale,
                                         num_cpus=args.num_cpus, num_gpus=args.num_gpus, address=args.ray_address)
    return ray_serve.run(cfg, deployment)
