#!/usr/bin/env python3
"""Extracts llama.cpp's BPE pre-tokenizer table from its converter, as data for ggufy-convert.

llama.cpp's convert_hf_to_gguf picks `tokenizer.ggml.pre` by tokenizing a fixed check text with the
model's own tokenizer and looking up sha256(str(token_ids)) in a generated table. ggufy does the
same (with the `tokenizers` crate), so it needs the same check text and table. This script copies
those two pieces of data — nothing else — out of a llama.cpp checkout:

    python3 scripts/extract_bpe_pre_table.py LLAMA_CPP_DIR

writes crates/convert/data/bpe-pre-check.txt and crates/convert/data/bpe-pre-hashes.tsv.
"""
import ast
import re
import sys
from pathlib import Path

src_dir = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
candidates = [src_dir / "conversion" / "base.py", src_dir / "convert_hf_to_gguf.py"]
text = next(p.read_text(encoding="utf-8") for p in candidates if p.is_file() and "def get_vocab_base_pre" in p.read_text(encoding="utf-8"))
body = text[text.index("def get_vocab_base_pre"):text.index("# Marker: End get_vocab_base_pre")]

chk_literal = re.search(r"chktxt = ('(?:[^'\\]|\\.)*')\n", body).group(1)
chktxt = ast.literal_eval(chk_literal)
entries = re.findall(r'if chkhsh == "([0-9a-f]{64})":\n\s+# ref: (\S+)\n\s+res = "([^"]+)"', body)
if len(entries) != body.count("if chkhsh =="):
    sys.exit("could not parse every table entry; update this script")

out = Path(__file__).resolve().parent.parent / "crates" / "convert" / "data"
out.mkdir(parents=True, exist_ok=True)
(out / "bpe-pre-check.txt").write_bytes(chktxt.encode("utf-8"))
lines = ["# sha256(str(token ids of bpe-pre-check.txt)) -> tokenizer.ggml.pre, from llama.cpp's converter (scripts/extract_bpe_pre_table.py)"]
lines += [f"{h}\t{name}\t{ref}" for h, ref, name in entries]
(out / "bpe-pre-hashes.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
print(f"{len(entries)} entries")
