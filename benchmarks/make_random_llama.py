"""Write a random-weight Llama-architecture GGUF (F16) of a given shape, one tensor at a time.

    python benchmarks/make_random_llama.py OUT.gguf --shape 1b|8b|0.3b [--torch-cuda]

Shapes: "1b" = Llama-3.2-1B (2048 wide, 16 layers, 32/8 heads, ffn 8192), "8b" = Llama-3-8B
(4096, 32 layers, 32/8 heads, ffn 14336), "0.3b" = the CPU benchmark's (1024, 24 layers,
16/8 heads, ffn 2816). Vocabulary: 32000 SentencePiece-style tokens (<unk> <s> </s>, the 256
byte tokens, then filler pieces), tied output off (a separate output.weight). Weights are
normal(0, 0.02) (norms 1 + normal(0, 0.02)): never zeros, which would time unrealistically.
With --torch-cuda the random numbers come from torch on the GPU (fast for 8B).
"""

from __future__ import annotations

import argparse

import numpy as np

SHAPES = {
    "0.3b": dict(n_embd=1024, n_layer=24, n_head=16, n_head_kv=8, n_ff=2816),
    "1b": dict(n_embd=2048, n_layer=16, n_head=32, n_head_kv=8, n_ff=8192),
    "8b": dict(n_embd=4096, n_layer=32, n_head=32, n_head_kv=8, n_ff=14336),
}
N_VOCAB = 32000


def write_llama_metadata(w, name: str, shape: str, ftype: str) -> None:
    """The hyperparameters of SHAPES[shape] and the byte-fallback SentencePiece vocabulary
    (N_VOCAB tokens) on a gguf.GGUFWriter; ftype names the file type (F16, Q8_0, ...)."""
    import gguf

    s = SHAPES[shape]
    w.add_name(name)
    w.add_context_length(8192)
    w.add_embedding_length(s["n_embd"])
    w.add_block_count(s["n_layer"])
    w.add_feed_forward_length(s["n_ff"])
    w.add_head_count(s["n_head"])
    w.add_head_count_kv(s["n_head_kv"])
    w.add_rope_dimension_count(s["n_embd"] // s["n_head"])
    w.add_rope_freq_base(500000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(getattr(gguf.LlamaFileType, "MOSTLY_" + ftype))
    w.add_tokenizer_model("llama")
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    toks += [f"\u2581w{i}" for i in range(N_VOCAB - len(toks))]
    w.add_token_list(toks)
    w.add_token_scores([0.0] * 259 + [-float(i) for i in range(N_VOCAB - 259)])
    w.add_token_types([2, 3, 3] + [6] * 256 + [1] * (N_VOCAB - 259))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)


def main() -> None:
    import gguf

    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="1b")
    ap.add_argument("--torch-cuda", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    s = SHAPES[a.shape]
    E, L, H, HKV, F = s["n_embd"], s["n_layer"], s["n_head"], s["n_head_kv"], s["n_ff"]
    hd = E // H

    if a.torch_cuda:
        import torch

        gen = torch.Generator(device="cuda").manual_seed(a.seed)

        def rand(shape, base=0.0):
            t = torch.randn(shape, generator=gen, device="cuda", dtype=torch.float32) * 0.02 + base
            return t.to(torch.float16).cpu().numpy()
    else:
        rng = np.random.default_rng(a.seed)

        def rand(shape, base=0.0):
            return (rng.standard_normal(shape, dtype=np.float32) * 0.02 + base).astype(np.float16)

    tensors: list[tuple[str, tuple[int, ...], float, type]] = [("token_embd.weight", (N_VOCAB, E), 0.0, np.float16)]
    for i in range(L):
        p = f"blk.{i}"
        tensors += [
            (f"{p}.attn_norm.weight", (E,), 1.0, np.float32),
            (f"{p}.attn_q.weight", (E, E), 0.0, np.float16),
            (f"{p}.attn_k.weight", (HKV * hd, E), 0.0, np.float16),
            (f"{p}.attn_v.weight", (HKV * hd, E), 0.0, np.float16),
            (f"{p}.attn_output.weight", (E, E), 0.0, np.float16),
            (f"{p}.ffn_norm.weight", (E,), 1.0, np.float32),
            (f"{p}.ffn_gate.weight", (F, E), 0.0, np.float16),
            (f"{p}.ffn_up.weight", (F, E), 0.0, np.float16),
            (f"{p}.ffn_down.weight", (E, F), 0.0, np.float16),
        ]
    tensors += [("output_norm.weight", (E,), 1.0, np.float32), ("output.weight", (N_VOCAB, E), 0.0, np.float16)]

    w = gguf.GGUFWriter(a.out, "llama")
    write_llama_metadata(w, f"random llama {a.shape}", a.shape, "F16")
    for name, shape, _base, dt in tensors:
        nbytes = int(np.prod(shape)) * np.dtype(dt).itemsize
        w.add_tensor_info(name, shape, np.dtype(dt), nbytes)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, shape, base, dt in tensors:
        arr = rand(shape, base)
        w.write_tensor_data(arr.astype(dt))
    w.close()


if __name__ == "__main__":
    main()
