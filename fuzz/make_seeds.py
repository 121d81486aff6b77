"""Seed corpus for the `checkpoint` fuzz target: small llama/qwen2/gemma/phi3 checkpoints (a few KB
each, so mutations land in headers more than in weights) in the target's input layout — config,
index, shards joined by the separator. Writes fuzz/corpus/checkpoint/. Needs only the standard
library."""
import json
import os
import random
import struct

SEP = b"\n--8<--ggufy--\n"
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "checkpoint")
VOCAB = 384  # the bundled tiny llama's tokenizer.model


def safetensors(tensors, dtype):
    width = {"F32": 4, "F16": 2, "BF16": 2}[dtype]
    header, off, blobs = {}, 0, []
    for name, shape in tensors:
        n = 1
        for d in shape:
            n *= d
        size = n * width
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + size]}
        blobs.append(bytes(random.getrandbits(8) & 0x3F if i % width == width - 1 else random.getrandbits(8) for i in range(size)))
        off += size
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def model(arch, hidden=16, ffn=24, heads=2, kv=1, layers=1):
    t = [("model.embed_tokens.weight", [VOCAB, hidden]), ("model.norm.weight", [hidden])]
    for l in range(layers):
        p = f"model.layers.{l}"
        hd = hidden // heads
        if arch == "Phi3ForCausalLM":
            t += [(f"{p}.self_attn.qkv_proj.weight", [hidden + 2 * kv * hd, hidden]),
                  (f"{p}.mlp.gate_up_proj.weight", [2 * ffn, hidden])]
        else:
            t += [(f"{p}.self_attn.q_proj.weight", [hidden, hidden]),
                  (f"{p}.self_attn.k_proj.weight", [kv * hd, hidden]),
                  (f"{p}.self_attn.v_proj.weight", [kv * hd, hidden]),
                  (f"{p}.mlp.gate_proj.weight", [ffn, hidden]),
                  (f"{p}.mlp.up_proj.weight", [ffn, hidden])]
            if arch == "Qwen2ForCausalLM":
                t += [(f"{p}.self_attn.{x}_proj.bias", [d]) for x, d in (("q", hidden), ("k", kv * hd), ("v", kv * hd))]
        t += [(f"{p}.self_attn.o_proj.weight", [hidden, hidden]),
              (f"{p}.mlp.down_proj.weight", [hidden, ffn]),
              (f"{p}.input_layernorm.weight", [hidden]),
              (f"{p}.post_attention_layernorm.weight", [hidden])]
    if arch != "GemmaForCausalLM":
        t.append(("lm_head.weight", [VOCAB, hidden]))
    config = {"architectures": [arch], "hidden_size": hidden, "intermediate_size": ffn,
              "num_attention_heads": heads, "num_key_value_heads": kv, "num_hidden_layers": layers,
              "vocab_size": VOCAB, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
              "max_position_embeddings": 256, "bos_token_id": 1, "eos_token_id": 2,
              "tie_word_embeddings": arch == "GemmaForCausalLM"}
    if arch == "GemmaForCausalLM":
        config["head_dim"] = hidden // heads
    return config, t


def main():
    random.seed(1)
    os.makedirs(OUT, exist_ok=True)
    n = 0
    for arch in ["LlamaForCausalLM", "Qwen2ForCausalLM", "GemmaForCausalLM", "Phi3ForCausalLM"]:
        for dtype in ["BF16", "F16", "F32"]:
            config, tensors = model(arch)
            cfg = json.dumps(config).encode()
            single = cfg + SEP + b"" + SEP + safetensors(tensors, dtype)
            half = len(tensors) // 2
            parts = [tensors[:half], tensors[half:]]
            index = {"metadata": {}, "weight_map": {name: f"model-{k + 1:05}-of-00002.safetensors"
                                                    for k, p in enumerate(parts) for name, _ in p}}
            sharded = cfg + SEP + json.dumps(index).encode() + SEP + SEP.join(
                safetensors(p, dtype) for p in parts)
            for i, seed in enumerate([single, sharded]):
                with open(os.path.join(OUT, f"{arch}-{dtype}-{i}"), "wb") as f:
                    f.write(seed)
                n += 1
    print(f"{n} seeds in {OUT}")


if __name__ == "__main__":
    main()
