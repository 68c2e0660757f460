"""Model backends (`bt`, `per-requirement`, `classifier`) on tiny offline checkpoints.

The `bt` scorer is compared bit for bit with OpenRLHF 0.11.2's own code: its
``RewardDataset`` (train_rm's formatting, EOS and truncation) and
``get_llm_for_sequence_regression`` forward, and its ``serve_rm`` proxy.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import tiny_models
from openrlhf_stubs import use_openrlhf_stubs

from openrlhf_reward.schema import Requirement
from openrlhf_reward.scorers import ScoreRequest, get_scorer
from openrlhf_reward.scorers.hf_rm import CheckpointError

# Every test here loads a model: the slow tier. torch is imported by the fixture below, not
# at import time (the fast tier imports this module too, and must not import torch).
pytestmark = pytest.mark.slow
torch = None


@pytest.fixture(scope="module", autouse=True)
def _import_torch():
    global torch
    torch = pytest.importorskip("torch")

HAVE_OPENRLHF = use_openrlhf_stubs()
needs_openrlhf = pytest.mark.skipif(not HAVE_OPENRLHF, reason="openrlhf is not importable")

MEAN, STD = 0.7, 2.5

REQS = (
    Requirement("c1", "length", "Write exactly six sentences."),
    Requirement("c2", "style", "The response must be formal."),
    Requirement("c3", "content", "Mention the budget."),
)

# Different lengths on purpose: one forward batch needs left padding.
PAIRS = [
    ("Write a short poem about the sea.\n\nRequirements:\n1. Use exactly four lines.",
     "The sea is wide.\nThe sea is blue.\nWaves come and go.\nAnd so do you."),
    ("Hi", "Yes."),
    ("Write a plan for the week.", "<<Title>> A plan for the week: Monday, Tuesday, Wednesday.\n\n- first bullet\n- second bullet"),
    ("Does the response satisfy the requirement?", "No"),
    ("Write exactly six sentences about the budget. Be formal.",
     "The budget grew by 12% this year. It must be formal. Yes. No. The answer follows every requirement. Does it?"),
]


def requests(pairs=PAIRS, reqs=REQS) -> list[ScoreRequest]:
    return [ScoreRequest(prompt=p, response=r, requirements=reqs) for p, r in pairs]


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory) -> Path:
    if not HAVE_OPENRLHF:
        pytest.skip("openrlhf is not importable")
    return tiny_models.build_openrlhf_rm(tmp_path_factory.mktemp("orm") / "rm", mean=MEAN, std=STD)


def openrlhf_model(path: Path, normalize: bool = False):
    """OpenRLHF's own reward model (bf16 on disk, run in float32 so the comparison is exact)."""
    from openrlhf.models import get_llm_for_sequence_regression

    model = get_llm_for_sequence_regression(
        str(path), "reward", param_dtype="bf16", attn_implementation="sdpa", normalize_reward=normalize
    )
    return model.float().eval()


def openrlhf_train_rm_batch(path: Path, pairs, max_len: int):
    """Token ids + mask for (prompt, response) pairs exactly as train_rm builds its chosen side."""
    from datasets import Dataset
    from openrlhf.datasets import RewardDataset
    from openrlhf.utils import get_tokenizer

    tok = get_tokenizer(str(path), None, "left", None)
    data = SimpleNamespace(prompt_key="prompt", chosen_key="chosen", rejected_key="rejected",
                           apply_chat_template=True, tokenizer_chat_template=None)
    rows = [{"prompt": [{"role": "user", "content": p}],
             "chosen": [{"role": "assistant", "content": r}],
             "rejected": [{"role": "assistant", "content": "-"}]} for p, r in pairs]
    ds = RewardDataset(Dataset.from_list(rows), tok, max_len, SimpleNamespace(args=SimpleNamespace(data=data)),
                       num_processors=1)
    items = [ds[i] for i in range(len(ds))]
    ids, mask, _, _, _ = ds.collate_fn(items)
    return [it[0][0].tolist() for it in items], ids, mask


# ---- bt: bit-level agreement with OpenRLHF ---------------------------------------------


