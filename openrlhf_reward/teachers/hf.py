"""`hf`: a teacher that generates locally with transformers (batched, left padding).

Runs anywhere torch runs, CPU included, so the whole data pipeline can be exercised with a
tiny model. Sampling uses the Gumbel-max trick with one random generator per item: an
item's answer depends on its own seed only, not on which other items share its batch,
which keeps resumed builds identical to uninterrupted ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from openrlhf_reward.teachers.base import LocalTeacher, LocalTeacherConfig, Messages, option


@dataclass
class HFTeacherConfig(LocalTeacherConfig):
    device: str = option("auto", "torch device ('cpu', 'cuda', 'cuda:1'); 'auto': cuda when available.")
    dtype: str = option("auto", "Weights dtype: auto, float32, bfloat16 or float16.")
    batch_size: int = option(8, "Conversations generated together.")


class HFTeacher(LocalTeacher):
    """Local transformers generation with per-item seeds."""

    name = "hf"
    config_class = HFTeacherConfig
    minimums = {"batch_size": 1}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        c: HFTeacherConfig = self.config
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._torch = torch
        device = c.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
        if c.dtype != "auto" and c.dtype not in dtypes:
            raise ValueError(f"teacher 'hf': unknown dtype {c.dtype!r} (auto, {', '.join(dtypes)})")
        dtype = dtypes.get(c.dtype, torch.float32 if self.device.type == "cpu" else "auto")
        self.tokenizer = AutoTokenizer.from_pretrained(c.model, trust_remote_code=c.trust_remote_code)
        self.tokenizer.padding_side = "left"  # decoder-only batching: prompts end at the same column
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"teacher 'hf': the tokenizer of {c.model!r} has no chat template")
        self.model = AutoModelForCausalLM.from_pretrained(
            c.model, dtype=dtype, trust_remote_code=c.trust_remote_code
        ).to(self.device)
        self.model.eval()

    def _render(self, conv: Messages) -> str:
        return self.tokenizer.apply_chat_template(
            conv, tokenize=False, add_generation_prompt=True, **(self.config.chat_template_kwargs or {})
        )

    def _answers(self, convs: list[Messages], seeds: list[int | None], temperature: float,
                 max_tokens: int) -> Iterator[tuple[int, str]]:
        # In batch order, one internal batch at a time, so callers can store finished work early.
        bs = self.config.batch_size
        for start in range(0, len(convs), bs):
            texts = self._generate(convs[start : start + bs], seeds[start : start + bs], temperature, max_tokens)
            yield from enumerate(texts, start)

    def _generate(
        self, convs: list[Messages], seeds: list[int | None], temperature: float, max_tokens: int
    ) -> list[str]:
        torch = self._torch
        from transformers import LogitsProcessorList

        texts = [self._render(c) for c in convs]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        processors = LogitsProcessorList()
        if temperature > 0:
            processors.append(_GumbelSampler(seeds, temperature, self.config.top_p, self.device))
        with torch.no_grad():
            # Greedy decoding over Gumbel-perturbed logits == sampling, with per-row RNGs.
            gen = self.model.generate(
                **enc,
                do_sample=False,
                max_new_tokens=max_tokens,
                logits_processor=processors,
                pad_token_id=self.tokenizer.pad_token_id,
                temperature=None,
                top_p=None,
                top_k=None,
            )
        new = gen[:, enc["input_ids"].shape[1] :]
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)


class _GumbelSampler:
    """Logits processor: temperature + top-p, then Gumbel noise from one generator per row."""

    def __init__(self, seeds: list[int | None], temperature: float, top_p: float, device: Any) -> None:
        import torch

        self.temperature = temperature
        self.top_p = top_p
        self.generators = []
        for s in seeds:
            g = torch.Generator(device=device)
            if s is None:
                g.seed()
            else:
                g.manual_seed(int(s) % (2**63))
            self.generators.append(g)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        scores = scores.float() / self.temperature
        if self.top_p < 1.0:
            probs = torch.softmax(scores, dim=-1)
            sorted_p, idx = probs.sort(dim=-1, descending=True)
            cum = sorted_p.cumsum(dim=-1)
            drop_sorted = (cum - sorted_p) > self.top_p  # keep the smallest set reaching top_p
            drop = torch.zeros_like(drop_sorted).scatter(-1, idx, drop_sorted)
            scores = scores.masked_fill(drop, float("-inf"))
        rows = []
        for row, g in zip(scores, self.generators):
            u = torch.rand(row.shape, generator=g, device=row.device).clamp_(1e-10, 1.0 - 1e-10)
            rows.append(row - torch.log(-torch.log(u)))
        return torch.stack(rows)
