"""Ride-through: requests held while the backend is unreachable or every slot is busy, then
answered; a backend down past the budget declared down; a drain on SIGTERM; OpenRLHF's own
client riding through an outage longer than its five tries."""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import threading
import time

import httpx
import pytest
from server_utils import GateScorer, ServerThread, start_cli_server, stop, wait_healthy

from openrlhf_reward.scorers import ScoreResult
from openrlhf_reward.scorers.base import Scorer
from openrlhf_reward.server.batcher import DynamicBatcher, RideThroughExpired
from openrlhf_reward.server.breaker import CircuitBreaker

BODY = {"query": ["p x"], "prompts": ["p "]}


class Outage(Scorer):
    """Test double: refuses connections while ``down`` is set, else reward 1; records batch sizes."""

    name = "outage"
    needs_requirements = False

    def __init__(self, down: bool = False) -> None:
        self.down = threading.Event()
        if down:
            self.down.set()
        self.calls: list[tuple[int, bool]] = []  # (batch size, was down)

    def score(self, batch):
        down = self.down.is_set()
        self.calls.append((len(batch), down))
        if down:
            raise ConnectionRefusedError("judge endpoint refused the connection")
        return [ScoreResult(1.0) for _ in batch]


@pytest.fixture(scope="module")
def openrlhf_agent():
    from openrlhf_stubs import use_openrlhf_stubs

    if not use_openrlhf_stubs():
        pytest.skip("openrlhf is not installed")
    return pytest.importorskip("openrlhf.utils.agent")


def _batcher(scorer: Scorer, ride_through_s: float) -> DynamicBatcher:
    breaker = CircuitBreaker(threshold=3, cooldown_s=0.05, max_cooldown_s=0.2, down_after_s=ride_through_s)
    return DynamicBatcher(scorer.score, max_batch_size=8, max_wait_ms=1, breaker=breaker,
                          ride_through_s=ride_through_s)


# --------------------------------------------------------------------------- the batcher


def test_samples_are_held_through_an_outage_and_answered_when_it_ends():
    scorer = Outage(down=True)
    b = _batcher(scorer, ride_through_s=60)
    futures = b.submit_many(list(range(20)))
    deadline = time.monotonic() + 60
    while b.held()[0] < 20:  # all twenty wait for the backend
        assert time.monotonic() < deadline
        time.sleep(0.01)
    while sum(1 for _, down in scorer.calls if down) < 4:  # a few probes fail
        assert time.monotonic() < deadline
        time.sleep(0.01)
    scorer.down.clear()
    assert [f.result(60).reward for f in futures] == [1.0] * 20
    b.close()
    failed = [size for size, down in scorer.calls if down]
    assert failed[0] == 8 and set(failed[1:]) == {1}  # after the first failure only one-sample probes
    assert b.counts["samples_held"] == 20 and b.counts["samples_rode_through"] == 20 and b.counts["samples_expired"] == 0
    assert not b.breaker.down and b.breaker.state == "closed"


def test_past_the_budget_samples_fail_and_the_backend_is_declared_down_then_probed_back():
    scorer = Outage(down=True)
    b = _batcher(scorer, ride_through_s=0.5)
    futures = b.submit_many(list(range(3)))
    for f in futures:
        with pytest.raises(RideThroughExpired, match="ride-through"):
            f.result(60)
    deadline = time.monotonic() + 60
    while not b.breaker.down:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert b.counts["samples_expired"] == 3
    # nobody waits, yet the backend is still probed (with the last failed sample)
    probes = len(scorer.calls)
    while len(scorer.calls) < probes + 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    scorer.down.clear()
    while b.breaker.down or b.breaker.state != "closed":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert b.submit(7).result(60).reward == 1.0
    b.close()


def test_a_sample_whose_caller_gave_up_is_dropped_while_held():
    scorer = Outage(down=True)
    b = _batcher(scorer, ride_through_s=60)
    kept, dropped = b.submit_many([1, 2])
    deadline = time.monotonic() + 60
    while b.held()[0] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert dropped.cancel()  # held samples stay cancellable: nothing runs them meanwhile
    scorer.down.clear()
    assert kept.result(60).reward == 1.0
    b.close()
    assert b.counts["samples_rode_through"] == 1


def test_without_ride_through_an_unreachable_backend_fails_at_once():
    scorer = Outage(down=True)
    b = _batcher(scorer, ride_through_s=0)
    with pytest.raises(ConnectionRefusedError):
        b.submit(1).result(60)
    b.close()


