"""A fault-injecting TCP proxy (asyncio) for a judge endpoint: pass, down, blackhole, slow.

    proxy = FaultProxy(("127.0.0.1", 8000)); await proxy.start()   # listens on proxy.port
    await proxy.set_mode("down")        # connection refused; open connections are reset
    await proxy.set_mode("blackhole")   # accepts, reads, never answers
    await proxy.set_mode("slow", SlowSpec(tail_p=0.02, tail_s=(50, 70)))
    await proxy.set_mode("pass")

It works at the TCP level, so it sits in front of any OpenAI-compatible server (the scripted
test double or a real vLLM). "slow" delays the first chunk of each response (the first bytes
from upstream after the client sent a request): HTTP/1.1 without pipelining, as the OpenAI
client speaks it, gets one delay per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field

MODES = ("pass", "down", "blackhole", "slow")


@dataclass
class SlowSpec:
    """Per response: ``base_s``, or with probability ``tail_p`` a delay uniform in ``tail_s``."""

    base_s: float = 0.0
    tail_p: float = 0.02
    tail_s: tuple[float, float] = (50.0, 70.0)


@dataclass
class ProxyStats:
    connections: int = 0
    blackholed_connections: int = 0
    reset_connections: int = 0
    upstream_refused: int = 0
    delays_s: list[float] = field(default_factory=list)


class FaultProxy:
    def __init__(self, upstream: tuple[str, int], host: str = "127.0.0.1", port: int = 0, seed: int = 0) -> None:
        self.upstream = upstream
        self.host = host
        self.port = port
        self.mode = "pass"
        self.slow = SlowSpec()
        self.stats = ProxyStats()
        self._rng = random.Random(seed)
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]  # keep the port across down/up

    async def set_mode(self, mode: str, slow: SlowSpec | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} not in {MODES}")
        if slow is not None:
            self.slow = slow
        was_down, self.mode = self.mode == "down", mode
        if mode == "down" and not was_down:
            # Close the listening socket (new connections: refused) and reset open ones, as a
            # judge process that died would.
            if self._server is not None:
                self._server.close()
                self._server = None
            for w in list(self._writers):
                self.stats.reset_connections += 1
                w.transport.abort()
        elif was_down and mode != "down":
            await self.start()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()
        for t in list(self._tasks):
            t.cancel()

    def _delay(self) -> float:
        s = self.slow
        return self._rng.uniform(*s.tail_s) if self._rng.random() < s.tail_p else s.base_s

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        self.stats.connections += 1
        try:
            if self.mode == "blackhole":
                self.stats.blackholed_connections += 1
                while await reader.read(65536):  # swallow the request, never answer
                    pass
                return
            try:
                up_r, up_w = await asyncio.open_connection(*self.upstream)
            except OSError:
                self.stats.upstream_refused += 1
                writer.transport.abort()
                return
            self._writers.add(up_w)
            awaiting = [False]  # a request went up and its response has not started yet
            try:
                await asyncio.gather(self._pump(reader, up_w, awaiting, upward=True),
                                     self._pump(up_r, writer, awaiting, upward=False))
            finally:
                self._writers.discard(up_w)
                up_w.transport.abort()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()
            if task is not None:
                self._tasks.discard(task)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, awaiting: list[bool],
                    upward: bool) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await src.read(65536):
                if self.mode == "blackhole":
                    continue  # an open connection goes silent too
                if upward:
                    awaiting[0] = True
                elif awaiting[0]:
                    awaiting[0] = False
                    if self.mode == "slow":
                        d = self._delay()
                        self.stats.delays_s.append(d)
                        if d:
                            await asyncio.sleep(d)
                dst.write(data)
                await dst.drain()
            if dst.can_write_eof():
                dst.write_eof()
