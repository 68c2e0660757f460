"""Teachers: chat models that write requirements and candidate answers for the data builders.

>>> from openrlhf_reward.teachers import get_teacher
>>> teacher = get_teacher("openai", base_url="http://127.0.0.1:8000/v1", concurrency=32)
>>> teacher.chat([[{"role": "user", "content": "Say hi."}]], temperature=0.0, max_tokens=16)

Backends (``openai``, ``hf``, ``vllm``) are registered by name and imported lazily, so
importing this package pulls in neither torch, transformers, openai nor vllm.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from openrlhf_reward.registry import Registry
from openrlhf_reward.teachers.base import Messages, Teacher, TeacherError, strip_reasoning

# name -> "module:Class"; resolved on first use.
TEACHERS: Registry[type[Teacher]] = Registry(
    "teacher backend",
    {
        "openai": "openrlhf_reward.teachers.openai_api:OpenAITeacher",
        "hf": "openrlhf_reward.teachers.hf:HFTeacher",
        "vllm": "openrlhf_reward.teachers.vllm_engine:VLLMTeacher",
    },
)


def register_teacher(name: str) -> Callable[[type[Teacher]], type[Teacher]]:
    """Class decorator that registers a teacher backend under ``name`` (third-party or tests)."""
    return TEACHERS.register(name)


def unregister_teacher(name: str) -> None:
    """Remove the teacher backend registered as ``name`` (e.g. a test double)."""
    TEACHERS.unregister(name)


def available_teachers() -> list[str]:
    return TEACHERS.available()


def teacher_class(name: str) -> type[Teacher]:
    """The backend class for ``name`` (imports its module)."""
    return TEACHERS.cls(name)


def teacher_options(name: str) -> list[tuple[str, Any, str]]:
    """``(option, default, help)`` for each config field of backend ``name`` (for CLIs and docs)."""
    cls = teacher_class(name)
    if cls.config_class is None:
        return []
    out = []
    for f in dataclasses.fields(cls.config_class):
        default = f.default if f.default is not dataclasses.MISSING else None
        out.append((f.name, default, f.metadata.get("help", "")))
    return out


def get_teacher(name: str, **config: Any) -> Teacher:
    """Build teacher backend ``name`` with its config fields as keyword arguments.

    Unknown options raise a TypeError naming them and listing the valid ones.
    """
    return TEACHERS.get(name, **config)


__all__ = [
    "TEACHERS",
    "Messages",
    "Teacher",
    "TeacherError",
    "available_teachers",
    "get_teacher",
    "register_teacher",
    "strip_reasoning",
    "teacher_class",
    "teacher_options",
    "unregister_teacher",
]
