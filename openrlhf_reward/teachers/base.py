"""The teacher interface: a chat model that writes requirements and candidate answers.

A teacher turns a batch of conversations (OpenAI chat format: lists of
``{"role": ..., "content": ...}``) into assistant texts. Backends differ in where the model
runs (an OpenAI-compatible endpoint, local transformers, an offline vLLM engine) but share
this interface, so every builder works with any of them.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from openrlhf_reward.config import build_config as _build_config

Messages = list[dict[str, Any]]
SeedArg = int | Sequence[int] | None

__all__ = [
    "BatchTeacher",
    "LocalTeacher",
    "LocalTeacherConfig",
    "Messages",
    "SeedArg",
    "Teacher",
    "TeacherConfig",
    "TeacherError",
    "build_config",
    "local_model_name",
    "option",
    "per_item_seeds",
    "strip_reasoning",
    "validate_batch",
]


class TeacherError(RuntimeError):
    """A teacher request that failed for good (after retries) or a misconfigured teacher."""


# A complete reasoning block, and the case where the chat template opened the block in the
# prompt so the output holds only its end (e.g. DeepSeek-R1 / Qwen3 style templates).
_THINK_BLOCK = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.DOTALL | re.IGNORECASE)
_THINK_TAIL = re.compile(r"^.*</(think|thinking|reasoning)>", re.DOTALL | re.IGNORECASE)


def strip_reasoning(text: str) -> str:
    """Remove ``<think>...</think>`` style reasoning blocks and surrounding whitespace.

    An output that contains a closing tag without its opening tag (the template opened it)
    loses everything up to the last closing tag. An unterminated opening block (generation
    cut by max_tokens while still thinking) leaves nothing, since no answer was produced.
    """
    text = _THINK_BLOCK.sub("", text)
    text = _THINK_TAIL.sub("", text)
    m = re.search(r"<(think|thinking|reasoning)>", text, re.IGNORECASE)
    if m:
        text = text[: m.start()]
    return text.strip()


def validate_batch(batch: Sequence[Messages]) -> list[Messages]:
    """Check that ``batch`` is a sequence of chat conversations; raise ValueError naming the item."""
    if isinstance(batch, (str, bytes)) or not isinstance(batch, Sequence):
        raise ValueError("teacher batch must be a list of conversations (lists of messages)")
    out = []
    for i, conv in enumerate(batch):
        if not isinstance(conv, list) or not conv:
            raise ValueError(f"teacher batch item {i}: a conversation must be a non-empty list of messages")
        for j, msg in enumerate(conv):
            if not isinstance(msg, dict) or not isinstance(msg.get("role"), str) or not isinstance(
                msg.get("content"), str
            ):
                raise ValueError(
                    f"teacher batch item {i}, message {j}: expected {{'role': str, 'content': str}}, got {msg!r}"
                )
        out.append(conv)
    return out


def per_item_seeds(seed: SeedArg, n: int) -> list[int | None]:
    """Expand the ``seed`` argument of :meth:`Teacher.chat` to one seed per batch item."""
    if seed is None or isinstance(seed, int):
        return [seed] * n
    seeds = list(seed)
    if len(seeds) != n:
        raise ValueError(f"got {len(seeds)} seeds for a batch of {n} conversations")
    return seeds


def local_model_name(model: str) -> str:
    """The model identity of a local model: a directory by its last component, a hub id as is.

    Built files must not carry machine-specific paths (and stay identical across machines).
    """
    from pathlib import Path

    p = Path(model)
    return p.name if p.is_dir() else model


def build_config(config_class: type, kwargs: dict[str, Any], backend: str) -> Any:
    """Build a teacher's config dataclass; unknown keys raise a TypeError naming them."""
    return _build_config(config_class, kwargs, backend, kind="teacher")


