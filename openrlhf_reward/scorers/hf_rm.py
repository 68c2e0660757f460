"""Loading and batched forward of local reward-model checkpoints (shared by `bt`,
`per-requirement` and `classifier`).

Two checkpoint layouts, told apart from ``config.json`` alone (:func:`detect_layout`):

``openrlhf``
    The output of OpenRLHF ``train_rm``: ``config.json`` carries ``value_head_prefix``
    (usually ``"score"``), ``mean``/``std`` and ``normalize_reward``; the weights are the base
    model (``<base_model_prefix>.*``) plus ``<value_head_prefix>.weight`` of shape
    ``[1, hidden]`` without bias. It is loaded as ``AutoModel`` (the base) plus a linear head
    read from the weight files, and scored exactly as OpenRLHF 0.11.2's
    ``get_llm_for_sequence_regression`` reward model does: left padding, position ids =
    ``cumsum(mask) - 1`` (pads set to 1), head applied to every position, reward gathered
    at the last position whose attention mask is 1.

``hf-seq-cls``
    Any ``*ForSequenceClassification`` checkpoint (Skywork-Reward-V2 layout with
    ``num_labels=1``, or a 2-label adherence classifier). Decoder models with a ``score``
    head are run the same way (base + head, gathered at the last mask-1 position), which is
    what HF's own pooling means but also right when ``pad_token_id == eos_token_id`` and a
    text ends with EOS (HF's pooling then picks the token before the EOS). Other models
    (encoders with a pooler, e.g. BERT/DeBERTa) are run through their own forward with
    right padding.

Batches are formed from length-sorted inputs (longest first, so an out-of-memory error
shows up on the first batch; rows keep their input order inside a batch) and run under
``torch.inference_mode``; results come back in input order.

Shape bucketing (``pad_to_multiple_of``, ``bucket_rows``; both "auto" by default = on for
CUDA, off on CPU): on CUDA each new (rows, padded width) input shape costs a one-off ~0.1 s,
so behind a dynamic-batching server, whose batches have ever-new shapes, the width is padded
up to a multiple of 64 (more masked pads: left padding for the last-token models, so the
gathered position is the same token) and the rows up to a power of two with one-token dummy
rows that are dropped. The rewards then equal the unpadded ones up to float rounding; the
CPU default builds exactly OpenRLHF's tensor (bit-identical). With bucketing on, CUDA loads
also pre-warm every bucket shape (``warmup_shapes``, widths up to ``warmup_max_width``) with one
dummy forward each, so a server's first real batches do not pay the one-off cost.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openrlhf_reward.schema import Requirement
from openrlhf_reward.scorers.base import ScoreRequest

OPENRLHF = "openrlhf"
HF_SEQ_CLS = "hf-seq-cls"
_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}
TRUNCATION_SIDES = ("right", "left", "middle")
logger = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A reward-model path that cannot be used; the message names the path and the problem."""


