"""`bt`: a scalar (Bradley-Terry) reward model, holistic ``r(instruction, response)``.

Loads an OpenRLHF ``train_rm`` checkpoint or any HF ``*ForSequenceClassification`` RM with
``num_labels=1`` (Skywork-Reward-V2 layout); the layout is read from ``config.json`` (see
:mod:`openrlhf_reward.scorers.hf_rm`, which also holds the forward pass).

How an (instruction, response) pair becomes tokens:

* OpenRLHF layout -- exactly as ``train_rm`` builds its training inputs
  (``openrlhf/datasets/reward_dataset.py``, 0.11.2, with ``--data.apply_chat_template``):
  ``p = chat_template([user], add_generation_prompt=True)``,
  ``r = chat_template([user, assistant])[len(p):]``, ``text = (p + r).rstrip("\\n")``, then
  ``" " + eos_token`` appended unless the text already ends with it; tokenised with
  ``add_special_tokens=False``, truncated to ``max_length`` and the last token forced to
  EOS (train_rm's "avoid EOS truncation" step). With ``apply_chat_template=false`` the
  prompt is ``input_template.format(instruction)`` (or the bare instruction) and the
  response is appended as is, like train_rm without a chat template.
* HF layout -- as Skywork-Reward-V2's model card: ``chat_template([user, assistant])``
  with a leading BOS string removed, tokenised with ``add_special_tokens=True`` (so exactly
  one BOS where the tokenizer adds one); no EOS is appended.

Truncation (``truncation_side``): the default ``right`` keeps the start -- the instruction
with its requirements and the beginning of the response -- which is what train_rm does
to over-long training pairs, so the RM is scored the way it was trained. ``left`` keeps
the end of the response instead (and drops the instruction first); ``middle`` keeps both
ends. Truncated items are flagged in ``info["truncated"]``.

Normalisation (``normalize=true``): ``(r - mean) / std`` with ``mean``/``std`` read from
config.json. OpenRLHF's own loader keeps them in non-persistent buffers that
``from_pretrained`` re-initialises, so its ``serve_rm --reward.normalize_enable`` returns
garbage; here they are read from the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from openrlhf_reward.config import build_config
from openrlhf_reward.scorers.base import Scorer, ScoreRequest, ScoreResult
from openrlhf_reward.scorers.hf_rm import (
    OPENRLHF,
    CheckpointError,
    LoadedRewardModel,
    ModelConfig,
    truncate_ids,
    validate_model_config,
)


@dataclass
class BTConfig(ModelConfig):
    """Options of the `bt` backend (also the base of `per-requirement`)."""

    normalize: bool = field(
        default=False, metadata={"help": "Return (r - mean) / std with mean/std from config.json."}
    )
    apply_chat_template: bool = field(
        default=True, metadata={"help": "Format the pair with the tokenizer's chat template (train_rm --data.apply_chat_template)."}
    )
    input_template: str | None = field(
        default=None, metadata={"help": "Without a chat template: prompt format with one {} (train_rm --data.input_template)."}
    )
    system_prompt: str | None = field(
        default=None, metadata={"help": "Optional system message placed before the user turn."}
    )


class BTScorer(Scorer):
    """Holistic scalar reward; ``requirement_scores`` are None (a BT RM scores the whole)."""

    name: ClassVar[str] = "bt"
    config_class: ClassVar[type] = BTConfig
    needs_requirements: ClassVar[bool] = False  # holistic: one reward per response

    def __init__(self, **kwargs: Any) -> None:
        self.config = build_config(self.config_class, kwargs, self.name)
        validate_model_config(self.config, self.name)
        self._check_config()
        self.rm = LoadedRewardModel(self.config, self.name, expect_outputs=1)
        self.tokenizer = self.rm.tokenizer
        if self.config.apply_chat_template and not getattr(self.tokenizer, "chat_template", None):
            raise CheckpointError(
                f"backend {self.name!r}: the tokenizer of {self.config.model!r} has no chat template; "
                "pass apply_chat_template=false (optionally with input_template)"
            )
        if self.rm.layout == OPENRLHF and self.tokenizer.eos_token is None:
            raise CheckpointError(
                f"backend {self.name!r}: the tokenizer of {self.config.model!r} has no eos_token, "
                "which OpenRLHF reward models are scored at"
            )
        self.mean_std = self.rm.mean_std() if self.config.normalize else None

    def _check_config(self) -> None:
        tpl = self.config.input_template
        if tpl is not None and "{}" not in tpl:
            raise ValueError(f"backend {self.name!r}: input_template must contain '{{}}', got {tpl!r}")

    # -- text formatting -----------------------------------------------------------------
    def _messages(self, user: str) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.config.system_prompt}] if self.config.system_prompt else []
        return msgs + [{"role": "user", "content": user}]

    def format_text(self, user: str, response: str) -> str:
        """The text the RM reads for one (user turn, response); see the module docstring."""
        tok = self.tokenizer
        cfg = self.config
        if self.rm.layout == OPENRLHF:
            if cfg.apply_chat_template:
                msgs = self._messages(user)
                prompt = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
                full = tok.apply_chat_template(
                    msgs + [{"role": "assistant", "content": response}], tokenize=False
                )
                answer = full[len(prompt) :]
            else:
                prompt = cfg.input_template.format(user) if cfg.input_template else user
                answer = response
            text = (prompt + answer).rstrip("\n")
            if not text.endswith(tok.eos_token):
                text += " " + tok.eos_token
            return text
        if cfg.apply_chat_template:
            text = tok.apply_chat_template(
                self._messages(user) + [{"role": "assistant", "content": response}], tokenize=False
            )
            if tok.bos_token and text.startswith(tok.bos_token):
                text = text[len(tok.bos_token) :]
            return text
        prompt = cfg.input_template.format(user) if cfg.input_template else user
        return prompt + response

    def encode_text(self, text: str) -> tuple[list[int], bool]:
        """Token ids of a formatted text, truncated; returns ``(ids, truncated)``."""
        return self.encode_texts([text])[0]

    def encode_texts(self, texts: Sequence[str]) -> list[tuple[list[int], bool]]:
        """:meth:`encode_text` of many texts with one (batched) tokenizer call: same ids."""
        if not texts:
            return []
        openrlhf = self.rm.layout == OPENRLHF
        out = []
        for ids in self.tokenizer(list(texts), add_special_tokens=not openrlhf)["input_ids"]:
            ids, truncated = truncate_ids(list(ids), int(self.config.max_length), self.config.truncation_side)
            if openrlhf:
                ids[-1] = self.tokenizer.eos_token_id  # train_rm: "to avoid EOS_token truncation"
            out.append((ids, truncated))
        return out

    # -- scoring -------------------------------------------------------------------------
    def raw_scores(self, texts: Sequence[str]) -> tuple[list[float], list[bool]]:
        """(Normalised if configured) rewards of formatted texts, with truncation flags."""
        encoded = self.encode_texts(texts)
        scores = self.rm.forward([ids for ids, _ in encoded], mean_std=self.mean_std)
        return [s[0] for s in scores], [tr for _, tr in encoded]

    def score_texts(self, texts: Sequence[str]) -> list[float]:
        """Score already-formatted texts the way OpenRLHF's ``serve_rm`` does.

        ``add_special_tokens=False``, truncation to ``max_length``, no EOS appended -- for a
        ``query`` string that already holds prompt + response + EOS.
        """
        seqs = []
        for ids in (self.tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []):
            if not ids:
                raise ValueError("score_texts: an empty text has no token to score")
            seqs.append(truncate_ids(list(ids), int(self.config.max_length), self.config.truncation_side)[0])
        return [s[0] for s in self.rm.forward(seqs, mean_std=self.mean_std)]

    def score(self, batch: Sequence[ScoreRequest]) -> list[ScoreResult]:
        texts = [self.format_text(r.prompt, r.response) for r in batch]
        rewards, truncated = self.raw_scores(texts)
        return [
            ScoreResult(
                reward=float(rew),
                requirement_scores={q.id: None for q in req.requirements},
                requirement_types={q.id: q.type for q in req.requirements},
                info={"truncated": tr, "normalized": self.mean_std is not None},
            )
            for req, rew, tr in zip(batch, rewards, truncated, strict=True)
        ]

    def close(self) -> None:
        self.rm.close()
