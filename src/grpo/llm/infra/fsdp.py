"""FSDP2 (``torch.distributed.fsdp.fully_shard``) applied by grpo itself, and full-state gathering.

accelerate offers FSDP on accelerators only: on CPU processes it silently runs DDP instead. So when
an accelerate config asks for FSDP and the processes are CPU ones (gloo), the runtime shards the
model here, as accelerate's FSDP2 path does on GPUs: every decoder layer (the model's
``_no_split_modules``) is one ``fully_shard`` unit, then the root. Parameters, gradients and the
optimizer state are then DTensors sharded on dim 0 over the processes; forward and backward
all-gather a unit's parameters and reduce-scatter (average) its gradients.

State that leaves the processes (checkpoints, the final model) is gathered to full tensors with
``torch.distributed.checkpoint.state_dict`` (``full_state_dict=True``, on CPU, rank 0 holds it), so a
checkpoint is the same Hugging Face folder as in one process; on resume every process loads the model
folder before sharding, and takes its shards of the full optimizer state.

Also here: which strategy a launch asked for, and the per-process sizes that summary.json reports.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

# The names ``distributed`` in summary.json and the start-up log, per strategy.
SINGLE, DDP, FSDP2 = "single", "DDP", "FSDP2"


def requested_strategy(env: dict[str, str]) -> str | None:
    """The strategy an ``accelerate launch`` config asked for (its environment), None for plain DDP."""
    if env.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        return f"FSDP{env.get('FSDP_VERSION', '1')}"
    if env.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        return "DeepSpeed"
    return None


def require_deepspeed() -> None:
    """DeepSpeed importable, else the one line that says how to install it."""
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        raise ValueError("the accelerate config asks for DeepSpeed, which is not installed: "
                         "pip install 'grpo-lab[deepspeed]' (or use examples/accelerate/fsdp.yaml)")


def shard_units(model: Any) -> list[torch.nn.Module]:
    """The modules that become one FSDP unit each: instances of the model's ``_no_split_modules``."""
    from grpo.llm.modeling.hf import inner_model

    names = set(getattr(inner_model(model), "_no_split_modules", None) or [])
    return [m for m in model.modules() if type(m).__name__ in names]


def fully_shard_model(model: Any, optimizer: torch.optim.Optimizer, reshard_after_forward: bool = True) -> Any:
    """Shard ``model`` in place over the default process group (FSDP2) and point ``optimizer`` at the
    sharded parameters (``fully_shard`` replaces each parameter by a DTensor)."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    before = dict(model.named_parameters())
    units = shard_units(model)
    if not units:
        raise ValueError(f"FSDP: {type(model).__name__} names no decoder layer class (_no_split_modules) to shard by")
    # A mesh on the model's own device: fully_shard's default takes the machine's accelerator, so CPU processes
    # on a machine with one GPU would each claim a GPU of their rank (checked on an H200: invalid device ordinal).
    mesh = init_device_mesh(next(model.parameters()).device.type, (dist.get_world_size(),))
    for unit in units:
        fully_shard(unit, mesh=mesh, reshard_after_forward=reshard_after_forward)
    fully_shard(model, mesh=mesh, reshard_after_forward=reshard_after_forward)
    after = dict(model.named_parameters())
    new = {id(before[name]): after[name] for name in before}
    for group in optimizer.param_groups:
        group["params"] = [new[id(p)] for p in group["params"]]
    return model


def local_numel(model: Any, trainable: bool = False) -> int:
    """Parameter elements this process holds (its shards under FSDP2)."""
    return sum(_local(p).numel() for p in model.parameters() if p.requires_grad or not trainable)


def state_mb(model: Any, optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """MiB of parameters, gradients and optimizer state this process holds (its shards under FSDP2)."""
    def mb(tensors: Any) -> float:
        return round(sum(_local(t).numel() * t.element_size() for t in tensors) / 2**20, 2)

    params = list(model.parameters())
    moments = [v for st in optimizer.state.values() for v in st.values() if torch.is_tensor(v) and v.dim() > 0]
    return {"parameters": mb(params), "gradients": mb(p.grad for p in params if p.grad is not None),
            "optimizer": mb(moments)}


def _local(t: Tensor) -> Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


def full_model_state(model: Any) -> dict[str, Tensor]:
    """The full parameters and buffers on CPU, on rank 0 ({} elsewhere). Collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return without_tied_copies(model, get_model_state_dict(
        model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)))


def without_tied_copies(model: Any, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A gathered state dict without the second name of tied weights (lm_head = embed_tokens): gathered,
    they are separate copies, which ``save_pretrained`` would write twice; the unsharded model's keeps one."""
    tied = {name for name, _ in model.named_parameters(remove_duplicate=False)} - dict(model.named_parameters()).keys()
    return {k: v for k, v in state.items() if k not in tied}


def full_optimizer_state(model: Any, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer state with full tensors, keyed by parameter name, on rank 0. Collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer,
                                     options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def parameter_fingerprint(model: Any) -> Tensor:
    """Two exact integers [2] from the bits of every parameter: equal parameters give equal ones."""
    total, weighted = torch.zeros((), dtype=torch.long), torch.zeros((), dtype=torch.long)
    offset = 0
    for p in model.parameters():
        bits = p.detach().float().cpu().contiguous().view(torch.int32).long().flatten()  # [n]
        pos = torch.arange(offset, offset + bits.numel()) % 1_000_003 + 1
        total, weighted = total + bits.sum(), weighted + (bits * pos).sum()
        offset += bits.numel()
    return torch.stack([total, weighted])
