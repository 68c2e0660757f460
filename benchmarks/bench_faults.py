"""Fault harness: does a GRPO run survive the reward server's faults? (issue 17, item 4)

    python -m benchmarks.bench_faults                      # all scenarios, this tree
    python -m benchmarks.bench_faults --quick              # short smoke version
    python -m benchmarks.bench_faults --server-pythonpath /work/wt-base --json /tmp/before.json
    python -m benchmarks.bench_faults --only judge-down-60s --only burst-2000
    python -m benchmarks.bench_faults --ray --quick         # every scenario on Ray Serve (2 replicas)
    python -m benchmarks.bench_faults --judge-url http://127.0.0.1:8000/v1 --judge-model Qwen/Qwen3-8B

The server under test runs as a subprocess (``python -m openrlhf_reward.cli serve ...`` with
``PYTHONPATH=--server-pythonpath``), each scenario with a fresh one. It is driven with
OpenRLHF 0.11.2's own client, imported: ``SingleTurnAgentExecutor._fetch_rewards_via_http``,
one sample per POST, 180 s per try, 5 tries 1 s apart, RuntimeError after the fifth failure
(= a lost sample: the training step fails, experience_maker.py raises "reward_model_group is
required when rewards are not precomputed"). Load is GRPO-like: each step is a burst of
``--prompts x --n-samples`` arrivals; a step ends when every sample has a reward or is lost.

The judge backend talks to the scripted OpenAI double (tests/scripted_openai_server.py), or
to ``--judge-url``, through a fault-injecting TCP proxy (benchmarks/fault_proxy.py). Flags
the server lacks (``--ride-through-s``, ``--ray``) are detected from ``serve --help``; Ray
scenarios are n/a for a server without ``--ray``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
LOST_MSG = ("OpenRLHF raises \"reward_model_group is required when rewards are not precomputed\" "
            "(experience_maker.py)")
# Every process the harness starts (and everything they start: Ray's GCS, raylet, replicas)
# inherits this tag, so cleanup kills exactly those and never another engineer's Ray.
RUN_TAG = f"BENCH_FAULTS_RUN={uuid.uuid4().hex[:12]}"

# --- the flaky backend: ``bench_faults:FlakyRules`` (the server imports this file as a
# top-level module; module __getattr__ keeps the rules import out of the harness' import) ---

FLAKY_P = float(os.environ.get("BENCH_FAULTS_FAIL_P", "0.01"))
FLAKY_SEED = int(os.environ.get("BENCH_FAULTS_SEED", "0"))


def _make_flaky() -> type:
    from openrlhf_reward.scorers.rules import RulesScorer

    class FlakyRules(RulesScorer):
        """``rules`` that raises on a scoring call when any of its samples draws < p (seeded):
        a transient failure, p per sample per call."""

        name = "flaky_rules"
        _rng = random.Random(FLAKY_SEED)

        def score(self, batch):  # type: ignore[no-untyped-def]
            if any(self._rng.random() < FLAKY_P for _ in batch):
                raise RuntimeError(f"injected transient failure (p={FLAKY_P} per sample)")
            return super().score(batch)

    FlakyRules.__module__ = __name__
    FlakyRules.__qualname__ = "FlakyRules"
    return FlakyRules


def __getattr__(name: str) -> Any:
    if name == "FlakyRules":
        cls = _make_flaky()
        globals()["FlakyRules"] = cls
        return cls
    raise AttributeError(name)


# --- scenarios ---

@dataclass
class Scenario:
    name: str
    backend: str  # judge | rules | flaky
    fault: str  # none | down | blackhole | slow | flaky | sigterm | rolling | replica-kill | burst
    what: str
    fault_at_s: float = 5.0
    outage_s: float | None = None  # None: for good (down/blackhole)
    duration_s: float | None = None  # keep starting steps until then
    steps: int | None = None  # or run this many steps
    step_size: int | None = None  # samples per step (default prompts x n)
    stop_on_fail: bool = False  # the run ends at its first failed step
    cap_s: float = 900.0  # give up on unanswered samples after this
    ray: bool = False


def scenarios(quick: bool) -> list[Scenario]:
    tail = 10.0 if quick else 20.0
    out = [Scenario(f"judge-down-{o}s", "judge", "down", f"judge endpoint down {o} s mid-run, then back",
                    outage_s=o, duration_s=5 + o + tail)
           for o in ((10,) if quick else (10, 60, 120))]
    out += [
        Scenario("judge-down-forever", "judge", "down", "judge endpoint down for good",
                 stop_on_fail=True, duration_s=900, cap_s=240 if quick else 600),
        Scenario("judge-blackhole", "judge", "blackhole", "judge accepts connections, never answers",
                 stop_on_fail=True, duration_s=900, cap_s=240 if quick else 600),
        Scenario("judge-slow", "judge", "slow", "slow judge: 2 % of calls take 50-70 s (p99 ~ 60 s)",
                 fault_at_s=0.0, steps=1 if quick else 3, cap_s=600),
        Scenario("flaky-1pct", "flaky", "flaky", "backend raises on 1 % of samples (transient, seeded)",
                 steps=5 if quick else 20, cap_s=300),
        Scenario("sigterm-restart", "rules", "sigterm", "SIGTERM mid-run, new server on the same port",
                 fault_at_s=5.0, duration_s=20 if quick else 30, cap_s=300),
        Scenario("rolling-restart", "rules", "rolling",
                 "--reuse-port: a new server on the same port, then SIGTERM the old one",
                 fault_at_s=5.0, duration_s=20 if quick else 30, cap_s=300),
        Scenario("ray-replica-kill", "rules", "replica-kill", "Ray Serve, 2 replicas; SIGKILL one mid-run",
                 fault_at_s=8.0, duration_s=25 if quick else 40, cap_s=300, ray=True),
        Scenario("burst-2000", "rules", "burst", "2,000 samples of one step at once",
                 steps=1, step_size=2000, cap_s=600),
    ]
    return out


# --- samples: valid requests for the backend (labels with requirements) ---

CHATML = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
RULES_REQS = [
    {"id": "c1", "type": "length", "text": "Use exactly two sentences.", "check": {"kind": "sentence_count", "exact": 2}},
    {"id": "c2", "type": "style", "text": "Write in lowercase only.", "check": {"kind": "lowercase"}},
    {"id": "c3", "type": "content", "text": "Mention the sea.", "check": {"kind": "contains_all", "keywords": ["sea"]}},
]
# The judge is asked one yes/no verdict per requirement: two chat calls per sample.
JUDGE_REQS = [
    {"id": "j1", "type": "content", "text": "Mention the sea.", "check": None},
    {"id": "j2", "type": "style", "text": "Write in a calm tone.", "check": None},
]
RESPONSES = ["the sea is calm. the sky is grey.", "The sea is calm.", "birds fly. clouds move. rain falls.",
             "the sea. the shore.", "Nothing here"]


def make_sample(i: int, judge: bool) -> tuple[str, str, dict]:
    """(query, prompt, label) as OpenRLHF sends them; responses differ per sample (no caching)."""
    from openrlhf_reward.schema import Requirement, build_prompt

    reqs = JUDGE_REQS if judge else RULES_REQS
    prompt = CHATML.format(build_prompt(f"Write about the coast (prompt {i // 8}).",
                                        [Requirement.from_dict(r) for r in reqs]))
    response = f"{RESPONSES[i % len(RESPONSES)]} ({i})"
    return prompt + response + "<|im_end|>", prompt, {"requirements": reqs}


# --- processes ---

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_help(pythonpath: str) -> str:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    # cwd elsewhere: ``python -m`` puts the cwd first on sys.path, ahead of PYTHONPATH
    r = subprocess.run([PY, "-m", "openrlhf_reward.cli", "serve", "--help"], env=env, capture_output=True,
                       cwd=tempfile.gettempdir(),
                       text=True, timeout=120)
    return r.stdout + r.stderr


def tagged_pids() -> list[int]:
    """Processes carrying this run's tag in their environment (our servers, their Ray)."""
    key = RUN_TAG.encode()
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            with contextlib.suppress(OSError):
                if key in (d / "environ").read_bytes().split(b"\0"):
                    out.append(int(d.name))
    return out