@contextlib.contextmanager
def one_cpu_thread():
    """Run both sides of a bit-for-bit comparison on one intra-op thread.

    With several threads, a float32 GEMM's reduction order depends on how many threads the
    BLAS library actually uses, which MKL may lower on a loaded machine (dynamic
    threading): the two sides can then differ in the last bit. One thread fixes the
    kernels and the order on both sides.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@needs_openrlhf
@pytest.mark.parametrize("max_len", [4096, 24])
def test_bt_matches_openrlhf_train_rm_pipeline_bit_for_bit(rm_dir, max_len):
    # no dtype: the CPU default (auto) itself must be bit-identical to OpenRLHF's fp32
    scorer = get_scorer("bt", model=str(rm_dir), device="cpu", batch_size=8, max_length=max_len)
    assert scorer.rm.dtype == torch.float32
    ref_ids, ids, mask = openrlhf_train_rm_batch(rm_dir, PAIRS, max_len)
    # same tokens as train_rm (chat template, rstrip, " " + EOS, truncation, EOS forced last)
    mine = [scorer.encode_text(scorer.format_text(p, r))[0] for p, r in PAIRS]
    assert mine == ref_ids
    assert len({len(x) for x in mine}) > 1  # the batch really needs left padding
    assert all(len(x) <= max_len and x[-1] == scorer.tokenizer.eos_token_id for x in mine)
    # same tensor shape on both sides: one forward batch, padded to the longest row only
    assert len(PAIRS) <= 8 and scorer.rm.padded_shape(len(PAIRS), ids.shape[1]) == tuple(ids.shape)
    with one_cpu_thread():
        with torch.no_grad():
            ref = openrlhf_model(rm_dir)(ids, mask)
        results = scorer.score(requests())
    got = torch.tensor([r.reward for r in results], dtype=torch.float32)
    assert torch.equal(got, ref), (got, ref)
    assert len(set(got.tolist())) == len(PAIRS)  # a random model still separates the texts
    assert all(r.requirement_scores == {"c1": None, "c2": None, "c3": None} for r in results)
    full = [len(scorer.tokenizer(scorer.format_text(p, r), add_special_tokens=False)["input_ids"])
            for p, r in PAIRS]
    assert [r.info["truncated"] for r in results] == [n > max_len for n in full]
    if max_len == 24:
        assert 0 < sum(n > 24 for n in full) < len(full)


@needs_openrlhf
def test_bt_normalisation_uses_config_mean_std_like_openrlhf_formula(rm_dir):
    """normalize=True equals OpenRLHF's own ``(r - mean) / std`` with the buffers that
    get_llm_for_sequence_regression should have loaded from config.json."""
    ref_ids, ids, mask = openrlhf_train_rm_batch(rm_dir, PAIRS, 4096)
    model = openrlhf_model(rm_dir, normalize=True)
    # OpenRLHF's buffers are non-persistent and re-initialised by from_pretrained: after
    # loading they do not hold config.json's values (why its serve_rm normalises wrongly).
    # Put the config values in, then let OpenRLHF's forward normalise.
    model.mean[0], model.std[0] = MEAN, STD
    with torch.no_grad():
        ref = model(ids, mask)
        raw = openrlhf_model(rm_dir)(ids, mask)
    assert not torch.allclose(ref, raw)
    norm = get_scorer("bt", model=str(rm_dir), dtype="float32", normalize=True).score(requests())
    got = torch.tensor([r.reward for r in norm], dtype=torch.float32)
    assert torch.equal(got, ref)
    assert all(r.info["normalized"] for r in norm)


@needs_openrlhf
def test_bt_batching_does_not_change_scores(rm_dir):
    big = get_scorer("bt", model=str(rm_dir), dtype="float32", batch_size=16).score(requests())
    small = get_scorer("bt", model=str(rm_dir), dtype="float32", batch_size=2).score(requests())
    single = [get_scorer("bt", model=str(rm_dir), dtype="float32", batch_size=1).score([q])[0] for q in requests()[:2]]
    for a, b in zip(big, small, strict=True):
        assert a.reward == pytest.approx(b.reward, abs=1e-5)
    for a, b in zip(big, single, strict=False):
        assert a.reward == pytest.approx(b.reward, abs=1e-5)


@needs_openrlhf
def test_bt_score_texts_matches_openrlhf_serve_rm_in_bf16(rm_dir):
    """score_texts() == OpenRLHF serve_rm's RewardModelProxy.get_reward (bf16, its default)."""
    from openrlhf.cli.serve_rm import RewardModelProxy

    args = SimpleNamespace(
        reward=SimpleNamespace(model_name_or_path=str(rm_dir), normalize_enable=False),
        ds=SimpleNamespace(attn_implementation="sdpa", experts_implementation=None, param_dtype="bf16",
                           load_in_4bit=False, value_head_prefix="score", packing_samples=False),
        data=SimpleNamespace(max_len=2048, disable_fast_tokenizer=False),
        batch_size=None,
    )
    proxy = RewardModelProxy(args)
    scorer = get_scorer("bt", model=str(rm_dir), dtype="bfloat16", max_length=2048)
    queries = [scorer.format_text(p, r) for p, r in PAIRS]  # prompt + response + EOS, as OpenRLHF sends
    ref = torch.tensor(proxy.get_reward(queries), dtype=torch.float32)
    got = torch.tensor(scorer.score_texts(queries), dtype=torch.float32)
    assert torch.equal(got, ref), (got, ref)


