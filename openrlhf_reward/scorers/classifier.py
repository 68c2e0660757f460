"""`classifier`: a 2-label adherence classifier, one pass per requirement; reward = mean P(adheres).

This is the format of the paper's released scalar RM ("From Coarse to Fine", repository
Rainier-rq1/From_Coarse_to_Fine, files ``WEval/server.py`` and ``WRL/verl/RM.py``): an
``AutoModelForSequenceClassification`` with ``num_labels=2`` reads, for one constraint,
the text (double spaces included, verbatim)::

    You need to determine whether the response adheres to this constraint. Only output  1 if it does, otherwise only output  0.  Response: {answer}. Constraint: {question}

tokenised with the tokenizer's default special tokens (``tokenizer(text, truncation=True)``);
its score is ``softmax(logits)[1]`` and ``WEval/server_eval.py`` averages it over the
item's constraints. Here ``{answer}`` is the response and ``{question}`` the requirement
text; the instruction itself is not shown, as in the paper. The paper's server rounds the
probability to 3 decimals for JSON; this backend does not round (rounding creates ties).

Decoder classifiers (Qwen/Llama ``score`` head) are read at the last real token, so the
result equals the paper's unpadded single-text forward while batching with padding; other
models use their own forward. Over-long texts are cut in the middle by default
(``truncation_side="middle"``): the constraint sits at the end of the text and the task
description at the start, so both survive and the response loses its middle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from openrlhf_reward.config import build_config
from openrlhf_reward.scorers.base import Scorer, ScoreRequest, ScoreResult
from openrlhf_reward.scorers.hf_rm import (
    HF_SEQ_CLS,
    CheckpointError,
    LoadedRewardModel,
    ModelConfig,
    score_each_requirement,
    truncate_ids,
    validate_model_config,
)

# Verbatim from WEval/server.py (Rainier-rq1/From_Coarse_to_Fine), with the f-string's
# {answer}/{question} kept as format fields.
PAPER_TEMPLATE = (
    "You need to determine whether the response adheres to this constraint. Only output  1 if it "
    "does, otherwise only output  0.  Response: {answer}. Constraint: {question}"
)


@dataclass
class ClassifierConfig(ModelConfig):
    """Options of the `classifier` backend."""

    template: str = field(
        default=PAPER_TEMPLATE,
        metadata={"help": "Input text per requirement, with {answer} (response) and {question} (requirement); {instruction} is also available."},
    )
    positive_label: int = field(
        default=1, metadata={"help": "Index of the 'adheres' label whose probability is the score."}
    )
    add_special_tokens: bool = field(
        default=True, metadata={"help": "Let the tokenizer add its special tokens (the paper's server does)."}
    )
    unscorable_reward: float = field(
        default=0.0, metadata={"help": "Reward of a request that has no requirements."}
    )
    truncation_side: str = field(
        default="middle",
        metadata={"help": "What truncation keeps: 'middle' = start and end (task text and constraint), 'right', 'left'."},
    )


class ClassifierScorer(Scorer):
    name: ClassVar[str] = "classifier"
    config_class: ClassVar[type] = ClassifierConfig

    def __init__(self, **kwargs: Any) -> None:
        self.config = build_config(ClassifierConfig, kwargs, self.name)
        validate_model_config(self.config, self.name)
        tpl = self.config.template
        if "{answer}" not in tpl or "{question}" not in tpl:
            raise ValueError(f"backend {self.name!r}: template must contain {{answer}} and {{question}}, got {tpl!r}")
        if self.config.positive_label not in (0, 1):
            raise ValueError(f"backend {self.name!r}: positive_label must be 0 or 1, got {self.config.positive_label}")
        self.rm = LoadedRewardModel(self.config, self.name, expect_outputs=2)
        if self.rm.layout != HF_SEQ_CLS:  # pragma: no cover - expect_outputs=2 already excludes it
            raise CheckpointError(f"backend {self.name!r} needs a 2-label sequence classifier")
        self.tokenizer = self.rm.tokenizer
        # Encoders have a fixed position table (MiniLM/BERT: 512): cut at the length the
        # checkpoint declares (train-classifier saves its training length as the tokenizer's
        # model_max_length) rather than overrun it with the 4096 default.
        if not self.rm.last_token:
            declared = [int(v) for v in (getattr(self.tokenizer, "model_max_length", None),
                                         self.rm.config_json.get("max_position_embeddings"))
                        if isinstance(v, int) and 1 < v < 1_000_000]
            if declared and min(declared) < int(self.config.max_length):
                self.config.max_length = min(declared)

    def format_text(self, instruction: str, response: str, requirement: str) -> str:
        return self.config.template.format(answer=response, question=requirement, instruction=instruction)

    def encode_text(self, text: str) -> tuple[list[int], bool]:
        return self.encode_texts([text])[0]

    def encode_texts(self, texts: Sequence[str]) -> list[tuple[list[int], bool]]:
        """Token ids (truncated) and truncation flags, one batched tokenizer call."""
        if not texts:
            return []
        enc = self.tokenizer(list(texts), add_special_tokens=self.config.add_special_tokens)["input_ids"]
        return [truncate_ids(list(ids), int(self.config.max_length), self.config.truncation_side) for ids in enc]

    def probabilities(self, texts: Sequence[str]) -> tuple[list[float], list[bool]]:
        """P(positive_label) for formatted texts, with truncation flags."""
        import torch

        encoded = self.encode_texts(texts)
        logits = self.rm.forward([ids for ids, _ in encoded])
        probs = torch.softmax(torch.tensor(logits, dtype=torch.float32), dim=-1)[:, self.config.positive_label]
        return probs.tolist(), [tr for _, tr in encoded]

    def score(self, batch: Sequence[ScoreRequest]) -> list[ScoreResult]:
        per_item, trunc = score_each_requirement(
            batch, lambda req, r: self.format_text(req.prompt, req.response, r.text), self.probabilities
        )
        out = []
        for i, req in enumerate(batch):
            scores = per_item[i]
            reward = sum(scores.values()) / len(scores) if scores else self.config.unscorable_reward
            out.append(
                ScoreResult(
                    reward=float(reward),
                    requirement_scores=dict(scores),
                    requirement_types={q.id: q.type for q in req.requirements},
                    info={"n_scored": len(scores), "truncated": trunc[i]},
                )
            )
        return out

    def close(self) -> None:
        self.rm.close()
