"""From loaded tensors to an execution plan: fuse, transpose once, cast, and place on the device."""
from __future__ import annotations

import torch

from ..hal import Device
from ..loader.mapping import ModelTensors
from ..loader.config import ModelConfig
from .model import LayerWeights, Matmul, Model


def torch_matmul(x: torch.Tensor, w_t: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    # x @ W^T with W^T stored contiguous: on CPU this streams weights faster than F.linear
    return torch.matmul(x, w_t, out=out)


def build_model(
    cfg: ModelConfig, t: ModelTensors, device: Device, dtype: torch.dtype, matmul: Matmul = torch_matmul
) -> Model:
    def place(x: torch.Tensor | None) -> torch.Tensor | None:
        if x is None:
            return None
        # the weight tier: one persistent allocation per tensor, filled once, never freed
        out = device.allocate(tuple(x.shape), dtype)
        return device.copy(out, x.to(dtype).contiguous())

    def fuse_t(*ws: torch.Tensor) -> torch.Tensor:
        return place(torch.cat(ws, dim=0).t())

    layers = []
    for lt in t.layers:
        bias = None if lt.q_bias is None else place(torch.cat([lt.q_bias, lt.k_bias, lt.v_bias]))
        layers.append(LayerWeights(
            qkv_t=fuse_t(lt.q, lt.k, lt.v),
            qkv_bias=bias,
            o_t=fuse_t(lt.o),
            gate_up_t=fuse_t(lt.gate, lt.up),
            down_t=fuse_t(lt.down),
            attn_norm=place(lt.attn_norm),
            mlp_norm=place(lt.mlp_norm),
            q_norm=place(lt.q_norm),
            k_norm=place(lt.k_norm),
        ))
    embed_t = fuse_t(t.embed)
    lm_head_t = embed_t if t.lm_head is t.embed else fuse_t(t.lm_head)
    return Model(cfg, embed_t, layers, place(t.final_norm), lm_head_t, matmul)
