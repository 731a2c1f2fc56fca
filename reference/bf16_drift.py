#!/usr/bin/env python3
"""How far the reference's own bfloat16 run lands from its float32 goldens.

For a golden file written by make_goldens.py (float32) and the checkpoint it was made from,
runs the same prompts through the same transformers model loaded in bfloat16 (weights,
activations and attention all bf16, as `torch_dtype=bfloat16` gives), reads the logits at
every reference top-k entry and records mean and max |bf16 logit - f32 logit| in the golden
under "bf16_run". gossamer's fast precision mode (bf16 activations in prefill products) must
stay closer to the float32 reference than this (crates/gossamer-model/tests/goldens.rs).

usage: bf16_drift.py CHECKPOINT GOLDEN_JSON   (the golden is updated in place; the float32
       data in it is not touched)
"""

import json
import sys

import torch

from make_goldens import forward_logits, load_model, log, to_json


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    ckpt, golden_path = argv
    with open(golden_path) as f:
        golden = json.load(f)
    if golden["reference"]["dtype"] != "float32":
        raise SystemExit(f"{golden_path}: not a float32 golden")

    torch.manual_seed(0)
    model = load_model(ckpt, torch.bfloat16)[0]
    model.eval()
    per_prompt = []
    all_abs = []
    with torch.no_grad():
        for prompt in golden["prompts"]:
            logits, _ = forward_logits(model, prompt["tokens"])
            logits = logits.float()
            diffs = [
                abs(float(logits[pos, e["id"]]) - e["logit"])
                for pos, p in enumerate(prompt["positions"])
                for e in p["top"]
            ]
            all_abs.extend(diffs)
            per_prompt.append({
                "entries": len(diffs),
                "max_abs_dlogit": max(diffs),
                "mean_abs_dlogit": sum(diffs) / len(diffs),
            })
    golden["bf16_run"] = {
        "what": "the reference model loaded in bfloat16, same prompts, logits at every float32 "
                "top-k entry: |bf16 - f32|",
        "transformers_version": golden["reference"]["transformers_version"],
        "torch_version": str(torch.__version__),
        "max_abs_dlogit": max(all_abs),
        "mean_abs_dlogit": sum(all_abs) / len(all_abs),
        "prompts": per_prompt,
    }
    with open(golden_path, "w") as f:
        f.write(to_json(golden) + "\n")
    log(f"{golden_path}: bf16 run max |dlogit| {max(all_abs):.4g}, "
        f"mean {sum(all_abs) / len(all_abs):.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