def test_hand_written_checkpoint_loads_in_openrlhf_identically(tmp_path):
    """build_openrlhf_rm's by-hand writer produces the real format (when openrlhf is absent)."""
    d = tiny_models.build_openrlhf_rm(tmp_path / "rm", use_openrlhf=False)
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["value_head_prefix"] == "score" and cfg["mean"] == 0.25 and cfg["std"] == 1.75
    scorer = get_scorer("bt", model=str(d), dtype="float32")
    got = torch.tensor([r.reward for r in scorer.score(requests())], dtype=torch.float32)
    if not HAVE_OPENRLHF:
        pytest.skip("openrlhf is not importable; checked that the scorer loads the hand-written format")
    _, ids, mask = openrlhf_train_rm_batch(d, PAIRS, 4096)
    with torch.no_grad():
        ref = openrlhf_model(d)(ids, mask)
    assert torch.equal(got, ref)


# ---- bt: HF sequence-classification layout ---------------------------------------------


PAD_IS_EOS_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}{{ eos_token }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def hf_rm_pad_eos_dir(tmp_path_factory) -> Path:
    """A Skywork-style num_labels=1 Llama RM whose pad token is its EOS, and whose chat
    template ends every turn with EOS and starts with BOS."""
    from transformers import AutoTokenizer, LlamaForSequenceClassification

    d = tmp_path_factory.mktemp("hf_rm_pad_eos")
    tiny_models.build_tokenizer(d)
    tok = AutoTokenizer.from_pretrained(d)
    tok.pad_token = tok.eos_token
    tok.chat_template = PAD_IS_EOS_TEMPLATE
    tok.save_pretrained(d)
    torch.manual_seed(3)
    cfg = tiny_models._llama_config(tok, num_labels=1, pad_token_id=tok.eos_token_id)
    model = LlamaForSequenceClassification(cfg)
    with torch.no_grad():
        model.score.weight.normal_(0, 0.5)
    model.save_pretrained(d)
    return d


def test_hf_seq_cls_rm_scores_last_real_token_even_when_pad_is_eos(hf_rm_pad_eos_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    d = hf_rm_pad_eos_dir
    scorer = get_scorer("bt", model=str(d), dtype="float32", batch_size=8)
    assert scorer.rm.layout == "hf-seq-cls"
    tok = AutoTokenizer.from_pretrained(d)
    model = AutoModelForSequenceClassification.from_pretrained(d, dtype=torch.float32).eval()
    texts = [scorer.format_text(p, r) for p, r in PAIRS]
    for (p, r), text in zip(PAIRS, texts, strict=True):
        full = tok.apply_chat_template(
            [{"role": "user", "content": p}, {"role": "assistant", "content": r}], tokenize=False)
        assert full.startswith(tok.bos_token) and text == full[len(tok.bos_token):]  # Skywork's BOS dedup
        assert text.endswith(tok.eos_token)  # the edge case: the last token is the pad id
    got = [r.reward for r in scorer.score(requests())]

    # Reference: one unpadded text at a time, read at the last token (what the RM was
    # trained to mean). HF's own pooling would skip trailing pad(==EOS) tokens, so ask for
    # the last position explicitly by running without a pad id.
    ref = []
    model.config.pad_token_id = None
    with torch.no_grad():
        for text in texts:
            ids = tok(text, return_tensors="pt")  # add_special_tokens=True adds the one BOS
            ref.append(model(**ids).logits[0, 0].item())
    assert got == pytest.approx(ref, abs=1e-5)

    # Naive batched HF pooling (pad == eos) reads an earlier token and gets other numbers.
    model.config.pad_token_id = tok.pad_token_id
    tok.padding_side = "left"
    enc = tok(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        naive = model(**enc).logits[:, 0].tolist()
    assert all(abs(a - b) > 1e-4 for a, b in zip(naive, ref, strict=True))


def test_bt_normalize_without_mean_std_is_a_clear_error(hf_rm_pad_eos_dir):
    with pytest.raises(CheckpointError, match="normalize=True needs 'mean' and 'std'"):
        get_scorer("bt", model=str(hf_rm_pad_eos_dir), normalize=True)


# ---- per-requirement -------------------------------------------------------------------


@needs_openrlhf
@pytest.mark.parametrize("activation", ["sigmoid", "raw"])
def test_per_requirement_is_bt_on_focus_prompts_then_mean(rm_dir, activation):
    from openrlhf_reward.scorers.per_requirement import FOCUS_TEMPLATE

    per = get_scorer("per-requirement", model=str(rm_dir), dtype="float32", activation=activation)
    bt = get_scorer("bt", model=str(rm_dir), dtype="float32")
    reqs = requests()[:3]
    results = per.score(reqs)
    for q, res in zip(reqs, results, strict=True):
        focus = [ScoreRequest(FOCUS_TEMPLATE.format(instruction=q.prompt, requirement=r.text), q.response)
                 for r in q.requirements]
        raw = [x.reward for x in bt.score(focus)]
        want = [1 / (1 + torch.exp(torch.tensor(-v, dtype=torch.float64)).item()) for v in raw] \
            if activation == "sigmoid" else raw
        assert list(res.requirement_scores) == ["c1", "c2", "c3"]
        assert list(res.requirement_scores.values()) == pytest.approx(want, abs=1e-5)
        assert list(res.info["raw_scores"].values()) == pytest.approx(raw, abs=1e-5)
        assert res.reward == pytest.approx(sum(want) / 3, abs=1e-5)
        assert res.requirement_types == {"c1": "length", "c2": "style", "c3": "content"}
        if activation == "sigmoid":
            assert set(res.type_adherence()) == {"length", "style", "content"}
    # the three focus prompts differ, so a random RM gives three different values
    assert len(set(results[0].requirement_scores.values())) == 3
    assert per.focus_prompt("Q", "R") == "Q\n\nFocus only on this requirement: R"


@needs_openrlhf
def test_per_requirement_without_requirements_gets_unscorable_reward(rm_dir):
    per = get_scorer("per-requirement", model=str(rm_dir), unscorable_reward=-1.0)
    [res] = per.score([ScoreRequest("Hi", "Yes.", ())])
    assert res.reward == -1.0 and res.info["n_scored"] == 0 and res.requirement_scores == {}


def test_per_requirement_works_on_hf_layout_too(hf_rm_pad_eos_dir):
    per = get_scorer("per-requirement", model=str(hf_rm_pad_eos_dir), dtype="float32")
    res = per.score(requests()[:2])
    assert all(0 < v < 1 for r in res for v in r.requirement_scores.values())


# ---- classifier ------------------------------------------------------------------------


def test_classifier_matches_the_papers_server_per_constraint(tiny_cls_dir):
    """Reference: WEval/server.py of the paper's repo -- one text per (answer, constraint),
    unpadded forward, softmax, P(label 1); the item score is the mean (server_eval.py)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from openrlhf_reward.scorers.classifier import PAPER_TEMPLATE

    scorer = get_scorer("classifier", model=str(tiny_cls_dir), dtype="float32", batch_size=4)
    tok = AutoTokenizer.from_pretrained(tiny_cls_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_cls_dir, num_labels=2, dtype=torch.float32)
    model.eval()
    reqs = requests()
    results = scorer.score(reqs)
    for q, res in zip(reqs, results, strict=True):
        probs = []
        for r in q.requirements:
            text = (f"You need to determine whether the response adheres to this constraint. Only output  1 if it "
                    f"does, otherwise only output  0.  Response: {q.response}. Constraint: {r.text}")
            assert text == PAPER_TEMPLATE.format(answer=q.response, question=r.text)
            inputs = tok(text, return_tensors="pt", truncation=True, padding=True)
            with torch.no_grad():
                probs.append(torch.softmax(model(**inputs).logits, dim=-1)[0][1].item())
        assert list(res.requirement_scores.values()) == pytest.approx(probs, abs=1e-5)
        assert res.reward == pytest.approx(sum(probs) / len(probs), abs=1e-5)
    assert len({r.reward for r in results}) > 1


def test_classifier_middle_truncation_keeps_the_constraint(tiny_cls_dir):
    scorer = get_scorer("classifier", model=str(tiny_cls_dir), max_length=32)
    long = " ".join(["The answer follows every requirement."] * 40)
    text = scorer.format_text("Q", long, "Mention the budget.")
    ids, truncated = scorer.encode_text(text)
    assert truncated and len(ids) == 32
    full = scorer.tokenizer(text)["input_ids"]
    assert ids[:16] == full[:16] and ids[16:] == full[-16:]
    assert scorer.tokenizer.decode(ids).endswith("Constraint: Mention the budget.")
    [res] = scorer.score([ScoreRequest("Q", long, REQS)])
    assert res.info["truncated"]



def test_classifier_on_an_encoder_model_uses_its_own_pooling(tmp_path):
    """BERT-style classifiers (no `score` head) run through their own forward, right-padded."""
    from transformers import BertConfig, BertForSequenceClassification

    tok = tiny_models.build_tokenizer(tmp_path)
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, num_labels=2, pad_token_id=tok.pad_token_id)).eval()
    model.save_pretrained(tmp_path)
    scorer = get_scorer("classifier", model=str(tmp_path), batch_size=4, dtype="float32")
    assert not scorer.rm.last_token
    reqs = [ScoreRequest("Q", "Yes. " * k, REQS) for k in (1, 5, 12)]
    for q, res in zip(reqs, scorer.score(reqs), strict=True):
        for r in REQS:
            with torch.no_grad():
                logits = model(**tok(scorer.format_text("Q", q.response, r.text), return_tensors="pt")).logits
            assert res.requirement_scores[r.id] == pytest.approx(torch.softmax(logits, -1)[0, 1].item(), abs=1e-6)


# ---- shape bucketing (pad_to_multiple_of, bucket_rows) ---------------------------------


def _bert_classifier(path: Path) -> Path:
    from transformers import BertConfig, BertForSequenceClassification

    tok = tiny_models.build_tokenizer(path)
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, num_labels=2, pad_token_id=tok.pad_token_id)).save_pretrained(path)
    return path


@pytest.mark.parametrize("kind", ["bt-openrlhf", "bt-hf-pad-is-eos", "classifier-encoder"])
def test_shape_bucketing_keeps_rewards_and_drops_dummy_rows(tmp_path, hf_rm_pad_eos_dir, kind):
    """Width padded to a multiple and rows to a power of two (the CUDA default) score as the
    unpadded batch; the dummy rows never reach the results. Off by default on CPU."""
    if kind == "bt-openrlhf":
        backend, d = "bt", tiny_models.build_openrlhf_rm(tmp_path / "rm", use_openrlhf=False)
    elif kind == "bt-hf-pad-is-eos":
        backend, d = "bt", hf_rm_pad_eos_dir
    else:
        backend, d = "classifier", _bert_classifier(tmp_path / "bert")
    plain = get_scorer(backend, model=str(d), dtype="float32", batch_size=8)
    assert (plain.rm.pad_multiple, plain.rm.bucket_rows) == (1, False)  # CPU "auto" = off
    on = get_scorer(backend, model=str(d), dtype="float32", batch_size=8, pad_to_multiple_of="16",
                    bucket_rows="true")
    shapes: list[tuple[int, int]] = []

    def record(module, args, kwargs):
        shapes.append(tuple((args[0] if args else kwargs["input_ids"]).shape))

    on.rm.module.register_forward_pre_hook(record, with_kwargs=True)
    reqs = requests()  # 5 items (x3 requirements for the classifier)

    def values(results):
        return [v for r in results for v in ([r.reward] + [x for x in r.requirement_scores.values() if x is not None])]

    want = plain.score(reqs)
    for subset in (reqs, reqs[:3], reqs[1:2]):
        shapes.clear()
        got = on.score(subset)
        assert len(got) == len(subset)
        assert values(got) == pytest.approx(values(want[reqs.index(subset[0]):][:len(subset)]), abs=1e-5)
        # the forward really ran padded shapes: rows a power of two, width a multiple of 16
        n_texts = len(subset) * (3 if backend == "classifier" else 1)
        assert sum(r for r, _ in shapes) >= n_texts
        assert all(r & (r - 1) == 0 and w % 16 == 0 for r, w in shapes), shapes
    shapes.clear()
    on.score(reqs[:3] if backend == "bt" else reqs[:1])  # 3 real rows -> 4 with one dummy row
    assert shapes[0][0] == 4
    with torch.inference_mode():  # the batch's own output already has the dummy row cut off
        assert on.rm._forward_batch([[5, 6, 7], [8, 9], [10]]).shape[0] == 3
    if backend == "bt":
        texts = [on.format_text(q.prompt, q.response) for q in reqs]
        longest = max(len(ids) for ids, _ in on.encode_texts(texts))
        assert longest % 16 and shapes[0][1] > max(len(ids) for ids, _ in on.encode_texts(texts[:3]))


def test_padded_shape_rules(tiny_cls_dir):
    s = get_scorer("classifier", model=str(tiny_cls_dir), batch_size=6, max_length=100,
                   pad_to_multiple_of=64, bucket_rows=True)
    shape = s.rm.padded_shape
    assert [shape(n, 10)[0] for n in (1, 2, 3, 4, 5, 6)] == [1, 2, 4, 4, 6, 6]  # capped at batch_size
    assert [shape(1, w)[1] for w in (1, 64, 65, 99, 100)] == [64, 64, 100, 100, 100]  # capped at max_length
    off = get_scorer("classifier", model=str(tiny_cls_dir), pad_to_multiple_of=0, bucket_rows=False)
    assert off.rm.padded_shape(3, 37) == (3, 37)
    with pytest.raises(ValueError, match="pad_to_multiple_of"):
        get_scorer("classifier", model=str(tiny_cls_dir), pad_to_multiple_of=-8)


def test_shape_warmup_runs_every_bucket_shape_once_and_keeps_rewards(tmp_path, caplog):
    """warmup_shapes=True (auto = CUDA only) runs one forward per (power-of-two rows) x (width
    multiple) shape up to warmup_max_width at load, and the rewards stay the same."""
    d = tiny_models.build_openrlhf_rm(tmp_path / "rm", use_openrlhf=False)
    opts = dict(model=str(d), dtype="float32", batch_size=6, max_length=100, pad_to_multiple_of=16, bucket_rows=True)
    cold = get_scorer("bt", **opts)
    assert cold.config.warmup_shapes is None  # auto: off on CPU
    counts: dict[tuple[int, int], int] = {}

    def record(module, args, kwargs):
        shape = tuple((args[0] if args else kwargs["input_ids"]).shape)
        counts[shape] = counts.get(shape, 0) + 1

    cold.rm.module.register_forward_pre_hook(record, with_kwargs=True)
    with caplog.at_level("INFO", logger="openrlhf_reward.scorers.hf_rm"):
        cold.rm.warmup()
    assert "pre-warmed 28 forward shapes" in caplog.text
    rows, widths = (1, 2, 4, 6), (16, 32, 48, 64, 80)  # widths up to warmup_max_width=80 (< max_length)
    cold.config.warmup_max_width = 80
    counts.clear()
    cold.rm.warmup()
    assert counts == {(r, w): 1 for r in rows for w in widths}
    cold.config.warmup_max_width = 1024  # capped at max_length=100, itself a possible width
    assert {w for _, w in cold.rm.warmup_shapes()} == {16, 32, 48, 64, 80, 96, 100}

    import transformers
    calls: list[tuple[int, ...]] = []
    real_forward = transformers.LlamaModel.forward

    def spy(self, *args, **kwargs):
        calls.append(tuple((args[0] if args else kwargs["input_ids"]).shape))
        return real_forward(self, *args, **kwargs)

    transformers.LlamaModel.forward = spy
    try:
        warm = get_scorer("bt", **opts, warmup_shapes="true", warmup_max_width="64")
    finally:
        transformers.LlamaModel.forward = real_forward
    assert sorted(calls) == sorted((r, w) for r in rows for w in (16, 32, 48, 64))  # at load, once each
    reqs = requests()
    assert [r.reward for r in warm.score(reqs)] == [r.reward for r in cold.score(reqs)]
    with pytest.raises(ValueError, match="pad_to_multiple_of"):
        get_scorer("bt", model=str(d), warmup_shapes=True)  # CPU auto = no width padding
    with pytest.raises(ValueError, match="warmup_max_width"):
        get_scorer("bt", model=str(d), warmup_max_width=0)


def test_batched_tokenisation_equals_one_text_at_a_time(tiny_cls_dir, hf_rm_pad_eos_dir):
    bt = get_scorer("bt", model=str(hf_rm_pad_eos_dir), max_length=24, truncation_side="middle")
    texts = [bt.format_text(p, r) for p, r in PAIRS]
    singles = []
    for t in texts:
        ids = bt.tokenizer(t)["input_ids"]
        singles.append((ids, False) if len(ids) <= 24 else (ids[:12] + ids[-12:], True))
    assert bt.encode_texts(texts) == singles and any(tr for _, tr in singles)
    cls = get_scorer("classifier", model=str(tiny_cls_dir))
    texts = [cls.format_text(p, r, "Mention the budget.") for p, r in PAIRS]
    assert cls.encode_texts(texts) == [(cls.tokenizer(t)["input_ids"], False) for t in texts]


# ---- configuration and errors ----------------------------------------------------------


def test_bad_checkpoint_paths_and_layouts_are_named(tmp_path, tiny_cls_dir, tiny_lm_dir):
    missing = tmp_path / "nope"
    with pytest.raises(CheckpointError, match="nope.*no such folder"):
        get_scorer("bt", model=str(missing))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        get_scorer("bt", model=str(tmp_path / "empty"))
    with pytest.raises(CheckpointError, match="cannot tell the reward-model layout"):
        get_scorer("bt", model=str(tiny_lm_dir))  # a causal LM is not a reward model
    with pytest.raises(CheckpointError, match=r"num_labels=1.*num_labels=2.*'classifier'"):
        get_scorer("bt", model=str(tiny_cls_dir))
    with pytest.raises(CheckpointError, match=r"num_labels=1.*num_labels=2"):
        get_scorer("per-requirement", model=str(tiny_cls_dir))
    with pytest.raises(ValueError, match="'model'.*required"):
        get_scorer("bt")
    with pytest.raises(TypeError, match="unknown option.*'modle'"):
        get_scorer("bt", modle=str(tiny_cls_dir))
    with pytest.raises(ValueError, match="truncation_side"):
        get_scorer("classifier", model=str(tiny_cls_dir), truncation_side="top")
    with pytest.raises(ValueError, match="option 'batch_size' expects.*'many'"):
        get_scorer("classifier", model=str(tiny_cls_dir), batch_size="many")


def test_classifier_rejects_scalar_rm_and_missing_head(tmp_path, hf_rm_pad_eos_dir):
    with pytest.raises(CheckpointError, match=r"'classifier' needs .*num_labels=2.*'bt' or 'per-requirement'"):
        get_scorer("classifier", model=str(hf_rm_pad_eos_dir))
    # an OpenRLHF-format folder whose value head is missing from the weights
    d = tiny_models.build_openrlhf_rm(tmp_path / "rm", use_openrlhf=False)
    cfg = json.loads((d / "config.json").read_text())
    cfg["value_head_prefix"] = "value_head"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="value head 'value_head.weight' not found"):
        get_scorer("bt", model=str(d))
    with pytest.raises(CheckpointError, match=r"'classifier' needs .*OpenRLHF train_rm reward model"):
        get_scorer("classifier", model=str(d))


def test_string_options_are_coerced(tiny_cls_dir):
    s = get_scorer("classifier", model=str(tiny_cls_dir), batch_size="3", add_special_tokens="false",
                   unscorable_reward="0.5", dtype="fp32")
    assert s.config.batch_size == 3 and s.config.add_special_tokens is False
    assert s.config.unscorable_reward == 0.5 and s.rm.dtype == torch.float32


# ---- lm-eval: `weval --model rm` -------------------------------------------------------


def _weval_file(path: Path) -> Path:
    rows = []
    for k in range(2):
        reqs = [r.to_dict() for r in REQS]
        from openrlhf_reward.schema import build_prompt

        rows.append({
            "id": f"bt-{k}", "category": "creative_writing", "query": f"Write a poem about the sea {k}.",
            "requirements": reqs,
            "prompt": build_prompt(f"Write a poem about the sea {k}.", REQS),
            "candidates": [
                {"response": PAIRS[0][1] + " extra" * k, "dropped": [], "gold_rank": 1},
                {"response": PAIRS[2][1], "dropped": ["c3"], "gold_rank": 2},
                {"response": PAIRS[4][1], "dropped": ["c3", "c1"], "gold_rank": 3},
            ],
            "source": {"teacher": "hand-written", "seed": "test"},
        })
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.slow
@needs_openrlhf
def test_weval_model_rm_scores_equal_the_bt_scorer(tmp_path, rm_dir):
    from openrlhf_reward.schema import load_weval_jsonl

    data = _weval_file(tmp_path / "docs.jsonl")
    out = tmp_path / "out"
    exe = Path(sys.executable).parent / "weval"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "weval_tasks"]
    proc = subprocess.run(
        [*cmd, "--model", "rm", "--model_args", f"pretrained={rm_dir},backend=bt,dtype=float32",
         "--tasks", "weval-creative_writing", "--batch_size", "2", "--device", "cpu",
         "--metadata", json.dumps({"data_files": str(data)}), "--output_path", str(out), "--log_samples"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    [samples_file] = list(out.rglob("samples_weval-creative_writing_*.jsonl"))
    samples = [json.loads(line) for line in samples_file.read_text().splitlines()]
    docs = {d.id: d for d in load_weval_jsonl(data)}
    assert sorted(s["doc"]["id"] for s in samples) == sorted(docs)
    scorer = get_scorer("bt", model=str(rm_dir), dtype="float32")
    for rec in samples:
        doc = docs[rec["doc"]["id"]]
        got = [float(r[0][0]) for r in rec["resps"]]
        want = [r.reward for r in scorer.score(
            [ScoreRequest(doc.prompt, c.response, doc.requirements, doc.query) for c in doc.candidates])]
        assert got == pytest.approx(want, abs=1e-5)


@pytest.mark.slow
def test_rm_model_args_reach_the_backend(tiny_cls_dir, hf_rm_pad_eos_dir):
    import lm_eval.api.registry as registry

    import weval_tasks.models  # noqa: F401  (registers rm)

    rm_cls = registry.get_model("rm")
    lm = rm_cls.create_from_arg_string(
        f"pretrained={hf_rm_pad_eos_dir},backend=per-requirement,activation=raw,max_length=64",
        {"batch_size": 3, "max_batch_size": None, "device": "cpu"},
    )
    assert lm.scorer.name == "per-requirement"
    cfg = lm.scorer.config
    assert (cfg.batch_size, cfg.activation, cfg.max_length, cfg.device) == (3, "raw", 64, "cpu")
    lm = rm_cls.create_from_arg_string(f"pretrained={tiny_cls_dir},backend=classifier", {"batch_size": "auto"})
    assert lm.scorer.name == "classifier" and lm.scorer.config.batch_size == 16
    with pytest.raises(ValueError, match="unknown reward backend 'nope'; available: .*judge.*rules"):
        rm_cls.create_from_arg_string(f"pretrained={tiny_cls_dir},backend=nope")
    with pytest.raises(ValueError, match="use --model remote-rm"):
        rm_cls.create_from_arg_string("backend=remote,url=http://127.0.0.1:1")
    with pytest.raises(ValueError, match="pretrained=PATH"):
        rm_cls.create_from_arg_string("backend=bt")
    with pytest.raises(TypeError, match="unknown option.*'temprature'"):
        rm_cls.create_from_arg_string(f"pretrained={tiny_cls_dir},backend=classifier,temprature=1")


def test_dtype_auto_is_float32_on_cpu_and_bfloat16_is_opt_in(rm_dir):
    """Rewards must not depend on the machine: auto is float32 on every CPU (no timing probe),
    bf16 only when asked for; on GPU auto stays bf16."""
    from openrlhf_reward.scorers import hf_rm

    assert hf_rm._resolve_dtype("auto", "cpu") is torch.float32
    assert hf_rm._resolve_dtype("auto", "cuda:1") is torch.bfloat16
    auto = get_scorer("bt", model=str(rm_dir), device="cpu")
    assert auto.config.dtype == "auto" and auto.rm.dtype == torch.float32
    assert {p.dtype for p in [*auto.rm.module.parameters(), *auto.rm.head.parameters()]} == {torch.float32}
    pinned = get_scorer("bt", model=str(rm_dir), device="cpu", dtype="float32")
    with one_cpu_thread():  # same kernels on both sides, so equality is exact
        assert [r.reward for r in auto.score(requests())] == [r.reward for r in pinned.score(requests())]
    bf16 = get_scorer("bt", model=str(rm_dir), device="cpu", dtype="bfloat16")
    assert bf16.rm.dtype == torch.bfloat16
