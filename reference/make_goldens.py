#!/usr/bin/env python3
"""Golden outputs for gossamer from Hugging Face `transformers`' GptOss implementation.

Loads a gpt-oss checkpoint folder (official HF layout, MXFP4 or bf16 experts), proves that
every stored tensor arrived in the model unchanged (nothing silently re-initialised), then
records per-position top-K logits of a full forward pass and a cache-free greedy
continuation for each prompt. See README.md next to this file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings

# Must be set before torch/transformers are imported. Everything is local; the hub is never
# contacted. CPU only: goldens must not depend on whichever GPU kernels happen to be around
# (and the MXFP4 path would try the triton hub kernels on a GPU).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from transformers import GptOssConfig, GptOssForCausalLM, Mxfp4Config  # noqa: E402

FORMAT_VERSION = 1

# Random prompts never reach the special tokens (<|startoftext|> = 199998 and above).
RANDOM_PROMPT_ID_LIMIT = 199998
RANDOM_PROMPT_RECIPE = (
    "numpy.random.default_rng(seed).integers(0, min(vocab_size, 199998), size=len)"
    " (numpy Generator/PCG64, int64, upper bound exclusive)"
)

# FP4 E2M1 code -> value, spec §3.3 (index = nibble).
E2M1_LUT = np.array(
    [+0.0, +0.5, +1.0, +1.5, +2.0, +3.0, +4.0, +6.0,
     -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0],
    dtype=np.float64,
)

# Case-sensitive markers of transformers' loading report (printed when a weight is missing and
# therefore freshly initialised, unused, shape-mismatched or failed to convert). Other load
# warnings (e.g. "pad_token_id ... outside the vocabulary" for shrunken test vocabularies) are
# harmless and only recorded.
SUSPICIOUS_LOAD_MARKERS = (
    "LOAD REPORT", "MISSING", "UNEXPECTED", "MISMATCH", "CONVERSION", "newly initialized",
    "Reinit", "not initialized",
)


class GoldenError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Prompts


def parse_prompts(args, vocab_size: int) -> list[dict]:
    prompts = []
    for spec in args.tokens or []:
        ids = [int(t) for t in spec.replace(" ", "").split(",") if t != ""]
        if not ids:
            raise GoldenError(f"--tokens {spec!r}: empty prompt")
        prompts.append({"tokens": ids, "source": {"kind": "explicit"}})
    for spec in args.random_prompt or []:
        try:
            length, seed = (int(x) for x in spec.split(":"))
        except ValueError:
            raise GoldenError(f"--random-prompt {spec!r}: expected LEN:SEED") from None
        high = min(vocab_size, RANDOM_PROMPT_ID_LIMIT)
        ids = np.random.default_rng(seed).integers(0, high, size=length).tolist()
        prompts.append({
            "tokens": [int(t) for t in ids],
            "source": {"kind": "random", "len": length, "seed": seed, "high_exclusive": high,
                       "recipe": RANDOM_PROMPT_RECIPE},
        })
    if not prompts:
        raise GoldenError("no prompts: pass --tokens and/or --random-prompt")
    for p in prompts:
        bad = [t for t in p["tokens"] if not 0 <= t < vocab_size]
        if bad:
            raise GoldenError(f"prompt token ids out of range [0, {vocab_size}): {bad[:8]}")
    return prompts


# --------------------------------------------------------------------------------------------
# Loading


class _CaptureHandler(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def checkpoint_tensor_files(ckpt: str) -> dict[str, str]:
    """tensor name -> file path, from the index if present (the official layout), else from
    every *.safetensors in the folder."""
    index = os.path.join(ckpt, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            wm = json.load(f)["weight_map"]
        return {name: os.path.join(ckpt, fn) for name, fn in wm.items()}
    files = sorted(f for f in os.listdir(ckpt) if f.endswith(".safetensors"))
    if not files:
        raise GoldenError(f"no *.safetensors in {ckpt}")
    out = {}
    for fn in files:
        with safe_open(os.path.join(ckpt, fn), framework="pt") as f:
            for name in f.keys():
                if name in out:
                    raise GoldenError(f"tensor {name} stored twice ({out[name]}, {fn})")
                out[name] = os.path.join(ckpt, fn)
    return out


def load_model(ckpt: str, dtype: torch.dtype):
    """Returns (model, raw config.json dict, config overrides, load warnings, is_mxfp4)."""
    with open(os.path.join(ckpt, "config.json")) as f:
        raw_config = json.load(f)
    qc = raw_config.get("quantization_config")
    is_mxfp4 = qc is not None
    if is_mxfp4 and qc.get("quant_method") != "mxfp4":
        raise GoldenError(f"unsupported quantization_config: {qc}")

    capture = _CaptureHandler()
    tf_logger = logging.getLogger("transformers")
    tf_logger.addHandler(capture)
    try:
        with warnings.catch_warnings(record=True) as py_warnings:
            warnings.simplefilter("always")
            config = GptOssConfig.from_pretrained(ckpt)
            overrides = {}
            # Test presets shrink the vocabulary but may keep the official pad id (199999);
            # nn.Embedding(padding_idx=...) then refuses to build. padding_idx only affects
            # training (gradient masking, init), so dropping it cannot change inference.
            if config.pad_token_id is not None and not 0 <= config.pad_token_id < config.vocab_size:
                overrides["pad_token_id"] = {"from": config.pad_token_id, "to": None}
                config.pad_token_id = None

            kwargs = dict(
                config=config,
                dtype=dtype,
                attn_implementation="eager",
                # Per-expert python loop over the routed experts only: the most literal
                # implementation (the default "grouped_mm" is a fused kernel path).
                experts_implementation="eager",
                output_loading_info=True,
            )
            # No device_map: device_map="cpu" needs `accelerate`; with CUDA hidden the model is
            # built on the CPU anyway (checked below).
            if is_mxfp4:
                # dequantize=True: transformers unpacks blocks/scales into the dense bf16/fp32
                # GptOssExperts parameters at load time instead of using triton MXFP4 kernels.
                kwargs["quantization_config"] = Mxfp4Config(dequantize=True)
            model, loading_info = GptOssForCausalLM.from_pretrained(ckpt, **kwargs)
    finally:
        tf_logger.removeHandler(capture)

    model.eval()
    load_warnings = capture.messages + [str(w.message) for w in py_warnings]

    problems = []
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        if loading_info.get(key):
            problems.append(f"{key}: {sorted(map(str, loading_info[key]))}")
    for msg in load_warnings:
        if any(m in msg for m in SUSPICIOUS_LOAD_MARKERS):
            problems.append(f"load warning: {msg}")
    if problems:
        raise GoldenError("transformers did not load the checkpoint cleanly:\n  " + "\n  ".join(problems))

    devices = {str(p.device) for p in model.parameters()}
    if devices != {"cpu"}:
        raise GoldenError(f"model parameters not on CPU: {devices}")
    if model.config._attn_implementation != "eager":
        raise GoldenError(f"attention implementation is {model.config._attn_implementation}")
    if model.config._experts_implementation != "eager":
        raise GoldenError(f"experts implementation is {model.config._experts_implementation}")
    return model, raw_config, overrides, load_warnings, is_mxfp4


# --------------------------------------------------------------------------------------------
# Weight verification


def dequant_mxfp4(blocks: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Spec §3.3: blocks [..., G, 16] u8, scales [..., G] u8 -> float64 [..., G*32].
    Element 32g+2b is the low nibble of byte b of block g, 32g+2b+1 the high nibble."""
    lo = E2M1_LUT[blocks & 0x0F]
    hi = E2M1_LUT[blocks >> 4]
    vals = np.stack([lo, hi], axis=-1).reshape(*blocks.shape[:-1], 32)  # [..., G, 32]
    vals = vals * np.exp2(scales.astype(np.float64) - 127.0)[..., None]
    return vals.reshape(*blocks.shape[:-2], blocks.shape[-2] * 32)