def proc_name(pid: int) -> str:
    with contextlib.suppress(OSError):
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return ""


def kill_tagged(grace_s: float = 10.0) -> None:
    pids = tagged_pids()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while (pids := tagged_pids()) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not pids:
            return


class ServerProc:
    """``openrlhf-reward serve`` as a subprocess in its own session; logs to a file."""

    def __init__(self, args: list[str], port: int, pythonpath: str, log: Path, ray_tmp: str | None) -> None:
        self.cmd = [PY, "-m", "openrlhf_reward.cli", "serve", *args, "--port", str(port), "--host", "127.0.0.1"]
        self.port = port
        # the flaky backend is this file, imported as the top-level module bench_faults
        self.env = {**os.environ, "PYTHONPATH": f"{pythonpath}:{Path(__file__).parent}",
                    "OPENAI_API_KEY": os.environ.get("OPENAI_API_KEY", "unused"),
                    RUN_TAG.split("=")[0]: RUN_TAG.split("=")[1]}
        if ray_tmp:
            self.env["RAY_TMPDIR"] = ray_tmp  # a cluster of our own, not one already on the machine
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "a") as f:
            f.write(f"\n$ {' '.join(self.cmd)}\n")
            self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=tempfile.gettempdir(), stdout=f,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def wait_healthy(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log}")
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2)
                if r.status_code < 500 and "status" in r.text:  # our server, not whatever holds the port
                    return
            time.sleep(0.3)
        raise RuntimeError(f"server not healthy after {timeout:.0f} s; see {self.log}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


# --- the client side ---

@dataclass
class SampleResult:
    step: int
    latency_s: float
    ok: bool
    lost: bool  # RuntimeError from the client after 5 tries
    error: str = ""


@dataclass
class Observed:
    failed_tries: int = 0
    last_try_error: str = ""
    last_error: dict[str, Any] = field(default_factory=dict)  # the last non-200 answer the client got
    loss_reason: dict[str, Any] = field(default_factory=dict)  # last_error when the last sample was lost
    statuses: dict[str, int] = field(default_factory=dict)  # every try's answer: status or exception
    events: list[str] = field(default_factory=list)
    step_started: asyncio.Event | None = None  # set as each step's arrivals begin


def observe_client(agent: Any, holder: Any) -> None:
    """See every answer OpenRLHF's client gets (status, Retry-After, body) without changing
    its code: its module reads ``aiohttp.ClientSession`` at call time, so give that module a
    namespace whose ClientSession carries a trace config. ``holder.obs`` is the current Observed."""
    import functools
    import types

    import aiohttp

    tc = aiohttp.TraceConfig()

    async def on_end(session: Any, ctx: Any, params: Any) -> None:
        r = params.response
        obs = holder.obs
        obs.statuses[str(r.status)] = obs.statuses.get(str(r.status), 0) + 1
        if r.status >= 400:
            body = (await r.read())[:500].decode(errors="replace")  # cached: the client's own read sees it
            obs.last_error = {"status": r.status, "retry_after": r.headers.get("Retry-After"), "body": body}

    async def on_exc(session: Any, ctx: Any, params: Any) -> None:
        obs = holder.obs
        name = type(params.exception).__name__
        obs.statuses[name] = obs.statuses.get(name, 0) + 1
        obs.last_error = {"status": None, "body": f"{name}: {params.exception}"[:300]}

    tc.on_request_end.append(on_end)
    tc.on_request_exception.append(on_exc)
    ns = types.SimpleNamespace(**{k: getattr(aiohttp, k) for k in dir(aiohttp) if not k.startswith("__")})
    ns.ClientSession = functools.partial(aiohttp.ClientSession, trace_configs=[tc])
    agent.aiohttp = ns


class TryCounter(logging.Handler):
    """OpenRLHF's client logs each failed try at INFO; count them (and keep its stdout quiet)."""

    def __init__(self, obs: Observed) -> None:
        super().__init__(logging.INFO)
        self.obs = obs

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if "error" in msg.lower():
            self.obs.failed_tries += 1
            self.obs.last_try_error = msg[:300]


def load_client() -> Any:
    sys.path.insert(0, str(ROOT / "tests"))
    from openrlhf_stubs import use_openrlhf_stubs  # flash_attn stand-in on a CPU-only machine

    if not use_openrlhf_stubs():
        raise SystemExit("openrlhf is not installed (pip install openrlhf==0.11.2)")
    import openrlhf.utils.agent as agent

    return agent


async def run_steps(sc: Scenario, url: str, agent: Any, step_size: int, step_gap_s: float,
                    obs: Observed, judge: bool, fault: Any) -> tuple[list[SampleResult], int, float, str]:
    """Steps of concurrent one-sample calls through OpenRLHF's client, the fault alongside.

    Returns (results, steps run, wall seconds, note on unanswered samples)."""
    executor = agent.SingleTurnAgentExecutor(remote_rm_url=url)
    results: list[SampleResult] = []
    t_start = time.monotonic()
    fault_task = asyncio.create_task(fault(t_start))
    step, note, idx = 0, "", 0
    try:
        while True:
            elapsed = time.monotonic() - t_start
            if sc.steps is not None and step >= sc.steps:
                break
            if sc.steps is None and elapsed >= (sc.duration_s or 0):
                break
            step += 1
            n = sc.step_size or step_size
            t_step = time.monotonic()
            samples = [make_sample(idx + i, judge) for i in range(n)]
            idx += n
            if obs.step_started is not None:
                obs.step_started.set()

            async def one(q: str, p: str, lab: dict, step_: int = step) -> SampleResult:
                t0 = time.perf_counter()
                try:
                    out = await executor._fetch_rewards_via_http([q], [p], [lab])
                    ok = bool(out) and isinstance(out[0], dict) and out[0].get("rewards") is not None
                    return SampleResult(step_, time.perf_counter() - t0, ok, False, "" if ok else "no rewards")
                except RuntimeError as e:
                    obs.loss_reason = dict(obs.last_error)
                    return SampleResult(step_, time.perf_counter() - t0, False, True, str(e)[:200])

            tasks = [asyncio.create_task(one(*s)) for s in samples]
            remaining = sc.cap_s - (time.monotonic() - t_start)
            done, pending = await asyncio.wait(tasks, timeout=max(1.0, remaining))
            rs = [t.result() for t in done]
            for t in pending:
                t.cancel()
            results += rs
            lost = sum(r.lost for r in rs)
            print(f"  [{sc.name}] step {step}: {n} sent, {sum(r.ok for r in rs)} answered, {lost} lost, "
                  f"{len(pending)} unanswered, {time.monotonic() - t_step:.1f} s "
                  f"(t={time.monotonic() - t_start:.0f} s)", file=sys.stderr, flush=True)
            if pending:
                note = f"step {step} stalled: {len(pending)} samples unanswered after the {sc.cap_s:.0f} s cap"
                results += [SampleResult(step, float("nan"), False, False, "unanswered")] * len(pending)
                break
            if lost and sc.stop_on_fail:
                break
            await asyncio.sleep(step_gap_s)  # the trainer's update between rollouts
    finally:
        fault_task.cancel()
        with contextlib.suppress(BaseException):
            await fault_task
    return results, step, time.monotonic() - t_start, note


# --- one scenario ---

@dataclass
class Row:
    scenario: str
    what: str
    server: str
    sent: int = 0
    answered: int = 0
    lost: int = 0
    unanswered: int = 0
    p50_s: float | None = None
    p99_s: float | None = None
    throughput: float | None = None
    failed_tries: int = 0
    steps: int = 0
    ended: str = ""
    wall_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q / 100 * len(xs) + 0.5) - 1))]


