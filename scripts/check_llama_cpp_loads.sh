#!/usr/bin/env bash
# Converts every fixture checkpoint with ggufy to every outtype llama.cpp can read and makes
# llama.cpp load each file and generate a few tokens (issue 4's "llama.cpp loads every file ggufy
# converts and generates from it"). Needs a llama.cpp build with llama-simple (only that target:
# `cmake --build build --target llama-simple`); not part of CI, which has no llama.cpp.
#
#   scripts/check_llama_cpp_loads.sh /path/to/llama.cpp/build/bin [outdir]
set -euo pipefail
bin=${1:?usage: $0 LLAMA_CPP_BIN_DIR [OUTDIR]}
out=${2:-$(mktemp -d)}
mkdir -p "$out"
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release -q -p ggufy --manifest-path "$root/Cargo.toml"
ggufy=$root/target/release/ggufy
fail=0
for ckpt in "$root"/fixtures/hf/*/; do
  name=$(basename "$ckpt")
  # The byte-level BPE fixtures are not in llama.cpp's pre-tokenizer table (their goldens name
  # the pre-tokenizer the same way: fixtures/golden/convert/*.json "pre_override").
  pre=()
  case $name in
    tiny-qwen2) pre=(--vocab-pre qwen2) ;;
    tiny-llama3) pre=(--vocab-pre llama-bpe) ;;
  esac
  for t in auto f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q6_k; do
    f=$out/$name.$t.gguf
    if ! "$ggufy" convert "$ckpt" -o "$f" --outtype "$t" --force --quiet "${pre[@]}"; then
      echo "FAIL convert $name $t"; fail=1; continue
    fi
    if gen=$("$bin/llama-simple" -m "$f" -n 8 "Hello" 2>"$f.log"); then
      printf 'ok   %-16s %-5s %q\n' "$name" "$t" "$gen"
    else
      echo "FAIL load $name $t (log: $f.log)"; tail -3 "$f.log"; fail=1
    fi
  done
done
exit $fail
