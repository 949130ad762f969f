#!/usr/bin/env python3
"""Make the small GGUF test fixtures of llama-model (llama-model/tests/data/gguf/).

Requires: pip install gguf numpy sentencepiece (and, for the SmolLM2 references,
tokenizers + transformers and the model fetched by scripts/fetch-smollm2.sh).

Outputs (all seeded, deterministic):
  quants.gguf / quants_reference.{json,bin}
      One tensor of each supported ggml type. Quantized tensors are random *raw
      block bytes* (every bit pattern of the quant fields is exercised; the f16
      scales are set to sane random values), plus Q8_0/Q4_0/Q4_1/Q5_0/Q5_1 tensors
      quantized from random floats with gguf.quants.quantize. The reference .bin
      holds Python gguf's `gguf.quants.dequantize` output (f32 LE) for each tensor;
      the .json lists name, ggml type, numpy shape, offset/count into the .bin, and
      the file's metadata (one key of every GGUF value type, arrays, a nested array).
  tiny_llama.gguf / tiny_llama_reference.{json,bin}
      A 2-layer Llama (hidden 16, 4 heads of 4, 2 KV heads) with f16 weights written the
      way convert_hf_to_gguf.py does it (HF names mapped, Q/K rows permuted, shapes
      reversed), an untied output, and a SentencePiece BPE tokenizer trained here
      with byte fallback. The reference holds the original HF tensors (f16 LE), the
      expected config, and the ids SentencePiece itself gives for test strings.
  smollm2_tokenizer_reference.json, smollm2_tensor_slices.json (only if
  models/SmolLM2-135M-Instruct.Q4_1.gguf exists)
      Token ids for ~25 strings from transformers' GGUF tokenizer converter and from
      a tokenizer built like SmolLM2's HF tokenizer.json; dequantized slices of a
      few tensors by Python gguf.
"""
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T, GGUFWriter
from gguf.quants import dequantize, quantize

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "llama-model" / "tests" / "data" / "gguf"
SMOLLM2 = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

# Raw block layouts: (block elems, block bytes, byte offsets of f16 fields).
F16_FIELDS = {
    T.Q8_0: (32, 34, [0]),
    T.Q4_0: (32, 18, [0]),
    T.Q4_1: (32, 20, [0, 2]),
    T.Q5_0: (32, 22, [0]),
    T.Q5_1: (32, 24, [0, 2]),
    T.Q2_K: (256, 84, [80, 82]),
    T.Q3_K: (256, 110, [108]),
    T.Q4_K: (256, 144, [0, 2]),
    T.Q5_K: (256, 176, [0, 2]),
    T.Q6_K: (256, 210, [208]),
}