def _same_bits(expected: torch.Tensor, actual: torch.Tensor) -> bool:
    """Bitwise equality (distinguishes -0/+0, NaN-safe)."""
    if expected.shape != actual.shape or expected.dtype != actual.dtype:
        return False
    ints = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16,
            torch.float64: torch.int64}
    it = ints.get(actual.dtype)
    if it is None:
        return torch.equal(expected, actual)
    return torch.equal(expected.contiguous().view(it), actual.contiguous().view(it))


def _max_abs_diff(expected: torch.Tensor, actual: torch.Tensor) -> float:
    return float((expected.double() - actual.double()).abs().nan_to_num(nan=float("inf")).max())


def verify_weights(model, ckpt: str) -> dict:
    """Compare every tensor stored in the checkpoint with the model parameter it must have
    become, and make sure every model parameter came from the checkpoint. Raises on any
    difference. Returns a summary for the JSON."""
    params = dict(model.named_parameters())
    files = checkpoint_tensor_files(ckpt)
    covered: set[str] = set()
    errors: list[str] = []
    stats = {
        "plain_tensors": {"count": 0, "max_abs_diff": 0.0},
        "mxfp4_expert_tensors": {"count": 0, "max_abs_diff": 0.0},
        "dense_expert_tensors": {"count": 0, "max_abs_diff": 0.0},
    }

    def record(kind, name, expected, actual, count=True):
        if expected.shape != actual.shape:
            errors.append(f"{name}: shape {tuple(expected.shape)} vs model {tuple(actual.shape)}")
            return
        d = _max_abs_diff(expected, actual)
        st = stats[kind]
        st["count"] += int(count)
        st["max_abs_diff"] = max(st["max_abs_diff"], d)
        if not _same_bits(expected, actual):
            errors.append(f"{name}: differs from the file (max |diff| {d:g})")

    # Open each file once.
    by_file: dict[str, list[str]] = {}
    for name, path in files.items():
        by_file.setdefault(path, []).append(name)

    for path, names in sorted(by_file.items()):
        with safe_open(path, framework="pt") as f:
            present = set(f.keys())
            for name in sorted(names):
                if name not in present:
                    errors.append(f"{name}: listed in the index but absent from {path}")
                    continue
                if name.endswith("_scales"):
                    continue  # handled with its _blocks partner
                if name.endswith("_blocks"):
                    pname = name[: -len("_blocks")]
                    sname = pname + "_scales"
                    if sname not in files:
                        errors.append(f"{name}: no {sname}")
                        continue
                    if pname not in params:
                        errors.append(f"{name}: no model parameter {pname}")
                        continue
                    param = params[pname].detach()
                    blocks = f.get_tensor(name).numpy()
                    with safe_open(files[sname], framework="pt") as fs:
                        scales = fs.get_tensor(sname).numpy()
                    if blocks.shape[:-1] != scales.shape or blocks.shape[-1] != 16:
                        errors.append(f"{name}: blocks {blocks.shape} / scales {scales.shape}")
                        continue
                    if blocks.shape[0] != param.shape[0]:
                        errors.append(f"{name}: {blocks.shape[0]} experts, model has {param.shape[0]}")
                        continue
                    # One expert at a time: the 20b-sized tensors are ~4 GB as float64.
                    for e in range(blocks.shape[0]):
                        w = dequant_mxfp4(blocks[e], scales[e])  # stored [out, in]
                        expected = torch.from_numpy(w.T.copy()).to(param.dtype)  # HF: [in, out]
                        record("mxfp4_expert_tensors", f"{name}[{e}]", expected, param[e], count=e == 0)
                    covered.add(pname)
                    continue
                if name not in params:
                    errors.append(f"{name}: stored in the checkpoint but not a model parameter")
                    continue
                t = f.get_tensor(name)
                if t.dtype != torch.bfloat16:
                    errors.append(f"{name}: stored as {t.dtype}, expected BF16")
                param = params[name].detach()
                kind = "dense_expert_tensors" if ".mlp.experts." in name and not name.endswith("_bias") else "plain_tensors"
                # bf16 -> fp32 is exact, so equality after the cast is the right test.
                record(kind, name, t.to(param.dtype), param)
                covered.add(name)

    not_loaded = sorted(set(params) - covered)
    if not_loaded:
        errors.append(f"model parameters with no stored tensor (re-initialised): {not_loaded}")
    if errors:
        raise GoldenError("weight verification failed:\n  " + "\n  ".join(errors[:50])
                          + (f"\n  ... and {len(errors) - 50} more" if len(errors) > 50 else ""))
    if stats["mxfp4_expert_tensors"]["count"] == 0 and stats["dense_expert_tensors"]["count"] == 0:
        raise GoldenError("no expert weights found in the checkpoint")
    stats["model_parameters"] = len(params)
    stats["checkpoint_tensors"] = len(files)
    return stats


