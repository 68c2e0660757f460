"""`vllm`: a teacher on an in-process vLLM engine (offline batch inference, GPU nodes).

vllm is imported when the teacher is built, never at package import. Per-request seeds are
passed in SamplingParams, so answers do not depend on batch composition.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from openrlhf_reward.teachers.base import (
    LocalTeacher,
    LocalTeacherConfig,
    Messages,
    TeacherError,
    option,
)

#: Config fields handed to ``vllm.LLM`` as they are.
ENGINE_OPTIONS = ("model", "tensor_parallel_size", "dtype", "gpu_memory_utilization", "trust_remote_code",
                  "enforce_eager")


@dataclass
class VLLMTeacherConfig(LocalTeacherConfig):
    tensor_parallel_size: int = option(1, "GPUs per model replica.")
    dtype: str = option("auto", "Weights dtype passed to vLLM.")
    max_model_len: int | None = option(None, "Context length (None: the model's).")
    gpu_memory_utilization: float = option(0.9, "Share of GPU memory vLLM may use.")
    enforce_eager: bool = option(False, "Disable CUDA graphs (slower, less memory).")


class VLLMTeacher(LocalTeacher):
    """Offline vLLM generation (``vllm.LLM.chat``) with per-request seeds."""

    name = "vllm"
    config_class = VLLMTeacherConfig

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        c: VLLMTeacherConfig = self.config
        try:
            import vllm
        except ImportError as e:
            raise TeacherError(
                "teacher 'vllm' needs the vllm package (pip install vllm on a GPU node); "
                f"it could not be imported here ({e}). Use --teacher openai against `vllm serve` "
                "or --teacher hf instead."
            ) from None
        self._vllm = vllm
        llm_kwargs: dict[str, Any] = {name: getattr(c, name) for name in ENGINE_OPTIONS}
        if c.max_model_len is not None:
            llm_kwargs["max_model_len"] = c.max_model_len
        self.llm = vllm.LLM(**llm_kwargs)

    def _answers(self, convs: list[Messages], seeds: list[int | None], temperature: float,
                 max_tokens: int) -> Iterator[tuple[int, str]]:
        params = [
            self._vllm.SamplingParams(temperature=temperature, top_p=self.config.top_p, max_tokens=max_tokens, seed=s)
            for s in seeds
        ]
        kwargs: dict[str, Any] = {"sampling_params": params, "use_tqdm": False}
        if self.config.chat_template_kwargs:
            kwargs["chat_template_kwargs"] = self.config.chat_template_kwargs
        outputs = self.llm.chat(convs, **kwargs)
        yield from enumerate(o.outputs[0].text for o in outputs)
