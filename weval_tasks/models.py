"""lm-eval model types that score WEval candidates with a reward backend.

A WEval task asks for one loglikelihood request per candidate: context = the instruction,
continuation = the candidate response (``target_delimiter: ""``). These models answer with
``(reward, False)``; the task's ``process_results`` ranks candidates by that number. The
document itself arrives on each request (``Instance.doc``), which carries the requirements.

Register these types by importing this module (the ``weval`` CLI does) before lm-eval looks
models up; it imports ``lm_eval.models`` first so the built-in models stay registered.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import lm_eval.models  # noqa: F401  (registers the built-in models before ours)
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from tqdm import tqdm

from openrlhf_reward.scorers import Scorer, ScoreRequest, get_scorer, scorer_class
from weval_tasks.attacks import from_choice
from weval_tasks.docs import document_from_row

logger = logging.getLogger("weval_tasks")


class ScorerLM(LM):
    """An lm-eval model backed by a :class:`~openrlhf_reward.scorers.Scorer`.

    Only ``loglikelihood`` is meaningful (it returns rewards); generation is refused with
    a clear error because a reward model cannot write.
    """

    def __init__(self, scorer: Scorer, batch_size: int | str | None = 64, **_: Any) -> None:
        super().__init__()
        self.scorer = scorer
        try:
            self.score_batch_size = max(1, int(batch_size)) if batch_size not in (None, "auto") else 64
        except ValueError:
            raise ValueError(f"batch_size must be an integer, got {batch_size!r}") from None

    def _request(self, inst) -> ScoreRequest:
        doc = document_from_row(inst.doc)
        response = from_choice(inst.args[1])  # the wevaladv-* empty answer travels as a sentinel
        return ScoreRequest(
            prompt=doc.prompt, response=response, requirements=doc.requirements, query=doc.query
        )

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        items = [self._request(r) for r in requests]
        out: list[tuple[float, bool]] = []
        bar = tqdm(total=len(items), desc=f"scoring ({self.scorer.name})", disable=disable_tqdm)
        for start in range(0, len(items), self.score_batch_size):
            batch: Sequence[ScoreRequest] = items[start : start + self.score_batch_size]
            results = self.scorer.score(batch)
            if len(results) != len(batch):
                raise RuntimeError(
                    f"backend {self.scorer.name!r} returned {len(results)} results for {len(batch)} requests"
                )
            out.extend((float(r.reward), False) for r in results)
            bar.update(len(batch))
        bar.close()
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError(
            f"{type(self).__name__} scores WEval candidates; it has no rolling loglikelihood"
        )

    def generate_until(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError(
            f"{type(self).__name__} is a reward model and cannot generate; use it with the "
            "weval-* tasks (or score with --model hf on the wevaljudge-* tasks)"
        )


@register_model("rules")
class RulesLM(ScorerLM):
    """``--model rules``: deterministic checkers for requirements with a ``check`` spec."""

    def __init__(self, batch_size: int | str | None = 256, **kwargs: Any) -> None:
        # lm-eval passes device/max_batch_size to every model; rules needs neither.
        backend_args = {k: v for k, v in kwargs.items() if k not in ("device", "max_batch_size")}
        super().__init__(get_scorer("rules", **backend_args), batch_size=batch_size)


def _available(device: str) -> str:
    """lm-eval's CLI passes ``cuda:0`` unless told otherwise; on a machine without CUDA fall
    back to the CPU with a warning, as lm-eval's own ``hf`` model does."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            logger.warning("--device %s: CUDA is not available here; the reward model runs on the CPU", device)
            return "cpu"
    return device


@register_model("rm")
class RMLM(ScorerLM):
    """``--model rm``: any registered reward backend, chosen by ``backend=NAME``.

    ``--model_args pretrained=PATH,backend=bt`` (or ``per-requirement``, ``classifier``) for a
    local checkpoint; ``backend=judge,model=NAME,base_url=URL`` for a judge endpoint;
    ``backend=length`` for the response-length baseline. Every other key is passed to the
    backend's config (``dtype``, ``max_length``, ``normalize``, ...). ``pretrained`` becomes the
    backend's ``model`` option. ``--batch_size N`` is the forward batch size; ``--device`` (or
    ``device=`` in model_args) picks the device of backends that have one.
    """

    def __init__(
        self,
        pretrained: str | None = None,
        backend: str = "bt",
        batch_size: int | str | None = None,
        max_batch_size: int | None = None,
        device: str | None = None,
        **kwargs: Any,
    ) -> None:
        if backend == "remote":
            raise ValueError("--model rm: use --model remote-rm url=... for a running reward server")
        cls = scorer_class(backend)  # ValueError listing the registered backends
        options = {f.name for f in fields(cls.config_class)} if hasattr(cls, "config_class") else set()
        config = dict(kwargs)
        if pretrained:
            config["model"] = str(pretrained)
        elif "model" in options and "model" not in config:
            raise ValueError(f"--model rm: backend {backend!r} needs model_args pretrained=PATH (or model=NAME)")
        if device is not None and "device" in options:
            config["device"] = _available(device)
        try:
            forward_bs = int(batch_size) if batch_size not in (None, "auto") else None
        except (TypeError, ValueError):
            forward_bs = None  # "auto:N": keep the backend default
        if forward_bs is not None and "batch_size" in options:
            config["batch_size"] = forward_bs
        scorer = get_scorer(backend, **config)
        # Hand the backend large chunks so it can sort them by length across many candidates.
        chunk = max(64, 16 * int(getattr(scorer.config, "batch_size", 4) or 4))
        super().__init__(scorer, batch_size=chunk)


@register_model("remote-rm")
class RemoteRMLM(ScorerLM):
    """``--model remote-rm``: score through a running reward server, the way OpenRLHF does.

    ``--model_args url=http://HOST:PORT/get_reward[,api_key=KEY][,concurrency=32]`` (also
    ``timeout_s``, ``max_tries``, ``samples_per_request``): one sample per POST with
    ``concurrency`` in flight, so WEval measures exactly the rewards GRPO trains on. Several
    servers: separate URLs with ``|``. The key may also come from $OPENRLHF_REWARD_API_KEY.
    """

    def __init__(
        self,
        url: str | None = None,
        batch_size: int | str | None = None,
        max_batch_size: int | None = None,
        device: str | None = None,
        **kwargs: Any,
    ) -> None:
        if not url:
            raise ValueError("--model remote-rm needs model_args url=http://HOST:PORT/get_reward")
        scorer = get_scorer("remote", url=str(url), **kwargs)
        # Hand the scorer many candidates at a time so `concurrency` requests stay in flight.
        chunk = max(256, 8 * int(scorer.config.concurrency))
        super().__init__(scorer, batch_size=chunk)
