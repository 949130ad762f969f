#!/usr/bin/env python3
"""Check that Hugging Face transformers loads model directories deltaguard wrote.

usage: check_hf_load.py MODEL_DIR [REFERENCE_DIR]

Loads MODEL_DIR with AutoModelForCausalLM and AutoTokenizer, runs one forward
pass, and (given REFERENCE_DIR) compares every parameter and the logits with the
reference model. Exits non-zero on any failure. Needs torch + transformers; the
project itself never does.
"""
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main() -> int:
    path = sys.argv[1]
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(path)
    ids = tok("Hello, world", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    assert torch.isfinite(logits).all(), "non-finite logits"
    print(f"{path}: loaded {sum(p.numel() for p in model.parameters())} parameters, logits {tuple(logits.shape)}")
    if len(sys.argv) > 2:
        ref = AutoModelForCausalLM.from_pretrained(sys.argv[2], dtype=torch.float32)
        worst = 0.0
        for (n, p), (n2, q) in zip(model.state_dict().items(), ref.state_dict().items()):
            assert n == n2, (n, n2)
            worst = max(worst, (p - q).abs().max().item())
        with torch.no_grad():
            diff = (ref(ids).logits - logits).abs().max().item()
        print(f"  vs {sys.argv[2]}: max |param diff| {worst:.3g}, max |logit diff| {diff:.3g}")
        if worst > 1e-6:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