def random_blocks(rng, qtype, rows, cols):
    qk, nbytes, f16_at = F16_FIELDS[qtype]
    nblocks = rows * cols // qk
    raw = rng.integers(0, 256, size=(nblocks, nbytes), dtype=np.uint8)
    for off in f16_at:
        vals = (rng.standard_normal(nblocks) * 0.05).astype(np.float16)
        raw[:, off:off + 2] = vals.view(np.uint8).reshape(nblocks, 2)
    return raw.reshape(rows, cols // qk * nbytes)


def write_quants():
    rng = np.random.default_rng(1234)
    w = GGUFWriter(str(OUT / "quants.gguf"), "test")
    meta = {
        "test.u8": (w.add_uint8, 200), "test.i8": (w.add_int8, -100),
        "test.u16": (w.add_uint16, 60000), "test.i16": (w.add_int16, -30000),
        "test.u32": (w.add_uint32, 4000000000), "test.i32": (w.add_int32, -2000000000),
        "test.u64": (w.add_uint64, 2**63 + 5), "test.i64": (w.add_int64, -(2**62)),
        "test.f32": (w.add_float32, 1.5), "test.f64": (w.add_float64, -2.25e-300),
        "test.bool_true": (w.add_bool, True), "test.bool_false": (w.add_bool, False),
        "test.string": (w.add_string, "héllo ✓ 🦙"),
        "test.array_i32": (w.add_array, [1, -2, 3]),
        "test.array_str": (w.add_array, ["a", "", "ü"]),
        "test.array_nested": (w.add_array, [[1, 2], [3]]),
    }
    for k, (f, v) in meta.items():
        f(k, v)
    tensors = []
    # Plain float types.
    x = rng.standard_normal((3, 64)).astype(np.float32)
    tensors.append(("f32", T.F32, x, x))
    h = rng.standard_normal((3, 64)).astype(np.float16)
    tensors.append(("f16", T.F16, h, h.astype(np.float32)))
    b = quantize(rng.standard_normal((3, 64)).astype(np.float32), T.BF16)
    tensors.append(("bf16", T.BF16, b, dequantize(b, T.BF16)))
    # Random raw blocks of every quant type.
    for qt, (qk, _, _) in F16_FIELDS.items():
        cols = 512 if qk == 256 else 96
        raw = random_blocks(rng, qt, 2, cols)
        tensors.append((f"raw_{qt.name.lower()}", qt, raw, dequantize(raw, qt)))
    # Quantized from floats by Python gguf.
    for qt in (T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1):
        x = rng.standard_normal((2, 64)).astype(np.float32)
        q = quantize(x, qt)
        tensors.append((f"quantized_{qt.name.lower()}", qt, q, dequantize(q, qt)))
    # A 3-D and a 1-D tensor, for the shape handling.
    x3 = rng.standard_normal((2, 3, 32)).astype(np.float32)
    tensors.append(("f32_3d", T.F32, x3, x3))
    x1 = rng.standard_normal(5).astype(np.float32)
    tensors.append(("f32_1d", T.F32, x1, x1))

    manifest, blob, off = [], io.BytesIO(), 0
    for name, qt, data, deq in tensors:
        if qt in (T.F32, T.F16):
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, data, raw_dtype=qt)
        deq = np.ascontiguousarray(deq, dtype="<f4")
        blob.write(deq.tobytes())
        manifest.append({"name": name, "ggml_type": qt.name, "shape": list(deq.shape),
                         "offset": off, "count": int(deq.size)})
        off += int(deq.size)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    (OUT / "quants_reference.bin").write_bytes(blob.getvalue())
    expected_meta = {k: v for k, (f, v) in meta.items()}
    expected_meta["test.u64"] = str(2**63 + 5)  # beyond JSON-safe range: compare as text
    (OUT / "quants_reference.json").write_text(json.dumps(
        {"tensors": manifest, "metadata": expected_meta}, indent=1, ensure_ascii=False))


CORPUS_WORDS = ("the a quick brown fox jumps over lazy dog llama model weights delta safety "
                "tokenizer merge byte fallback hello world Paris France capital answer question "
                "compress fine tuning layer head rotary embedding norm").split()


def train_sentencepiece():
    import sentencepiece as spm
    rng = np.random.default_rng(7)
    lines = []
    for _ in range(3000):
        n = int(rng.integers(3, 12))
        words = [CORPUS_WORDS[i] for i in rng.integers(0, len(CORPUS_WORDS), size=n)]
        if rng.random() < 0.3:
            words.append(str(int(rng.integers(0, 1000))))
        lines.append(" ".join(words) + rng.choice([".", "!", "?", ","]))
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, model_type="bpe",
        vocab_size=320, byte_fallback=True, character_coverage=1.0,
        add_dummy_prefix=True, remove_extra_whitespaces=False, split_digits=False,
        normalization_rule_name="identity", bos_id=1, eos_id=2, unk_id=0, pad_id=-1,
        user_defined_symbols=["<tool>"], minloglevel=2)
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


TOKENIZER_STRINGS = [
    "Hello world", "the quick brown fox", " leading space", "two  spaces", "trailing ",
    "Paris, France!", "12345 67", "unseen: zebra Quartz", "ünïcödé Straße", "日本語テキスト",
    "emoji 🦙🙂", "tabs\tand\nnewlines\n\n", "<tool> user tag", "", "a", "llama model weights",
]