# --------------------------------------------------------------------------- the server


@pytest.mark.slow
def test_requests_beyond_max_in_flight_wait_for_a_slot_and_all_get_answers():
    scorer = GateScorer()
    with ServerThread(scorer, "gate", require_requirements=False, max_in_flight=2, ride_through_s=120) as srv:
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(httpx.post, srv.url + "/get_reward", json=BODY, timeout=120) for _ in range(6)]
            assert scorer.entered.wait(60)
            deadline = time.monotonic() + 60
            while (h := httpx.get(srv.url + "/health", timeout=60).json())["held_for_slot"] < 4:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert h["in_flight"] == 2 and h["held"] >= 4 and h["held_oldest_s"] >= 0
            scorer.release.set()
            assert [f.result().status_code for f in futures] == [200] * 6
        m = httpx.get(srv.url + "/metrics", timeout=60).json()
        assert m["ride_through"]["rode_through"] >= 4 and m["requests"]["refused_busy"] == 0


@pytest.mark.slow
def test_a_backend_down_past_the_budget_is_declared_down_with_the_reason():
    scorer = Outage(down=True)
    with ServerThread(scorer, "outage", ride_through_s=1.0, breaker_cooldown_s=0.1,
                      breaker_max_cooldown_s=0.2) as srv:
        r = httpx.post(srv.url + "/get_reward", json=BODY, timeout=60)  # held for the budget, then 503
        assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1
        assert "ride-through" in r.json()["error"] and "refused the connection" in r.json()["error"]
        deadline = time.monotonic() + 60
        while not (h := httpx.get(srv.url + "/health", timeout=60).json())["backend_down"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert h["status"] == "degraded" and "down" in h["reason"]
        calls = len(scorer.calls)
        held_before = srv.app.state.batcher.counts["samples_held"]
        r = httpx.post(srv.url + "/get_reward", json=BODY, timeout=60)
        assert r.status_code == 503 and "is down" in r.json()["error"] and "refused the connection" in r.json()["error"]
        assert srv.app.state.batcher.counts["samples_held"] == held_before  # refused at once, never held
        scorer.down.clear()  # it comes back: the probes notice, and requests flow again
        while httpx.get(srv.url + "/health", timeout=60).json()["backend_down"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert len(scorer.calls) > calls
        assert httpx.post(srv.url + "/get_reward", json=BODY, timeout=60).status_code == 200
        m = httpx.get(srv.url + "/metrics", timeout=60).json()
        assert m["requests"]["refused_backend_down"] >= 1 and m["ride_through"]["expired"] >= 1


@pytest.mark.slow
@pytest.mark.openrlhf
def test_openrlhf_client_rides_through_an_outage_longer_than_its_five_tries(openrlhf_agent):
    """OpenRLHF's client tries 5 times, 1 s apart; an outage of 8 s costs it nothing now."""
    scorer = Outage(down=True)
    with ServerThread(scorer, "outage", ride_through_s=120, breaker_cooldown_s=0.2,
                      breaker_max_cooldown_s=1.0) as srv:
        executor = openrlhf_agent.SingleTurnAgentExecutor(remote_rm_url=srv.url + "/get_reward")

        async def samples(n: int) -> list:
            return await asyncio.gather(*(executor._fetch_rewards_via_http([f"p {i}"], ["p "], [None])
                                          for i in range(n)), return_exceptions=True)

        threading.Timer(8.0, scorer.down.clear).start()
        results = asyncio.run(samples(16))
        assert [r[0]["rewards"] if isinstance(r, list) else repr(r) for r in results] == [[1.0]] * 16
        m = httpx.get(srv.url + "/metrics", timeout=60).json()
        assert m["ride_through"]["rode_through"] == 16 and m["requests"]["by_status"] == {"200": 16}
        # every sample waited out the outage (held, probes failed meanwhile), none needed a second try
        assert m["ride_through"]["samples_held"] == 16 and m["ride_through"]["samples_rode_through"] == 16
        assert sum(1 for _, down in scorer.calls if down) >= 2


@pytest.mark.slow
def test_sigterm_drains_requests_in_flight_then_exits(tmp_path):
    """SIGTERM: the server stops accepting, answers what it holds, then exits."""
    from scripted_openai_server import ScriptedServer

    with ScriptedServer(latency=3.0) as judge:
        proc = start_cli_server(["--backend", "judge", "--backend-arg", f"base_url={judge.base_url}",
                                 "--backend-arg", "model=scripted-teacher", "--port", str(port := _free_port())])
        try:
            wait_healthy(f"http://127.0.0.1:{port}/health", proc, timeout=300)
            body = {"query": ["p Hello there."], "prompts": ["p "],
                    "labels": [{"requirements": [{"id": "c1", "type": "style", "text": "Be brief.", "check": None}]}]}
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                futures = [pool.submit(httpx.post, f"http://127.0.0.1:{port}/get_reward", json=body, timeout=120)
                           for _ in range(4)]
                deadline = time.monotonic() + 60
                # scoring has started and all four are admitted or answered (a request still
                # connecting when SIGTERM lands is refused, rightly)
                while not (judge.requests and sum(f.done() for f in futures) + httpx.get(
                        f"http://127.0.0.1:{port}/health", timeout=30).json()["in_flight"] == 4):
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
                proc.terminate()
                answers = [f.result() for f in futures]
            assert [a.status_code for a in answers] == [200] * 4
            # uvicorn re-raises the signal once it has shut down: the usual status of a SIGTERMed process
            assert proc.wait(120) == -signal.SIGTERM
        finally:
            out = stop(proc)
        assert "Application shutdown complete" in out


def _free_port() -> int:
    from server_utils import free_port

    return free_port()


class SharedOutage(Outage):
    """``Outage`` whose switch is shared by every instance (the reward_func file builds its own)."""

    switch = threading.Event()

    def __init__(self) -> None:
        super().__init__()
        self.down = SharedOutage.switch


@pytest.mark.slow  # the reward_func file returns torch tensors: importing torch takes seconds
def test_reward_func_file_rides_through_an_outage(tmp_path):
    from openrlhf_reward import reward_func

    config = tmp_path / "reward.yaml"
    config.write_text(f"backend: {__name__}:SharedOutage\n"
                      "server: {ride_through_s: 60, breaker_cooldown_s: 0.05, breaker_max_cooldown_s: 0.2}\n")
    SharedOutage.switch.set()
    reward_func.configure(str(config))
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:  # OpenRLHF calls it from worker threads
            futures = [pool.submit(reward_func.reward_func, [f"p {i}"], ["p "], None) for i in range(4)]
            deadline = time.monotonic() + 60
            while reward_func._get_service().batcher.held()[0] < 4:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            SharedOutage.switch.clear()
            assert [f.result(60)["rewards"].tolist() for f in futures] == [[1.0]] * 4
        assert reward_func._get_service().batcher.counts["samples_rode_through"] == 4
    finally:
        reward_func.reset()


@pytest.mark.slow
@pytest.mark.openrlhf
def test_rolling_restart_with_reuse_port_loses_no_sample(openrlhf_agent):
    """--reuse-port: start the new server on the same port, then SIGTERM the old one."""
    port = _free_port()
    args = ["--backend", "rules", "--port", str(port), "--reuse-port"]
    old = start_cli_server(args)
    new = None
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url + "/health", old, timeout=300)
        executor = openrlhf_agent.SingleTurnAgentExecutor(remote_rm_url=url + "/get_reward")
        req = {"id": "c1", "type": "style", "text": "Lowercase.", "check": {"kind": "lowercase"}}
        switched = threading.Event()

        async def stream() -> list:
            async def one(i: int):
                return await executor._fetch_rewards_via_http([f"P: hello {i}"], ["P: "], [{"requirements": [req]}])

            tasks, i = [], 0
            while not switched.is_set() or i < 40:  # a steady trickle through the whole restart
                tasks.append(asyncio.create_task(one(i)))
                i += 1
                await asyncio.sleep(0.05)
            tasks += [asyncio.create_task(one(i + k)) for k in range(20)]
            return await asyncio.gather(*tasks, return_exceptions=True)

        def restart() -> None:
            nonlocal new
            try:
                new = start_cli_server(args)
                for line in new.stdout:  # up once its lifespan has run
                    if "Application startup complete" in line:
                        break
                old.terminate()
                old.wait(120)
            finally:  # a failed restart ends the trickle too: the asserts below then say so
                switched.set()

        t = threading.Thread(target=restart)
        t.start()
        results = asyncio.run(stream())
        t.join(300)
        assert new is not None and new.poll() is None and old.returncode == -signal.SIGTERM
        lost = [r for r in results if not isinstance(r, list)]
        assert lost == [] and all(r[0]["rewards"] == [1.0] for r in results)
        assert httpx.get(url + "/health", timeout=60).json()["status"] == "ok"  # the new one serves
    finally:
        stop(old)
        if new is not None:
            stop(new)
