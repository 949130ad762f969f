#!/usr/bin/env python3
"""PyTorch side of `cargo bench --bench train`: one full fine-tuning step of a
HF causal LM (f32, AdamW) on a fixed token batch, timed per phase.

Usage:
    torch_train_step.py --model DIR --tokens FILE [--warmup 1] [--steps 3]
                        [--lr 1e-5] [--threads 2] [--serve]

FILE is JSON: a list of equal-length token-id lists (the batch). Labels are
the inputs (transformers shifts them), so every position but the first of
each row carries loss. Prints one JSON object on stdout:
    {"torch": ..., "transformers": ..., "threads": ..., "loss0": ...,
     "step_s": [...], "forward_s": [...], "backward_s": [...],
     "optimizer_s": [...]}
with one entry per timed step ("forward" includes the loss, "optimizer"
includes zero_grad). Exits with status 2 and a one-line message on stderr
when torch or transformers cannot be imported.

With --serve, the script prints {"ready": true, "torch": ..., ...} once the
model is loaded, then runs one step per line read from stdin and answers
each with one JSON line {"forward_s", "backward_s", "optimizer_s", "loss"},
until stdin closes. The Rust bench uses this to alternate its own steps with
PyTorch's, so that both sides see the same load on a shared machine.
"""

import argparse
import json
import sys
import time


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--tokens", required=True)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--serve", action="store_true")
    args = p.parse_args()

    try:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM
    except ImportError as e:  # the Rust side reports this line and skips
        print(f"torch/transformers not importable: {e}", file=sys.stderr)
        return 2

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with open(args.tokens) as f:
        rows = json.load(f)
    ids = torch.tensor(rows, dtype=torch.long)

    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.train()
    # The same hyper-parameters as the Rust side (HF TrainingArguments'
    # defaults apart from the learning rate): no weight decay, eps 1e-8.
    optim = torch.optim.AdamW(
        model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0
    )

    def step():
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        optim.step()
        optim.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        return {
            "forward_s": t1 - t0,
            "backward_s": t2 - t1,
            "optimizer_s": t3 - t2,
            "loss": loss.item(),
        }

    versions = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
    }
    if args.serve:
        print(json.dumps({"ready": True, **versions}), flush=True)
        for _ in sys.stdin:
            print(json.dumps(step()), flush=True)
        return 0

    out = {**versions, "step_s": [], "forward_s": [], "backward_s": [], "optimizer_s": []}
    for i in range(args.warmup + args.steps):
        s = step()
        if i == 0:
            out["loss0"] = s["loss"]
        if i >= args.warmup:
            for k in ("forward_s", "backward_s", "optimizer_s"):
                out[k].append(s[k])
            out["step_s"].append(s["forward_s"] + s["backward_s"] + s["optimizer_s"])
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