def permute(w, n_head):
    # convert_hf_to_gguf.py LlamaModel.permute
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def write_tiny_llama():
    sp = train_sentencepiece()
    n = sp.get_piece_size()
    tokens, scores, types = [], [], []
    for i in range(n):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        if sp.is_unknown(i):
            types.append(2)
        elif sp.is_control(i):
            types.append(3)
        elif sp.is_byte(i):
            types.append(6)
        elif sp.is_unused(i):
            types.append(5)
        elif tokens[-1] == "<tool>":
            types.append(4)
        else:
            types.append(1)
    hidden, n_head, n_kv, ffn, n_layer = 16, 4, 2, 24, 2
    hd = hidden // n_head
    rng = np.random.default_rng(99)
    hf = {}
    f16 = lambda *s: (rng.standard_normal(s) * 0.1).astype(np.float16)
    hf["model.embed_tokens.weight"] = f16(n, hidden)
    for l in range(n_layer):
        p = f"model.layers.{l}."
        hf[p + "self_attn.q_proj.weight"] = f16(n_head * hd, hidden)
        hf[p + "self_attn.k_proj.weight"] = f16(n_kv * hd, hidden)
        hf[p + "self_attn.v_proj.weight"] = f16(n_kv * hd, hidden)
        hf[p + "self_attn.o_proj.weight"] = f16(hidden, n_head * hd)
        hf[p + "mlp.gate_proj.weight"] = f16(ffn, hidden)
        hf[p + "mlp.up_proj.weight"] = f16(ffn, hidden)
        hf[p + "mlp.down_proj.weight"] = f16(hidden, ffn)
        hf[p + "input_layernorm.weight"] = (1 + f16(hidden)).astype(np.float16)
        hf[p + "post_attention_layernorm.weight"] = (1 + f16(hidden)).astype(np.float16)
    hf["model.norm.weight"] = (1 + f16(hidden)).astype(np.float16)
    hf["lm_head.weight"] = f16(n, hidden)

    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    sub = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
           "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
           "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
           "post_attention_layernorm": "ffn_norm"}

    w = GGUFWriter(str(OUT / "tiny_llama.gguf"), "llama")
    w.add_name("tiny-llama-fixture")
    w.add_block_count(n_layer)
    w.add_context_length(256)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ffn)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_dimension_count(hd)
    w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
    w.add_rope_scaling_factor(2.0)
    w.add_file_type(1)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}")
    for name, t in hf.items():
        if name in names:
            g = names[name]
        else:
            l, rest = name[len("model.layers."):].split(".", 1)
            mod, suffix = rest.rsplit(".", 1)
            g = f"blk.{l}.{sub[mod]}.{suffix}"
        data = t
        if name.endswith("q_proj.weight"):
            data = permute(t, n_head)
        elif name.endswith("k_proj.weight"):
            data = permute(t, n_kv)
        w.add_tensor(g, np.ascontiguousarray(data))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    blob, manifest, off = io.BytesIO(), [], 0
    for name, t in hf.items():
        blob.write(np.ascontiguousarray(t, dtype="<f2").tobytes())
        manifest.append({"name": name, "shape": list(t.shape), "offset": off, "count": int(t.size)})
        off += int(t.size)
    (OUT / "tiny_llama_reference.bin").write_bytes(blob.getvalue())
    enc = [{"text": s, "ids": [1] + sp.encode(s)} for s in TOKENIZER_STRINGS if "<tool>" not in s]
    (OUT / "tiny_llama_reference.json").write_text(json.dumps({
        "tensors": manifest,
        "config": {"hidden_size": hidden, "num_attention_heads": n_head, "num_key_value_heads": n_kv,
                   "intermediate_size": ffn, "num_hidden_layers": n_layer, "vocab_size": n,
                   "head_dim": hd, "rope_theta": 10000.0, "rms_norm_eps": 1e-6,
                   "max_position_embeddings": 256, "tie_word_embeddings": False,
                   "rope_scaling": {"type": "linear", "rope_type": "linear", "factor": 2.0}},
        "sentencepiece_encodings": enc,
    }, indent=1, ensure_ascii=False))