@dataclass
class ModelConfig:
    """Fields shared by every local-model backend."""

    model: str | None = field(
        default=None, metadata={"help": "Path (or hub id) of the reward-model checkpoint."}
    )
    tokenizer: str | None = field(
        default=None, metadata={"help": "Tokenizer path when it differs from `model`."}
    )
    device: str = field(
        default="auto", metadata={"help": "'auto' (cuda if available, else cpu), 'cpu', 'cuda', 'cuda:1', ..."}
    )
    dtype: str = field(
        default="auto",
        metadata={"help": "'auto' (bfloat16 on GPU, float32 on CPU: bit-identical to OpenRLHF's fp32 and "
                          "the same on every CPU), 'float32', 'bfloat16' (opt-in on CPU) or 'float16'."},
    )
    batch_size: int = field(default=16, metadata={"help": "Sequences per forward pass."})
    max_length: int = field(
        default=4096, metadata={"help": "Longest input in tokens; longer inputs are truncated."}
    )
    truncation_side: str = field(
        default="right",
        metadata={"help": "What truncation keeps: 'right' = the start, 'left' = the end, 'middle' = both halves."},
    )
    attn_implementation: str = field(
        default="sdpa", metadata={"help": "transformers attention implementation (sdpa, eager, flash_attention_2)."}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow custom modelling code shipped with the checkpoint."}
    )
    show_progress: bool = field(default=False, metadata={"help": "Show a tqdm bar over batches."})
    pad_to_multiple_of: int | None = field(
        default=None,
        metadata={"help": "Pad each forward batch's token width up to a multiple of this (masked pads; fewer "
                          "shapes, each new one costs ~0.1 s once on CUDA); None = auto (64 on CUDA, off on CPU), 0/1 = off."},
    )
    bucket_rows: bool | None = field(
        default=None,
        metadata={"help": "Pad a forward batch's rows up to a power of two (capped at batch_size) with dummy rows "
                          "that are dropped; None = auto (on for CUDA, off on CPU)."},
    )
    warmup_shapes: bool | None = field(
        default=None,
        metadata={"help": "At load, run one dummy forward per bucket shape (rows x padded widths up to "
                          "warmup_max_width); None = auto (on for CUDA when pad_to_multiple_of is active)."},
    )
    warmup_max_width: int = field(
        default=1024, metadata={"help": "Widest token width pre-warmed by warmup_shapes (also capped at max_length)."}
    )


def validate_model_config(cfg: ModelConfig, backend: str) -> None:
    if not cfg.model:
        raise ValueError(f"backend {backend!r}: option 'model' (path to the reward model) is required")
    if int(cfg.batch_size) < 1:
        raise ValueError(f"backend {backend!r}: batch_size must be >= 1, got {cfg.batch_size}")
    if int(cfg.max_length) < 2:
        raise ValueError(f"backend {backend!r}: max_length must be >= 2, got {cfg.max_length}")
    if cfg.truncation_side not in TRUNCATION_SIDES:
        raise ValueError(
            f"backend {backend!r}: truncation_side must be one of {', '.join(TRUNCATION_SIDES)}, "
            f"got {cfg.truncation_side!r}"
        )
    if cfg.pad_to_multiple_of is not None and int(cfg.pad_to_multiple_of) < 0:
        raise ValueError(
            f"backend {backend!r}: pad_to_multiple_of must be None (auto), 0 (off) or a positive int, "
            f"got {cfg.pad_to_multiple_of}"
        )
    if int(cfg.warmup_max_width) < 1:
        raise ValueError(f"backend {backend!r}: warmup_max_width must be >= 1, got {cfg.warmup_max_width}")
    if cfg.dtype != "auto" and cfg.dtype.lower() not in _DTYPES:
        raise ValueError(
            f"backend {backend!r}: dtype must be 'auto' or one of {', '.join(sorted(_DTYPES))}, got {cfg.dtype!r}"
        )


def _looks_like_hub_id(name: str) -> bool:
    """``org/name`` (or ``name``), not a filesystem path: then the hub cache is consulted."""
    return not name.startswith(("/", ".", "~")) and name.count("/") <= 1 and "\\" not in name


def read_config_json(path: str | Path) -> dict[str, Any]:
    """``config.json`` of a local checkpoint, or of a hub id through the HF cache."""
    p = Path(path)
    if p.is_dir():
        cfg_file = p / "config.json"
        if not cfg_file.is_file():
            raise CheckpointError(f"reward model {str(path)!r}: no config.json in that folder")
    elif p.exists():
        raise CheckpointError(f"reward model {str(path)!r}: is a file; give the checkpoint folder")
    elif not _looks_like_hub_id(str(path)):
        raise CheckpointError(f"reward model {str(path)!r}: no such folder")
    else:
        try:  # a hub id (works offline when cached)
            from huggingface_hub import hf_hub_download

            cfg_file = Path(hf_hub_download(str(path), "config.json"))
        except Exception as e:  # noqa: BLE001 - any failure means: not usable
            raise CheckpointError(
                f"reward model {str(path)!r}: no such folder, and not loadable as a hub id ({type(e).__name__})"
            ) from None
    try:
        return json.loads(cfg_file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"reward model {str(path)!r}: unreadable config.json ({e})") from None


