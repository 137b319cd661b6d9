#!/usr/bin/env python3
"""Writes a dsv3 BF16 checkpoint (a DeepSeek-V3-shaped safetensors directory, e.g. `dsv3 init`'s
bench-v3-mini) as a BF16 GGUF that llama.cpp loads (architecture deepseek2, MLA form), so that
llama-bench can run the same shape on the same machine. Mirrors llama.cpp's
convert_hf_to_gguf.py (conversion/deepseek.py, DeepseekV2Model) without torch or transformers:
the same metadata, kv_b split into attn_k_b (transposed) and attn_v_b, the routed experts
stacked, norms and the router's bias in F32. The tokenizer comes from DeepSeek-V3's
tokenizer.json (BPE, pre-tokenizer "deepseek-v3"), padded to the model's vocab_size.

usage: to_gguf.py MODEL_DIR TOKENIZER_JSON OUT.gguf   (gguf-py on PYTHONPATH, numpy)
"""
import json
import os
import struct
import sys

import numpy as np
import gguf


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        dtype = {"BF16": np.uint16, "F32": np.float32}[info["dtype"]]
        tensors[name] = (info["dtype"], data[b:e].view(dtype).reshape(info["shape"]))
    return tensors


def bf16_to_f32(a):
    return (a.astype(np.uint32) << 16).view(np.float32)


def main():
    model_dir, tokenizer_json, out = sys.argv[1:4]
    cfg = json.load(open(f"{model_dir}/config.json"))
    t = read_safetensors(f"{model_dir}/model.safetensors")
    L, H = cfg["num_hidden_layers"], cfg["num_attention_heads"]
    nope, rope, vd, C = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"], cfg["kv_lora_rank"]

    w = gguf.GGUFWriter(out, "deepseek2")
    w.add_name(os.path.basename(os.path.normpath(model_dir)))
    w.add_block_count(L)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(H)
    w.add_head_count_kv(1)  # MLA as MQA, as the converter writes it
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_expert_count(cfg["n_routed_experts"])
    w.add_expert_used_count(cfg["num_experts_per_tok"])
    w.add_expert_group_count(cfg["n_group"])
    w.add_expert_group_used_count(cfg["topk_group"])
    w.add_expert_gating_func(gguf.ExpertGatingFuncType.SIGMOID if cfg["scoring_func"] == "sigmoid"
                             else gguf.ExpertGatingFuncType.SOFTMAX)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)
    w.add_leading_dense_block_count(cfg["first_k_dense_replace"])
    w.add_vocab_size(cfg["vocab_size"])
    w.add_q_lora_rank(cfg["q_lora_rank"])
    w.add_kv_lora_rank(C)
    w.add_key_length(C + rope)
    w.add_value_length(C)
    w.add_key_length_mla(nope + rope)
    w.add_value_length_mla(vd)
    w.add_expert_feed_forward_length(cfg["moe_intermediate_size"])
    w.add_expert_shared_count(cfg["n_shared_experts"])
    w.add_expert_weights_scale(cfg["routed_scaling_factor"])
    if cfg.get("norm_topk_prob"):
        w.add_expert_weights_norm(True)
    w.add_rope_dimension_count(rope)
    if cfg.get("rope_scaling"):
        raise SystemExit("rope_scaling (YaRN) is not written by this script")

    # Tokenizer: ids from tokenizer.json's vocab and added tokens, [PADi] up to vocab_size.
    tok = json.load(open(tokenizer_json))
    by_id = {i: s for s, i in tok["model"]["vocab"].items()}
    special = {}
    for a in tok["added_tokens"]:
        by_id[a["id"]] = a["content"]
        special[a["id"]] = a["special"]
    tokens, types = [], []
    for i in range(cfg["vocab_size"]):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if special.get(i) else
                         gguf.TokenType.USER_DEFINED if i in special else gguf.TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("deepseek-v3")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(cfg["bos_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])
    w.add_add_bos_token(True)

    def bf16(name, a):
        w.add_tensor(name, np.ascontiguousarray(a), raw_dtype=gguf.GGMLQuantizationType.BF16)

    def f32(name, a):
        w.add_tensor(name, np.ascontiguousarray(a if a.dtype == np.float32 else bf16_to_f32(a)))

    def get(name):
        return t[name][1]

    bf16("token_embd.weight", get("model.embed_tokens.weight"))
    for i in range(L):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        f32(b + "attn_norm.weight", get(p + "input_layernorm.weight"))
        f32(b + "ffn_norm.weight", get(p + "post_attention_layernorm.weight"))
        f32(b + "attn_q_a_norm.weight", get(p + "self_attn.q_a_layernorm.weight"))
        f32(b + "attn_kv_a_norm.weight", get(p + "self_attn.kv_a_layernorm.weight"))
        bf16(b + "attn_q_a.weight", get(p + "self_attn.q_a_proj.weight"))
        bf16(b + "attn_q_b.weight", get(p + "self_attn.q_b_proj.weight"))
        bf16(b + "attn_kv_a_mqa.weight", get(p + "self_attn.kv_a_proj_with_mqa.weight"))
        kv_b = get(p + "self_attn.kv_b_proj.weight").reshape(H, nope + vd, C)
        bf16(b + "attn_k_b.weight", kv_b[:, :nope, :].transpose(0, 2, 1))  # [H, C, nope]
        bf16(b + "attn_v_b.weight", kv_b[:, nope:, :])                     # [H, vd, C]
        bf16(b + "attn_output.weight", get(p + "self_attn.o_proj.weight"))
        if i < cfg["first_k_dense_replace"]:
            for proj in ("gate", "up", "down"):
                bf16(b + f"ffn_{proj}.weight", get(p + f"mlp.{proj}_proj.weight"))
            continue
        bf16(b + "ffn_gate_inp.weight", get(p + "mlp.gate.weight"))
        f32(b + "exp_probs_b.bias", get(p + "mlp.gate.e_score_correction_bias"))
        for proj in ("gate", "up", "down"):
            stacked = np.stack([get(p + f"mlp.experts.{e}.{proj}_proj.weight") for e in range(cfg["n_routed_experts"])])
            bf16(b + f"ffn_{proj}_exps.weight", stacked)
            bf16(b + f"ffn_{proj}_shexp.weight", get(p + f"mlp.shared_experts.{proj}_proj.weight"))
    f32("output_norm.weight", get("model.norm.weight"))
    bf16("output.weight", get("lm_head.weight"))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file(progress=False)
    w.close()


if __name__ == "__main__":
    main()
