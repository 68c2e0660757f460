"""`openrlhf-reward serve --ray` on a real local Ray cluster (CPU): two replicas of `rules`
behind Serve's proxy, driven by OpenRLHF's own client while one replica is SIGKILLed."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import pytest
from server_utils import free_port, start_cli_server, stop, wait_healthy

pytestmark = [pytest.mark.slow, pytest.mark.openrlhf]

REQ = {"id": "c1", "type": "style", "text": "Write in lowercase only.", "check": {"kind": "lowercase"}}


def _replicas(pid: int) -> list:
    """Serve replica processes started under this server (its local cluster's descendants)."""
    import psutil

    out = []
    for p in psutil.Process(pid).children(recursive=True):
        try:
            if "ServeReplica" in " ".join(p.cmdline()):
                out.append(p)
        except psutil.Error:
            pass
    return out


def _wait(cond, what: str, timeout: float = 300.0):
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
    return value


@pytest.fixture(scope="module")
def openrlhf_agent():
    from openrlhf_stubs import use_openrlhf_stubs

    if not use_openrlhf_stubs():
        pytest.skip("openrlhf is not installed")
    return pytest.importorskip("openrlhf.utils.agent")


def test_a_killed_replica_costs_no_sample_and_is_replaced(openrlhf_agent):
    pytest.importorskip("ray.serve", reason="the 'ray' extra (ray[serve]==2.55.0) is not installed")
    import psutil

    port = free_port()
    proc = start_cli_server(["--ray", "--ray-address", "local", "--num-replicas", "2", "--num-cpus", "0.5",
                             "--backend", "rules", "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url + "/health", proc, timeout=600)
        first = _wait(lambda: len(r := _replicas(proc.pid)) == 2 and r, "two replicas")
        executor = openrlhf_agent.SingleTurnAgentExecutor(remote_rm_url=url + "/get_reward")
        responses = ["all lowercase here.", "Not Lowercase."]

        async def soak(n: int, kill_at: int) -> list:
            async def one(i: int):
                if i == kill_at:
                    os.kill(first[0].pid, signal.SIGKILL)  # mid-soak: samples are in flight on it
                text = responses[i % 2]
                return await executor._fetch_rewards_via_http([f"P: {text}"], ["P: "], [{"requirements": [REQ]}])

            tasks = []
            for i in range(n):  # ~20 samples/s, like a rollout trickling in
                tasks.append(asyncio.create_task(one(i)))
                await asyncio.sleep(0.05)
            return await asyncio.gather(*tasks, return_exceptions=True)

        results = asyncio.run(soak(240, kill_at=60))
        lost = [r for r in results if not isinstance(r, list)]
        assert lost == [], f"{len(lost)} samples lost: {lost[:3]}"
        assert [r[0]["rewards"][0] for r in results] == [1.0 if i % 2 == 0 else 0.0 for i in range(240)]
        assert not first[0].is_running() or first[0].status() == psutil.STATUS_ZOMBIE
        # Serve replaces the dead replica
        _wait(lambda: len(r := _replicas(proc.pid)) == 2 and first[0].pid not in {p.pid for p in r},
              "a replacement replica")
        assert httpx.get(url + "/health", timeout=60).json()["status"] == "ok"
        descendants = proc.pid and psutil.Process(proc.pid).children(recursive=True)
    finally:
        out = stop(proc)
    # SIGTERM stops the local cluster it started: nothing is left behind
    def alive() -> list:
        out_ = []
        for p in descendants:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    out_.append(p)
            except psutil.Error:
                pass
        return out_

    deadline = time.monotonic() + 120  # Ray's daemons take a moment to exit
    while alive() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert alive() == [], f"left running: {[p.name() for p in alive()]}\n{out[-2000:]}"