def verify_sliding_window(attentions, layer_types, window: int) -> dict:
    """The eager attention returns the (sink-excluded) probabilities: on sliding layers every
    key at distance >= window must have exactly zero weight; on full layers it must not."""
    out = {"checked": False}
    T = attentions[0].shape[-1]
    if T <= window:
        return out
    q = torch.arange(T)[:, None]
    k = torch.arange(T)[None, :]
    far = (k <= q - window)  # outside the window but causal
    for i, (lt, a) in enumerate(zip(layer_types, attentions)):
        far_mass = a[..., far].abs()
        if lt == "sliding_attention" and bool((far_mass != 0).any()):
            raise GoldenError(f"layer {i} (sliding) attends beyond the window of {window}")
        if lt == "full_attention" and not bool((far_mass != 0).any()):
            raise GoldenError(f"layer {i} (full) never attends beyond {window} tokens")
    return {"checked": True, "seq_len": T, "window": window}


# --------------------------------------------------------------------------------------------
# Goldens


def top_k(logits_row: torch.Tensor, k: int) -> tuple[list[int], list[float]]:
    # Stable descending sort: ties come out in ascending id order, deterministically.
    vals, ids = torch.sort(logits_row.float(), descending=True, stable=True)
    return [int(i) for i in ids[:k]], [float(v) for v in vals[:k]]