def reason_of(err: dict) -> str:
    body = err.get("body") or ""
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        body = json.loads(body).get("error") or body
    status = err.get("status")
    return f"the client's last answer: {status if status is not None else 'no response'}: {str(body)[:240]}"


def run_scenario(sc: Scenario, args: argparse.Namespace, agent: Any, feats: dict[str, bool], label: str,
                 obs: Observed) -> Row:
    from benchmarks.fault_proxy import FaultProxy, SlowSpec

    row = Row(sc.name, sc.what, label)
    ray = sc.ray or args.ray
    if ray and not feats["ray"]:
        row.ended = "n/a (server has no --ray)"
        return row
    if sc.fault == "rolling" and not feats["reuse"]:
        row.ended = "n/a (server has no --reuse-port)"
        return row
    judge = sc.backend == "judge"
    port = 0  # chosen once the judge double and the proxy are listening (a port of their own)
    log = Path(args.log_dir) / f"{label}-{sc.name}.log"
    log.unlink(missing_ok=True)
    ray_tmp = tempfile.mkdtemp(prefix="bfray", dir="/tmp") if ray else None
    srv_args = ["--log-level", "warning", *args.server_arg]
    if args.quick and feats["ride"]:
        srv_args += ["--ride-through-s", "20"]  # quick: a dead backend is declared down sooner
    if sc.fault == "rolling":
        srv_args += ["--reuse-port"]
    if sc.backend == "flaky":
        srv_args += ["--backend", "bench_faults:FlakyRules"]
    elif sc.backend == "rules":
        srv_args += ["--backend", "rules"]
    if ray:
        # local: a cluster of our own (RAY_TMPDIR below), never another engineer's running one
        srv_args += ["--ray", "--num-replicas", str(args.ray_replicas), "--num-cpus", "0.5", "--ray-address", "local"]
    scripted = None
    server = None

    async def main() -> tuple[list[SampleResult], int, float, str]:
        nonlocal server, port
        proxy = None
        if judge:
            from urllib.parse import urlsplit

            up = urlsplit(args.judge_url) if args.judge_url else urlsplit(scripted.base_url)
            proxy = FaultProxy((up.hostname or "127.0.0.1", up.port or 80), seed=args.seed)
            await proxy.start()
            base = f"http://127.0.0.1:{proxy.port}{up.path or '/v1'}"
            srv_args.extend(["--backend", "judge", "--backend-arg", f"base_url={base}",
                             "--backend-arg", f"model={args.judge_model}"])
            if args.quick:  # quick: a blackholed call fails in seconds, not minutes
                srv_args.extend(["--backend-arg", "timeout=10", "--backend-arg", "max_retries=1",
                                 "--request-timeout-s", "60"])
        port = free_port()
        server = ServerProc(srv_args, port, args.server_pythonpath, log, ray_tmp)
        server.start()
        await asyncio.to_thread(server.wait_healthy, 300 if ray else 120)
        url = f"http://127.0.0.1:{port}/get_reward"

        async def fault(t0: float) -> None:
            nonlocal server

            async def at(t: float) -> None:
                await asyncio.sleep(max(0.0, t0 + t - time.monotonic()))

            async def mid_step() -> None:
                # a process fault lands while a step's samples are in flight, not between steps
                await at(sc.fault_at_s)
                obs.step_started = asyncio.Event()
                await obs.step_started.wait()
                await asyncio.sleep(0.05)

            def event(msg: str) -> None:
                obs.events.append(f"t={time.monotonic() - t0:.1f}s {msg}")
                print(f"  [{sc.name}] {obs.events[-1]}", file=sys.stderr, flush=True)

            if sc.fault in ("down", "blackhole", "slow"):
                await at(sc.fault_at_s)
                await proxy.set_mode(sc.fault, SlowSpec(tail_p=0.02, tail_s=(50.0, 70.0)))
                event(f"judge {sc.fault}")
                if sc.outage_s is not None:
                    await at(sc.fault_at_s + sc.outage_s)
                    await proxy.set_mode("pass")
                    event("judge back")
            elif sc.fault == "sigterm":
                await mid_step()
                os.kill(server.proc.pid, signal.SIGTERM)
                event("SIGTERM sent")
                rc = await asyncio.to_thread(server.proc.wait, 300)
                server.start()  # same port, as soon as the old one has exited
                event(f"old server exited ({rc}); new one started")
                await asyncio.to_thread(server.wait_healthy, 300 if ray else 120)
                event("new server healthy")
            elif sc.fault == "rolling":
                await mid_step()
                old = server
                new = ServerProc(srv_args, port, args.server_pythonpath, log.with_suffix(".new.log"), ray_tmp)
                new.start()
                event("new server started on the shared port")

                def up() -> None:  # the shared port cannot tell the two apart: read the new one's log
                    deadline = time.monotonic() + 120
                    while "Application startup complete" not in new.log.read_text(errors="replace"):
                        if new.proc.poll() is not None or time.monotonic() > deadline:
                            raise RuntimeError(f"new server did not come up; see {new.log}")
                        time.sleep(0.2)

                await asyncio.to_thread(up)
                server = new  # cleanup stops the new one
                os.kill(old.proc.pid, signal.SIGTERM)
                rc = await asyncio.to_thread(old.proc.wait, 300)
                event(f"new server up; old one SIGTERMed and exited ({rc})")
            elif sc.fault == "replica-kill":
                await mid_step()
                reps = [p for p in tagged_pids() if proc_name(p).startswith("ray::ServeReplica")]
                if not reps:
                    event("no ray::ServeReplica process found")
                    return
                name = proc_name(reps[0]).strip()[:60]
                os.kill(reps[0], signal.SIGKILL)
                event(f"SIGKILL {reps[0]} ({name}) of {len(reps)} replicas")

        try:
            return await run_steps(sc, url, agent, args.prompts * args.n_samples, args.step_gap_s, obs, judge,
                                   fault)
        finally:
            if proxy is not None:
                row.details["proxy"] = {k: v for k, v in asdict(proxy.stats).items() if k != "delays_s"}
                ds = proxy.stats.delays_s
                if ds:
                    row.details["proxy"]["injected_delay_p99_s"] = pct(ds, 99)
            with contextlib.suppress(Exception):
                import httpx

                async with httpx.AsyncClient(timeout=5) as c:
                    row.details["health"] = (await c.get(f"http://127.0.0.1:{port}/health")).json()
                    row.details["metrics"] = (await c.get(f"http://127.0.0.1:{port}/metrics")).json()
            if proxy is not None:
                await proxy.close()

    try:
        if judge and not args.judge_url:
            sys.path.insert(0, str(ROOT / "tests"))
            from scripted_openai_server import ScriptedServer

            scripted = ScriptedServer(latency=args.judge_latency_s)
            scripted.httpd.handle_error = lambda *a: None  # broken pipes when the proxy resets: expected
            scripted.__enter__()
        results, steps, wall, note = asyncio.run(main())
    except Exception as e:  # noqa: BLE001 - one broken scenario must not end the table
        row.ended = f"harness error: {type(e).__name__}: {e}"[:300]
        return row
    finally:
        if server is not None:
            server.stop()
        kill_tagged()
        if ray_tmp:
            shutil.rmtree(ray_tmp, ignore_errors=True)  # the Ray session's logs and sockets
        if scripted is not None:
            scripted.__exit__(None, None, None)
    lat = [r.latency_s for r in results if r.ok]
    row.sent = len(results)
    row.answered = len(lat)
    row.lost = sum(r.lost for r in results)
    row.unanswered = sum(r.error == "unanswered" for r in results)
    row.p50_s, row.p99_s = pct(lat, 50), pct(lat, 99)
    row.throughput = len(lat) / wall if wall > 0 else None
    row.failed_tries = obs.failed_tries
    row.steps = steps
    row.wall_s = round(wall, 1)
    row.details.update(events=obs.events, loss_reason=obs.loss_reason, last_error=obs.last_error,
                       client_answers=obs.statuses, last_try_error=obs.last_try_error, log=str(log))
    failed = sorted({r.step for r in results if r.lost})
    if failed:
        k = sum(r.lost for r in results if r.step == failed[0])
        row.ended = (f"step {failed[0]} failed: {k} samples got no reward ({len(failed)} of {steps} steps "
                     f"failed); {LOST_MSG}")
        if obs.loss_reason:
            row.ended += f"; {reason_of(obs.loss_reason)}"
    elif note:
        row.ended = note
    else:
        row.ended = f"completed ({steps} steps)"
    return row


