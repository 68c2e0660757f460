"""`openrlhf-reward serve`: the reward server for OpenRLHF's ``--reward.remote_url``."""

from __future__ import annotations

import argparse
import ipaddress
import logging
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
        cfg.server.resolved_api_key()  # refuses an empty --api-key or $OPENRLHF_REWARD_API_KEY
    except ConfigError as e:
        print(f"openrlhf-reward serve: error: {e}", file=sys.stderr)
        return 2
    server = cfg.server
    logging.basicConfig(level=server.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("openrlhf_reward.server")
    if not _is_loopback(server.host) and not server.resolved_api_key():
        log.warning("binding %s without an API key: anyone who can reach this port can use the server", server.host)

    log.info("loading backend %r", cfg.backend)
    try:
        scorer = build_scorer(cfg.backend, cfg.backend_args)
    except ConfigError as e:
        print(f"openrlhf-reward serve: error: {e}", file=sys.stderr)
        return 2

    import uvicorn

    from openrlhf_reward.server.app import create_app

    app = create_app(scorer, server, cfg.backend)
    log.info(
        "serving backend %r on http://%s:%d/get_reward (max batch %d, max wait %.1f ms, auth %s)",
        cfg.backend, server.host, server.port, server.max_batch_size,
        server.effective_max_wait_ms(cfg.backend),
        "on" if server.resolved_api_key() else "off",
    )
    uvicorn.run(app, host=server.host, port=server.port, log_level=server.log_level,
                access_log=server.access_log)
    return 0