@torch.inference_mode()
def forward_logits(model, ids: list[int], output_attentions=False):
    out = model(input_ids=torch.tensor([ids], dtype=torch.long), use_cache=False,
                output_attentions=output_attentions)
    return out.logits[0], out.attentions


def run_prompt(model, prompt: dict, k: int, n_greedy: int, window_check: dict) -> dict:
    ids = prompt["tokens"]
    logits, attentions = forward_logits(model, ids, output_attentions=True)
    if not bool(torch.isfinite(logits).all()):
        raise GoldenError(f"non-finite logits for prompt {ids[:8]}...")
    logits_dtype = str(logits.dtype).removeprefix("torch.")
    if attentions is not None:
        res = verify_sliding_window(attentions, model.config.layer_types, model.config.sliding_window)
        if res["checked"]:
            window_check.update(res)
    del attentions

    positions = []
    max_abs = 0.0
    for row in logits:
        tid, tval = top_k(row, k)
        positions.append({"top": [{"id": i, "logit": v} for i, v in zip(tid, tval)]})
        max_abs = max(max_abs, float(row.float().abs().max()))

    # Greedy continuation without the KV cache: every step re-runs the whole sequence, so a
    # cache bug in the reference cannot leak into the goldens. Step 0 is the forward above.
    seq = list(ids)
    gen, gaps = [], []
    last = logits[-1]
    for step in range(n_greedy):
        if step > 0:
            last = forward_logits(model, seq)[0][-1]
            if not bool(torch.isfinite(last).all()):
                raise GoldenError(f"non-finite logits at greedy step {step}")
        tid, tval = top_k(last, 2)
        gen.append(tid[0])
        gaps.append(tval[0] - tval[1])
        max_abs = max(max_abs, float(last.float().abs().max()))
        seq.append(tid[0])

    return {
        "tokens": ids,
        "source": prompt["source"],
        "positions": positions,
        "greedy": {"tokens": gen, "top2_gap": gaps},
        "_logits_dtype": logits_dtype,
        "_max_abs_logit": max_abs,
    }