def detect_layout(config: dict[str, Any]) -> str:
    """``"openrlhf"`` for a train_rm checkpoint, ``"hf-seq-cls"`` for a HF classifier."""
    archs = config.get("architectures") or []
    if "value_head_prefix" in config or any(a in ("RewardModel", "CriticModel") for a in archs):
        return OPENRLHF
    if any(str(a).endswith("ForSequenceClassification") for a in archs):
        return HF_SEQ_CLS
    raise CheckpointError(
        "cannot tell the reward-model layout: config.json has neither 'value_head_prefix' "
        "(OpenRLHF train_rm output) nor a *ForSequenceClassification architecture "
        f"(architectures={archs})"
    )


def num_outputs(config: dict[str, Any], layout: str) -> int:
    """How many scores the checkpoint emits per sequence."""
    if layout == OPENRLHF:
        return 1
    if "num_labels" in config:
        return int(config["num_labels"])
    if isinstance(config.get("id2label"), dict):
        return len(config["id2label"])
    return 2  # transformers' default


def _load_tensor(path: Path, key: str):
    """One tensor from a checkpoint folder (safetensors or torch .bin, sharded or not)."""
    import torch

    for index_name, single in (
        ("model.safetensors.index.json", "model.safetensors"),
        ("pytorch_model.bin.index.json", "pytorch_model.bin"),
    ):
        index = path / index_name
        if index.is_file():
            weight_map = json.loads(index.read_text()).get("weight_map", {})
            if key not in weight_map:
                return None
            file = path / weight_map[key]
        elif (path / single).is_file():
            file = path / single
        else:
            continue
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(file), framework="pt") as f:
                return f.get_tensor(key) if key in f.keys() else None
        state = torch.load(str(file), map_location="cpu", weights_only=True)
        return state.get(key)
    raise CheckpointError(f"reward model {str(path)!r}: no model.safetensors or pytorch_model.bin found")


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        # CPU: float32 always, so a checkpoint's rewards are bit-identical to OpenRLHF's fp32
        # forward and do not depend on which CPU runs them; bf16 on CPU is opt-in (dtype=bfloat16).
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, _DTYPES[dtype.lower()])


def truncate_ids(ids: list[int], max_length: int, side: str) -> tuple[list[int], bool]:
    """Cut ``ids`` to ``max_length`` keeping the start, the end, or both halves."""
    if len(ids) <= max_length:
        return ids, False
    if side == "right":
        return ids[:max_length], True
    if side == "left":
        return ids[-max_length:], True
    head = max_length // 2
    return ids[:head] + ids[len(ids) - (max_length - head) :], True


def score_each_requirement(
    batch: Sequence[ScoreRequest],
    text_of: Callable[[ScoreRequest, Requirement], str],
    run: Callable[[list[str]], tuple[list[float], list[bool]]],
) -> tuple[list[dict[str, float]], list[bool]]:
    """One model pass over the text of every (request, requirement) pair in ``batch``.

    ``run(texts)`` returns a value and a truncation flag per text. Returns, per request,
    ``{requirement id: value}`` and whether any of its texts was truncated.
    """
    texts: list[str] = []
    owners: list[tuple[int, str]] = []
    for i, req in enumerate(batch):
        for r in req.requirements:
            texts.append(text_of(req, r))
            owners.append((i, r.id))
    values, truncated = run(texts) if texts else ([], [])
    per_item: list[dict[str, float]] = [{} for _ in batch]
    trunc = [False] * len(batch)
    for (i, rid), value, tr in zip(owners, values, truncated, strict=True):
        per_item[i][rid] = value
        trunc[i] = trunc[i] or tr
    return per_item, trunc