# --- output ---

def fmt(x: float | None, nd: int = 2) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def markdown(rows: list[Row]) -> str:
    head = ("| scenario | server | sent | lost | unanswered | p50 s | p99 s | answered/s | failed tries | "
            "how the run would have ended |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r.scenario} | {r.server} | {r.sent} | {r.lost} | {r.unanswered} | {fmt(r.p50_s)} | "
                     f"{fmt(r.p99_s)} | {fmt(r.throughput, 1)} | {r.failed_tries} | {r.ended.replace('|', '/')} |")
    return "\n".join(lines)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", default=[], metavar="NAME", help="run these scenarios (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ap.add_argument("--quick", action="store_true", help="short outages, fewer samples: a smoke run")
    ap.add_argument("--server-pythonpath", default=str(ROOT), help="source tree of the server under test")
    ap.add_argument("--label", default=None, help="name of the server in the table (default: the path)")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the rows as JSON")
    ap.add_argument("--prompts", type=int, default=None, help="rollout_batch_size (default 16; quick 4)")
    ap.add_argument("--n-samples", type=int, default=None, help="n_samples_per_prompt (default 8)")
    ap.add_argument("--step-gap-s", type=float, default=1.0, help="the trainer's time between rollout steps")
    ap.add_argument("--judge-url", default=None, help="a real OpenAI-compatible judge (default: scripted double)")
    ap.add_argument("--judge-model", default="scripted-teacher")
    ap.add_argument("--judge-latency-s", type=float, default=0.02, help="scripted judge latency per call")
    ap.add_argument("--ray", action="store_true", help="run every scenario against the Ray Serve deployment")
    ap.add_argument("--ray-replicas", type=int, default=2)
    ap.add_argument("--server-arg", action="append", default=[], help="extra serve flag (repeatable; "
                    "use --server-arg=--flag)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-dir", default=None, help="server logs (default: a temp dir)")
    args = ap.parse_args()
    args.prompts = args.prompts or (4 if args.quick else 16)
    args.n_samples = args.n_samples or 8
    args.log_dir = args.log_dir or tempfile.mkdtemp(prefix="bench_faults_")
    Path(args.log_dir).mkdir(parents=True, exist_ok=True)
    all_sc = scenarios(args.quick)
    if args.list:
        for s in all_sc:
            print(f"{s.name:20s} {s.what}")
        return
    unknown = set(args.only) - {s.name for s in all_sc}
    if unknown:
        ap.error(f"unknown scenario(s) {sorted(unknown)}; --list shows them")
    chosen = [s for s in all_sc if not args.only or s.name in args.only]
    label = args.label or args.server_pythonpath
    # SIGTERM to the harness: unwind through the finally blocks (cleanup), like Ctrl-C
    signal.signal(signal.SIGTERM, _interrupt)
    help_text = server_help(args.server_pythonpath)
    feats = {"ride": "--ride-through-s" in help_text, "ray": "--ray" in help_text,
             "reuse": "--reuse-port" in help_text}
    print(f"server {label}: --ride-through-s {'yes' if feats['ride'] else 'no'}, --ray "
          f"{'yes' if feats['ray'] else 'no'}; logs in {args.log_dir}", file=sys.stderr, flush=True)
    agent = load_client()
    logging.getLogger("openrlhf.utils.agent").handlers.clear()
    obs_handler = TryCounter(Observed())
    logging.getLogger("openrlhf.utils.agent").addHandler(obs_handler)
    observe_client(agent, obs_handler)
    rows: list[Row] = []
    try:
        for sc in chosen:
            print(f"== {sc.name}: {sc.what}", file=sys.stderr, flush=True)
            obs_handler.obs = Observed()  # one counter per scenario
            row = run_scenario(sc, args, agent, feats, label, obs_handler.obs)
            rows.append(row)
            print(f"  -> {row.ended}", file=sys.stderr, flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=1, default=str))
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
    finally:
        kill_tagged()
    print(markdown(rows))


if __name__ == "__main__":
    main()