class Teacher(ABC):
    """A chat model used to build data.

    Subclasses set ``name`` (the registry name) and ``config_class`` (a dataclass whose
    fields are the backend's options), and implement :meth:`chat`.
    """

    name: ClassVar[str] = "teacher"
    config_class: ClassVar[type | None] = None

    @property
    def model_name(self) -> str:
        """The model identity recorded in built files (``source.teacher``)."""
        return getattr(getattr(self, "config", None), "model", "") or self.name

    @property
    def uses_json_schema(self) -> bool:
        """True when requests whose answer must be JSON should carry its JSON Schema.

        A teacher that answers True accepts a ``json_schema=`` keyword (a JSON Schema dict) in
        :meth:`chat` and :meth:`chat_as_completed` and constrains decoding to it (the
        ``openai`` backend with ``json_schema=true``: the endpoint's structured output). The
        builders pass it only to such teachers, so other backends keep the plain interface.
        """
        return False

    @abstractmethod
    def chat(
        self,
        batch: Sequence[Messages],
        *,
        temperature: float = 0.7,
        max_tokens: int = 512,
        seed: SeedArg = None,
    ) -> list[str]:
        """Answer every conversation in ``batch``; returns the assistant texts in batch order.

        Args:
            batch: conversations in OpenAI chat format (``[{"role": "user", "content": ...}]``).
            temperature: sampling temperature; 0 means greedy decoding.
            max_tokens: maximum number of generated tokens per answer.
            seed: sampling seed; an int applies to every item, a sequence gives one seed per
                item (so an item's answer does not depend on what else is in the batch).

        Reasoning blocks such as ``<think>...</think>`` are stripped from the answers.
        Raises :class:`TeacherError` when an item fails for good.
        """

    def chat_as_completed(self, batch: Sequence[Messages], *, temperature: float = 0.7, max_tokens: int = 512,
                          seed: SeedArg = None) -> Iterator[tuple[int, str]]:
        """Yield ``(index, text)`` as answers finish, so callers can store each one at once.

        The default answers the whole batch first; concurrent backends yield as they go.
        """
        yield from enumerate(self.chat(batch, temperature=temperature, max_tokens=max_tokens, seed=seed))

    def close(self) -> None:
        """Release clients, engines or models held by the teacher."""

    def __enter__(self) -> Teacher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def option(default: Any, help: str) -> Any:
    """A teacher config field with its help text (``teacher_options`` and the CLIs show it)."""
    return field(default=default, metadata={"help": help})


@dataclass
class TeacherConfig:
    """Options of every built-in teacher."""

    model: str = option("", "Local directory or Hugging Face id of the model (a causal LM with a chat template).")
    strip_reasoning: bool = option(True, "Remove <think>...</think> blocks from answers.")


@dataclass
class LocalTeacherConfig(TeacherConfig):
    """Options of the teachers that load the model in this process (``hf``, ``vllm``)."""

    top_p: float = option(1.0, "Nucleus sampling top_p (1.0: off).")
    trust_remote_code: bool = option(False, "Allow model code from the hub.")
    chat_template_kwargs: dict[str, Any] | None = option(
        None, "Extra arguments for the chat template (e.g. enable_thinking).")


class BatchTeacher(Teacher):
    """What the built-in backends share: options from ``config_class`` (a :class:`TeacherConfig`)
    checked at construction, batch validation, per-item seeds and reasoning stripping.

    A backend implements :meth:`_answers`. Its extra ``chat`` keywords (the ``openai``
    backend's ``json_schema``) are passed through to it.
    """

    config: Any
    #: ``model`` is required (the backend loads it).
    needs_model: ClassVar[bool] = False
    #: Options that must be at least the given value.
    minimums: ClassVar[dict[str, int]] = {}

    def __init__(self, **kwargs: Any) -> None:
        self.config = build_config(self.config_class, kwargs, self.name)
        if self.needs_model and not self.config.model:
            raise ValueError(f"teacher '{self.name}' needs model=<local dir or hub id>")
        for name, least in self.minimums.items():
            value = getattr(self.config, name)
            if value < least:
                raise ValueError(f"teacher '{self.name}': {name} must be >= {least}, got {value}")

    @abstractmethod
    def _answers(self, convs: list[Messages], seeds: list[int | None], temperature: float, max_tokens: int,
                 **options: Any) -> Iterator[tuple[int, str]]:
        """Yield ``(index, raw answer)`` for every conversation of a valid, non-empty batch, in
        any order (as they finish)."""

    def chat(self, batch: Sequence[Messages], **options: Any) -> list[str]:
        """:meth:`Teacher.chat` (the same keywords), collected from :meth:`chat_as_completed`."""
        convs = validate_batch(batch)
        out = [""] * len(convs)
        for i, text in self._as_completed(convs, **options):
            out[i] = text
        return out

    def chat_as_completed(self, batch: Sequence[Messages], **options: Any) -> Iterator[tuple[int, str]]:
        yield from self._as_completed(validate_batch(batch), **options)

    def _as_completed(self, convs: list[Messages], *, temperature: float = 0.7, max_tokens: int = 512,
                      seed: SeedArg = None, **options: Any) -> Iterator[tuple[int, str]]:
        """:meth:`chat_as_completed` of a validated batch."""
        seeds = per_item_seeds(seed, len(convs))
        if not convs:
            return
        # closing: a caller that stops early stops the backend's work too (queued requests)
        with closing(self._answers(convs, seeds, temperature, max_tokens, **options)) as answers:
            for i, text in answers:
                yield i, strip_reasoning(text) if self.config.strip_reasoning else text


class LocalTeacher(BatchTeacher):
    """A teacher that loads its model in this process (``hf``, ``vllm``)."""

    needs_model = True

    @property
    def model_name(self) -> str:
        return local_model_name(self.config.model)