def to_json(obj, indent: int = 0, width: int = 600) -> str:
    """Diff-friendly JSON: containers whose compact form fits in `width` characters (and every
    list of plain numbers, e.g. token ids) stay on one line; larger ones get one item per line.
    Floats use Python's repr, i.e. the shortest string that round-trips the float32 value."""
    compact = json.dumps(obj, separators=(", ", ": "), allow_nan=False)
    scalars_only = isinstance(obj, list) and not any(isinstance(x, (list, dict)) for x in obj)
    if not isinstance(obj, (list, dict)) or len(compact) <= width or scalars_only:
        return compact
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(obj, list):
        items = [inner + to_json(x, indent + 1, width) for x in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    items = [inner + json.dumps(k) + ": " + to_json(v, indent + 1, width) for k, v in obj.items()]
    return "{\n" + ",\n".join(items) + "\n" + pad + "}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="checkpoint folder (config.json + *.safetensors, HF layout)")
    ap.add_argument("--out", required=True, help="output JSON path")
    ap.add_argument("--tokens", action="append", metavar="ID,ID,...", help="explicit prompt (repeatable)")
    ap.add_argument("--random-prompt", action="append", metavar="LEN:SEED",
                    help=f"random prompt: {RANDOM_PROMPT_RECIPE} (repeatable)")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--top-k", type=int, default=8)
    ap.add_argument("--greedy", type=int, default=32, help="greedy tokens to generate per prompt")
    ap.add_argument("--generator-json", default="null",
                    help="JSON describing how the checkpoint was made (stored verbatim)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = ap.parse_args(argv)

    try:
        generator = json.loads(args.generator_json)
    except json.JSONDecodeError as e:
        raise GoldenError(f"--generator-json is not valid JSON: {e}") from None
    if args.top_k < 2:
        raise GoldenError("--top-k must be >= 2")
    if args.threads:
        torch.set_num_threads(args.threads)

    t0 = time.monotonic()
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    model, raw_config, overrides, load_warnings, is_mxfp4 = load_model(args.checkpoint, dtype)
    t_load = time.monotonic() - t0
    log(f"loaded {args.checkpoint} ({'mxfp4' if is_mxfp4 else 'bf16'} experts) in {t_load:.1f}s")

    checks = verify_weights(model, args.checkpoint)
    t_verify = time.monotonic() - t0 - t_load
    log(f"weights verified in {t_verify:.1f}s: " + json.dumps(checks))

    prompts = parse_prompts(args, model.config.vocab_size)
    window_check: dict = {"checked": False}
    results = []
    for i, p in enumerate(prompts):
        ts = time.monotonic()
        results.append(run_prompt(model, p, args.top_k, args.greedy, window_check))
        log(f"prompt {i}: {len(p['tokens'])} tokens + {args.greedy} greedy in {time.monotonic() - ts:.1f}s")

    param_dtypes: dict[str, int] = {}
    for _, prm in model.named_parameters():
        key = str(prm.dtype).removeprefix("torch.")
        param_dtypes[key] = param_dtypes.get(key, 0) + prm.numel()
    logits_dtypes = sorted({r.pop("_logits_dtype") for r in results})
    max_abs_logit = max(r.pop("_max_abs_logit") for r in results)
    rot = model.model.rotary_emb

    doc = {
        "format": FORMAT_VERSION,
        "checkpoint": {"generator": generator, "config": raw_config},
        "reference": {
            "library": "transformers",
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "numpy_version": np.__version__,
            "dtype": args.dtype,
            "param_dtypes": param_dtypes,
            "logits_dtype": logits_dtypes[0] if len(logits_dtypes) == 1 else logits_dtypes,
            "attn_implementation": model.config._attn_implementation,
            "experts_implementation": model.config._experts_implementation,
            "experts_checkpoint_format": "mxfp4" if is_mxfp4 else "bf16",
            "mxfp4_dequantized_at_load": is_mxfp4,
            "device": "cpu",
            "use_cache": False,
            "weights_verified": True,
            "max_abs_diff_checks": checks,
            "sliding_window_check": window_check,
            "config_overrides": overrides,
            "load_warnings": load_warnings,
            "rope": {
                "parameters": model.config.rope_parameters,
                "inv_freq": [float(x) for x in rot.inv_freq.float()],
                "attention_scaling": float(rot.attention_scaling),
            },
            "top_k": args.top_k,
            "greedy_steps": args.greedy,
            "greedy_recipe": "argmax of the last position's logits after a full cache-free forward "
                             "of prompt + generated tokens; ties -> lowest id",
            "top_k_order": "descending logit, ties by ascending id",
        },
        "prompts": results,
    }
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        f.write(to_json(doc) + "\n")
    os.replace(tmp, args.out)

    all_gaps = [g for r in results for g in r["greedy"]["top2_gap"]]
    pos_gaps = [p["top"][0]["logit"] - p["top"][1]["logit"] for r in results for p in r["positions"]]
    print(f"wrote {args.out}")
    print(f"  time: {time.monotonic() - t0:.1f}s (load {t_load:.1f}s, verify {t_verify:.1f}s)")
    print(f"  dtype: {args.dtype} (params {param_dtypes}, logits {doc['reference']['logits_dtype']})")
    print(f"  prompts: {len(results)}  max |logit|: {max_abs_logit:.4f}")
    if all_gaps:
        print(f"  smallest greedy top-2 gap: {min(all_gaps):.6g}")
    print(f"  smallest per-position top-2 gap: {min(pos_gaps):.6g}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except GoldenError as e:
        log(f"ERROR: {e}")
        sys.exit(1)