SMOLLM2_STRINGS = [
    "Hello, world!", "What is the capital of France?", "The capital of France is Paris.",
    "  leading and trailing spaces  ", "line one\nline two\n\n\ttabbed", "1234567890", "Version 3.14 costs $42",
    " 2024-11-28 12:30:59", "naïve café résumé Straße", "日本語のテキストです。", "Привет, мир!",
    "emoji: 🦙🔥👍🏽 and ❤️", "def f(x):\n    return x**2  # square", "fn main() { println!(\"hi\"); }",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n", "<|endoftext|>", "a<|im_end|>b",
    "I'm you're they'll we've she'd", "URL: https://example.com/path?q=1&r=2", "\u00a0non-breaking\u2003spaces",
    "mixed CASE and snake_case and camelCase", "!!!???...", "", " ", "x" * 30,
]


def transformers_gguf_tokenizer(path):
    """transformers' own GGUF tokenizer conversion (what AutoTokenizer.from_pretrained(gguf_file=...)
    runs), fed with metadata read by gguf-py: transformers' GGUF metadata reader imports torch,
    which is not installed here, but the converter itself does not need it."""
    from gguf import GGUFReader
    from transformers.integrations.gguf.gguf_tokenizer_mapping import (
        GGUF_TOKENIZER_MAPPING, convert_gguf_tokenizer)
    r = GGUFReader(str(path))
    meta = {k: f.contents() for k, f in r.fields.items()}
    tokenizer_dict = {name: meta[f"tokenizer.{key}"]
                      for key, name in GGUF_TOKENIZER_MAPPING["tokenizer"].items()
                      if f"tokenizer.{key}" in meta}
    backend, _ = convert_gguf_tokenizer(meta["general.architecture"], tokenizer_dict)
    return backend


def smollm2_references():
    if not SMOLLM2.exists():
        print(f"skip SmolLM2 references: {SMOLLM2} missing (run scripts/fetch-smollm2.sh)")
        return
    from gguf import GGUFReader
    from tokenizers import Tokenizer, pre_tokenizers

    backend = transformers_gguf_tokenizer(SMOLLM2)
    # SmolLM2's own tokenizer.json (HF Hub) pre-tokenizes with Digits(individual) + ByteLevel;
    # transformers' GGUF path uses ByteLevel only. Build the former from the same vocab too.
    hf_like = Tokenizer.from_str(backend.to_str())
    hf_like.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    cases = []
    for s in SMOLLM2_STRINGS:
        a = backend.encode(s, add_special_tokens=False).ids
        b = hf_like.encode(s, add_special_tokens=False).ids
        cases.append({"text": s, "ids": b, "transformers_gguf_ids": a})
    (OUT / "smollm2_tokenizer_reference.json").write_text(json.dumps({
        "source": "transformers %s GGUF tokenizer converter (AutoTokenizer.from_pretrained(gguf_file=...)), "
                  "tokenizers %s; `ids` with SmolLM2's HF pre-tokenizer Sequence[Digits(individual_digits), "
                  "ByteLevel], `transformers_gguf_ids` as transformers builds it (ByteLevel only)" % (
                      __import__("transformers").__version__, __import__("tokenizers").__version__),
        "cases": cases}, indent=1, ensure_ascii=False))

    r = GGUFReader(str(SMOLLM2))
    slices = []
    for t in r.tensors:
        if t.name not in ("token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight",
                          "blk.29.ffn_down.weight", "blk.0.attn_norm.weight", "output_norm.weight"):
            continue
        deq = dequantize(t.data, t.tensor_type).reshape(-1).astype(np.float32)
        picks = []
        for start in (0, deq.size // 2 + 7, deq.size - 40):
            picks.append({"start": int(start), "values": [float(v) for v in deq[start:start + 40]]})
        slices.append({"name": t.name, "ggml_type": t.tensor_type.name,
                       "shape": [int(d) for d in reversed(t.shape)],
                       "sum": float(deq.astype(np.float64).sum()), "slices": picks})
    (OUT / "smollm2_tensor_slices.json").write_text(json.dumps(
        {"source": "gguf-py %s gguf.quants.dequantize" % gguf.__version__ if hasattr(gguf, "__version__")
         else "gguf-py gguf.quants.dequantize", "tensors": slices}, indent=1))


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    write_quants()
    write_tiny_llama()
    smollm2_references()
    for p in sorted(OUT.iterdir()):
        print(f"{p.stat().st_size:8d}  {p.name}")
