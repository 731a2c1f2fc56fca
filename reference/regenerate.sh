#!/usr/bin/env bash
# Regenerate the committed golden files in tests/data/goldens/ from scratch:
# for each entry below, build a random checkpoint with `gossamer random-checkpoint`
# (HF layout), then run make_goldens.py (transformers, CPU, float32) on it, and
# bf16_drift.py (the same model in bfloat16: how far the reference's own bf16 run lands).
#
# usage: reference/regenerate.sh GOSSAMER_BINARY [NAME ...]
#   NAME  only regenerate the goldens with these output names (e.g. tiny-s1)
# env:   PYTHON  interpreter of the reference venv (default: python3 on PATH)
#        KEEP_CHECKPOINTS=1  keep the temporary checkpoints (path printed)
#        GOLDENS_OUT_DIR     write somewhere else than tests/data/goldens/
set -euo pipefail

# One golden per entry: "PRESET SEED [LAYERS|-] [EXPERTS]"
#   LAYERS   "-" (or absent) keeps the preset's layer count
#   EXPERTS  mxfp4 (default) or bf16
# Each golden gets two prompts: --random-prompt 320:SEED and --random-prompt 24:SEED+100.
GOLDENS=(
    "tiny 1"
    "tiny 2"
    "small-vocab 1"
    "small-vocab 2"
    "tiny 3 2"
    "small-vocab 3 - bf16"
)

DTYPE=float32
TOP_K=8
GREEDY=32

if [[ $# -lt 1 ]]; then
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
GOSSAMER=$(realpath "$1")
shift
ONLY=("$@")

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
OUT_DIR=${GOLDENS_OUT_DIR:-$REPO/tests/data/goldens}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT_DIR"

[[ -x "$GOSSAMER" ]] || { echo "not executable: $GOSSAMER" >&2; exit 2; }

WORK=$(mktemp -d /tmp/gossamer-goldens.XXXXXX)
if [[ "${KEEP_CHECKPOINTS:-0}" != 1 ]]; then
    trap 'rm -rf "$WORK"' EXIT
fi

done_any=0
for entry in "${GOLDENS[@]}"; do
    read -r preset seed layers experts <<<"$entry"
    layers=${layers:--}
    experts=${experts:-mxfp4}

    name="$preset-s$seed"
    [[ "$layers" != - ]] && name+="-l$layers"
    [[ "$experts" != mxfp4 ]] && name+="-$experts"
    if [[ ${#ONLY[@]} -gt 0 ]] && [[ ! " ${ONLY[*]} " == *" $name "* ]]; then
        continue
    fi
    done_any=1

    ckpt="$WORK/$name"
    gen_args=(random-checkpoint --preset "$preset" --seed "$seed" --experts "$experts" --layout hf --out "$ckpt")
    layers_json=null
    if [[ "$layers" != - ]]; then
        gen_args+=(--layers "$layers")
        layers_json=$layers
    fi
    generator_json=$(printf '{"preset": "%s", "seed": %d, "layers": %s, "experts": "%s", "layout": "hf"}' \
        "$preset" "$seed" "$layers_json" "$experts")

    echo "=== $name: $GOSSAMER ${gen_args[*]}" >&2
    "$GOSSAMER" "${gen_args[@]}"

    "$PYTHON" "$HERE/make_goldens.py" "$ckpt" \
        --out "$OUT_DIR/$name.json" \
        --random-prompt "320:$seed" \
        --random-prompt "24:$((seed + 100))" \
        --dtype "$DTYPE" --top-k "$TOP_K" --greedy "$GREEDY" \
        --generator-json "$generator_json"
    # The reference's own bfloat16 run on the same prompts: the bar for the fast mode.
    (cd "$HERE" && "$PYTHON" bf16_drift.py "$ckpt" "$OUT_DIR/$name.json")
    [[ "${KEEP_CHECKPOINTS:-0}" == 1 ]] || rm -rf "$ckpt"
done

if [[ $done_any == 0 ]]; then
    echo "no golden matched: ${ONLY[*]}" >&2
    exit 2
fi
[[ "${KEEP_CHECKPOINTS:-0}" == 1 ]] && echo "checkpoints kept in $WORK" >&2
exit 0