class LoadedRewardModel:
    """A checkpoint ready to score token-id sequences; see the module docstring."""

    def __init__(self, cfg: ModelConfig, backend: str, expect_outputs: int | None) -> None:
        from transformers import AutoTokenizer

        self._owner = None
        self.cfg = cfg
        self.backend = backend
        path = str(cfg.model)
        self.config_json = read_config_json(path)
        self.layout = detect_layout(self.config_json)
        self.n_outputs = num_outputs(self.config_json, self.layout)
        if expect_outputs is not None and self.n_outputs != expect_outputs:
            what = "an OpenRLHF train_rm reward model (1 output)" if self.layout == OPENRLHF else (
                f"a sequence classifier with num_labels={self.n_outputs}"
            )
            hint = (
                "use backend 'classifier' for 2-label adherence classifiers"
                if self.n_outputs == 2
                else "use backend 'bt' or 'per-requirement' for scalar reward models"
                if self.n_outputs == 1
                else ""
            )
            raise CheckpointError(
                f"backend {backend!r} needs a checkpoint with num_labels={expect_outputs}, "
                f"but {path!r} is {what}" + (f"; {hint}" if hint else "")
            )
        self.device = _resolve_device(cfg.device)
        self.dtype = _resolve_dtype(cfg.dtype, self.device)
        # Shape bucketing (see _forward_batch): on CUDA every new (rows, width) shape costs a
        # one-off ~0.1 s (kernel selection, allocator), which dominates a server's small
        # batches of ever-changing lengths; on CPU there is no such cost and the default stays
        # the exact tensor OpenRLHF builds (bit-identical rewards).
        on_cuda = self.device.startswith("cuda")
        multiple = cfg.pad_to_multiple_of
        self.pad_multiple = (64 if on_cuda else 1) if multiple is None else max(1, int(multiple))
        self.bucket_rows = on_cuda if cfg.bucket_rows is None else bool(cfg.bucket_rows)

        tok_path = cfg.tokenizer or path
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(tok_path, trust_remote_code=cfg.trust_remote_code)
        except Exception as e:  # noqa: BLE001 - re-raised with the path named
            raise CheckpointError(f"reward model {tok_path!r}: cannot load its tokenizer ({e})") from e
        # As OpenRLHF's get_tokenizer: no pad token -> pad with EOS (harmless here: padded
        # positions are masked and never gathered).
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0

        common = dict(dtype=self.dtype, attn_implementation=cfg.attn_implementation,
                      trust_remote_code=cfg.trust_remote_code)
        if self.layout == OPENRLHF:
            self._load_openrlhf(path, common)
        else:
            self._load_hf(path, common)
        self.module.to(self.device).eval()
        if self.head is not None:
            self.head.to(self.device).eval()
        warm = (on_cuda and self.pad_multiple > 1) if cfg.warmup_shapes is None else bool(cfg.warmup_shapes)
        if warm:
            if self.pad_multiple <= 1:
                raise ValueError(
                    f"backend {backend!r}: warmup_shapes=True needs pad_to_multiple_of > 1 (the widths to warm "
                    "up are its multiples); set pad_to_multiple_of, e.g. 64"
                )
            self.warmup()

    # -- loading -------------------------------------------------------------------------
    def _load_openrlhf(self, path: str, common: dict[str, Any]) -> None:
        import torch
        from torch import nn
        from transformers import AutoModel

        prefix = self.config_json.get("value_head_prefix", "score")
        if not Path(path).is_dir():  # a hub id: fetch (or find in the cache) the whole folder
            from huggingface_hub import snapshot_download

            path = snapshot_download(path)
        from transformers.utils import logging as hf_logging

        # The value head is an expected "unexpected key" for AutoModel: silence that report
        # and check the loading info ourselves.
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            base, info = AutoModel.from_pretrained(path, output_loading_info=True, **common)
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"reward model {path!r}: cannot load the base model ({e})") from e
        finally:
            hf_logging.set_verbosity(verbosity)
        if info.get("missing_keys"):
            missing = sorted(info["missing_keys"])
            raise CheckpointError(
                f"reward model {path!r}: base-model weights missing from the checkpoint "
                f"({len(missing)} keys, e.g. {missing[:3]}); is this an OpenRLHF train_rm output?"
            )
        weight = _load_tensor(Path(path), f"{prefix}.weight")
        if weight is None:
            raise CheckpointError(
                f"reward model {path!r}: value head '{prefix}.weight' not found in the weights "
                "(config.json value_head_prefix names the head)"
            )
        hidden = base.config.get_text_config().hidden_size
        if tuple(weight.shape) != (1, hidden):
            raise CheckpointError(
                f"reward model {path!r}: value head '{prefix}.weight' has shape {tuple(weight.shape)}, "
                f"expected (1, {hidden})"
            )
        head = nn.Linear(hidden, 1, bias=False, dtype=self.dtype)
        with torch.no_grad():
            head.weight.copy_(weight.to(self.dtype))
        self.module, self.head, self.last_token = base, head, True

    def _load_hf(self, path: str, common: dict[str, Any]) -> None:
        from torch import nn
        from transformers import AutoModelForSequenceClassification

        try:
            model = AutoModelForSequenceClassification.from_pretrained(path, **common)
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"reward model {path!r}: cannot load it as a sequence classifier ({e})") from e
        base = getattr(model, getattr(model, "base_model_prefix", ""), None)
        score = getattr(model, "score", None)
        if isinstance(score, nn.Linear) and isinstance(base, nn.Module) and not model.config.is_encoder_decoder:
            # Decoder RM: run base + head ourselves so the gathered position is the last
            # mask-1 token even when pad == eos (see module docstring).
            self.module, self.head, self.last_token = base, score, True
            self._owner = model  # keep the full model alive (owns base and head)
        else:
            self.module, self.head, self.last_token = model, None, False

    # -- normalisation -------------------------------------------------------------------
    def mean_std(self) -> tuple[float, float]:
        """``(mean, std)`` from config.json (train_rm writes them after evaluation)."""
        if "mean" not in self.config_json or "std" not in self.config_json:
            raise CheckpointError(
                f"reward model {str(self.cfg.model)!r}: normalize=True needs 'mean' and 'std' in "
                "config.json (OpenRLHF train_rm writes them after its evaluation pass)"
            )
        mean, std = float(self.config_json["mean"]), float(self.config_json["std"])
        if not math.isfinite(mean) or not math.isfinite(std) or std <= 0:
            raise CheckpointError(
                f"reward model {str(self.cfg.model)!r}: config.json has unusable mean={mean} std={std}"
            )
        return mean, std

    # -- forward -------------------------------------------------------------------------
    def forward(
        self, seqs: Sequence[Sequence[int]], mean_std: tuple[float, float] | None = None
    ) -> list[list[float]]:
        """Scores (one list of ``n_outputs`` floats per sequence), batched by length.

        Sequences must already fit ``max_length``. With ``mean_std``, scores become
        ``(score - mean) / std`` (OpenRLHF's formula), computed in float32 whatever the model
        dtype (OpenRLHF computes it in the model dtype; identical for float32 models).
        """
        import torch

        n = len(seqs)
        if n == 0:
            return []
        order = sorted(range(n), key=lambda i: -len(seqs[i]))
        out: list[list[float] | None] = [None] * n
        bs = int(self.cfg.batch_size)
        starts = range(0, n, bs)
        if self.cfg.show_progress and len(starts) > 1:
            from tqdm import tqdm

            starts = tqdm(starts, desc=f"{self.backend} batches", unit="batch")
        shift = None
        if mean_std is not None:
            shift = (torch.tensor([mean_std[0]], dtype=torch.float32),
                     torch.tensor([mean_std[1]], dtype=torch.float32))
        with torch.inference_mode():
            for start in starts:
                # Rows keep their input order inside a batch: a batch that holds the whole
                # input is then the very tensor OpenRLHF's collate_fn builds (results can
                # differ in the last bit when rows are permuted).
                idx = sorted(order[start : start + bs])
                batch = [list(seqs[i]) for i in idx]
                scores = self._forward_batch(batch).float().cpu()
                if shift is not None:
                    scores = (scores - shift[0]) / shift[1]
                for row, i in enumerate(idx):
                    out[i] = scores[row].tolist()
        return out  # type: ignore[return-value]

    def padded_shape(self, rows: int, width: int) -> tuple[int, int]:
        """``(rows, width)`` of the tensor a forward batch of ``rows`` sequences, the longest
        ``width`` tokens, is run as: width up to a multiple of ``pad_multiple`` (capped at
        ``max_length`` so encoders' position tables are never overrun), rows up to a power of
        two (capped at ``batch_size``) when ``bucket_rows``."""
        m = self.pad_multiple
        if m > 1:
            width = max(width, min(-(-width // m) * m, int(self.cfg.max_length)))
        if self.bucket_rows:
            rows = max(rows, min(1 << (rows - 1).bit_length(), int(self.cfg.batch_size)))
        return rows, width

    def warmup_shapes(self) -> list[tuple[int, int]]:
        """Every ``(rows, width)`` a forward batch can be run as with widths up to
        ``min(warmup_max_width, max_length)``, widest and fullest first."""
        bs, cap = int(self.cfg.batch_size), min(int(self.cfg.warmup_max_width), int(self.cfg.max_length))
        rows = sorted({self.padded_shape(r, 1)[0] for r in range(1, bs + 1)}, reverse=True)
        widths = sorted({self.padded_shape(1, w)[1] for w in range(1, cap + 1)}, reverse=True)
        return [(r, w) for w in widths for r in rows if w <= cap]

    def warmup(self) -> float:
        """One dummy forward per bucket shape (:meth:`warmup_shapes`) so that the one-off
        per-shape CUDA cost is paid at load, not by a server's first requests; returns seconds."""
        import torch

        shapes = self.warmup_shapes()
        t0 = time.perf_counter()
        with torch.inference_mode():
            for rows, width in shapes:
                # Real rows of mixed lengths (so the mask has pads, as real batches do); the
                # forward runs at exactly (rows, width).
                batch = [[self.pad_id] * max(1, width - 1)] + [[self.pad_id] * max(1, width // 2)] * (rows - 1)
                self._forward_batch(batch, shape=(rows, width))
        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - t0
        logger.info("%s: pre-warmed %d forward shapes in %.1f s", self.backend, len(shapes), seconds)
        return seconds

    def _forward_batch(self, batch: list[list[int]], shape: tuple[int, int] | None = None):
        import torch

        n_real = len(batch)
        rows, width = shape or self.padded_shape(n_real, max(len(s) for s in batch))
        # Dummy rows: one real token (a pad id, mask 1) so no row is fully masked (which can
        # give NaN in attention); they are cut off before returning.
        batch = batch + [[self.pad_id]] * (rows - n_real)
        pad = self.pad_id
        if self.last_token:  # left padding, as OpenRLHF's collate_fn
            ids = torch.tensor([[pad] * (width - len(s)) + s for s in batch], dtype=torch.long)
            mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in batch], dtype=torch.long)
        else:
            ids = torch.tensor([s + [pad] * (width - len(s)) for s in batch], dtype=torch.long)
            mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in batch], dtype=torch.long)
        ids, mask = ids.to(self.device), mask.to(self.device)
        if not self.last_token:
            return self.module(input_ids=ids, attention_mask=mask).logits[:n_real]
        # Exactly OpenRLHF's RewardModel.forward (openrlhf/models/model.py, 0.11.2).
        eos_indices = mask.size(1) - 1 - mask.long().fliplr().argmax(dim=1, keepdim=True)
        position_ids = mask.long().cumsum(-1) - 1
        position_ids.masked_fill_(mask == 0, 1)
        hidden = self.module(ids, attention_mask=mask, position_ids=position_ids)["last_hidden_state"]
        values = self.head(hidden)  # [B, T, n_outputs]
        index = eos_indices.unsqueeze(-1).expand(-1, -1, values.size(-1))
        return values.gather(dim=1, index=index).squeeze(1)[:n_real]

    def close(self) -> None:
        self.module = None  # type: ignore[assignment]
        self.head = None
        self._owner = None
