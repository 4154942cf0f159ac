"""Where a run executes: one process (plain PyTorch), or several launched by ``accelerate``
(DDP; FSDP and DeepSpeed from an accelerate config file). The trainer talks to a :class:`Runtime`
only, so its loop is the same in both.

How a multi-process step stays equal to the one-process step with the same global batch:

- each rank takes a contiguous share of the step's prompts, in whole groups (group statistics and
  advantages are computed on the rank that holds the group);
- sampling is keyed by each prompt's place in the global batch (:mod:`grpo.llm.rollout.seeding`), not by
  a per-process RNG stream;
- the loss normaliser (sequences, tokens or the constant) is summed over ranks, and each rank's
  loss is multiplied by the world size, because DDP/FSDP/DeepSpeed *average* gradients over ranks:
  the result is exactly the full batch's gradient, as micro-batch shares already make it for
  gradient accumulation;
- metrics are reduced over ranks; only the main process writes files and shows the progress bar.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager, nullcontext
from typing import Any, Iterator

import torch
from torch import Tensor

from grpo.llm.infra.fsdp import (DDP, FSDP2, SINGLE, full_model_state, full_optimizer_state, fully_shard_model,
                                 local_numel, parameter_fingerprint, requested_strategy, require_deepspeed,
                                 without_tied_copies)

# --mixed-precision name -> autocast dtype (None: full precision).
MIXED_PRECISION = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``name`` on ``device``; ValueError where the device cannot do it."""
    if name not in MIXED_PRECISION:
        raise ValueError(f"mixed_precision={name!r} unknown; choose one of {sorted(MIXED_PRECISION)}")
    dtype = MIXED_PRECISION[name]
    if dtype is None:
        return None
    if device.type == "cuda":
        if dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
            raise ValueError("--mixed-precision bf16: this GPU has no bfloat16 support; use fp16")
        return dtype
    if device.type == "cpu" and dtype is torch.bfloat16:
        return dtype  # CPU autocast supports bfloat16 (fast only with AVX512-BF16/AMX)
    raise ValueError(f"--mixed-precision {name} is not offered on {device.type}: fp16 needs a CUDA device "
                     "(loss scaling); on CPU use bf16 or no")


def launched() -> bool:
    """True inside a multi-process launch (``accelerate launch``, ``torchrun``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


class Runtime:
    """One process, plain PyTorch; the base of :class:`AccelerateRuntime`. Collectives are identities."""

    world_size, rank, is_main = 1, 0, True
    strategy = SINGLE
    # Strategies whose forward passes are collective (FSDP, DeepSpeed ZeRO-3): every rank must run
    # the same number of forward passes, so generation must be synchronised (transformers' generate
    # with synced_gpus), and evaluation runs on every rank.
    collective_forward = False

    def __init__(self, device: torch.device, mixed_precision: str = "no"):
        self.device = device
        self.amp_dtype = autocast_dtype(mixed_precision, device)
        self.scaler = torch.amp.GradScaler(device.type) if mixed_precision == "fp16" else None

    # ------------------------------------------------------------------ model and optimizer
    def prepare(self, model: Any, optimizer: torch.optim.Optimizer) -> tuple[Any, torch.optim.Optimizer]:
        return model, optimizer

    def unwrap(self, model: Any) -> Any:
        """The model without its DDP/FSDP/DeepSpeed wrapper (a peft model stays a peft model)."""
        return model

    def autocast(self) -> Any:
        """Context for forward passes in mixed precision (weights stay float32)."""
        return torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else nullcontext()

    def accumulating(self, model: Any, last: bool) -> Any:
        """Context for one micro-batch's backward: gradients are synchronised only on the ``last``."""
        return nullcontext()

    def backward(self, loss: Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """fp16: divide the gradients by the loss scale before clipping."""
        self._unscaled = self.scaler is not None and any(
            p.grad is not None for group in optimizer.param_groups for p in group["params"])
        if self._unscaled:
            self.scaler.unscale_(optimizer)

    def after_step(self, stepped: bool) -> None:
        """fp16: let the loss scale grow, or shrink after a skipped (overflowing) step."""
        if self.scaler is not None and getattr(self, "_unscaled", False):
            self.scaler.update()  # reads the overflow check unscale_ recorded

    @contextmanager
    def generation(self, model: Any) -> Iterator[Any]:
        """The module to sample from (no wrapper, so no collective in its forward under DDP)."""
        yield self.unwrap(model)

    def savable(self, model: Any) -> Any:
        """Something with ``save_pretrained`` that writes the full model (collective under FSDP/DeepSpeed)."""
        return self.unwrap(model)

    def optimizer_state(self, model: Any, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The optimizer's state dict for a checkpoint (collective under FSDP: gathered full tensors)."""
        return optimizer.state_dict()

    def load_optimizer_state(self, model: Any, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        optimizer.load_state_dict(state)

    def describe(self, model: Any) -> dict[str, Any]:
        """The strategy in force, for summary.json and the start-up log."""
        return {"distributed": self.strategy, "processes": self.world_size,
                "parameters_per_process": local_numel(model), "trainable_parameters_per_process":
                local_numel(model, trainable=True)}

    def replicas_in_sync(self, model: Any) -> bool | None:
        """Whether every rank holds the same parameters (None: one process, or sharded parameters)."""
        return None

    # ------------------------------------------------------------------ collectives
    def sum(self, x: Tensor | float) -> Tensor:
        return torch.as_tensor(x, dtype=torch.float64)

    def max(self, x: Tensor | float) -> Tensor:
        return torch.as_tensor(x, dtype=torch.float64)

    def cat(self, x: Tensor) -> Tensor:
        """Concatenate ``x`` [n_r, ...] of every rank along dim 0, in rank order (sizes may differ)."""
        return x

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order."""
        if self.world_size == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        pass

    def finish(self) -> None:
        """End of a run: every process waits for the main one, then leaves the process group (a gloo
        group still alive when the interpreter exits can abort the process)."""

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """The main process runs the block first (e.g. builds and caches the tiny model), then the others."""
        yield

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of ``n`` prompts (whole groups stay on one rank)."""
        if n % self.world_size:
            raise ValueError(f"prompts_per_step={n} does not split over {self.world_size} processes: use a "
                             f"multiple of {self.world_size} (each prompt's whole group stays on one process)")
        k = n // self.world_size
        return slice(self.rank * k, (self.rank + 1) * k)


class AccelerateRuntime(Runtime):
    """Several processes under ``accelerate``: DDP by default, FSDP or DeepSpeed from its config.

    Collectives go through ``torch.distributed`` on the process's device (gloo on CPU, NCCL on GPU).
    """

    def __init__(self, device_name: str = "auto", mixed_precision: str = "no"):
        from accelerate import Accelerator
        from accelerate.utils import DistributedDataParallelKwargs, DistributedType

        cpu = device_name == "cpu" or not torch.cuda.is_available()
        autocast_dtype(mixed_precision, torch.device("cpu" if cpu else "cuda"))  # clear error first
        asked = requested_strategy(dict(os.environ))
        # accelerate enables DeepSpeed only with cpu=False, and on CPU its process count then stays 1:
        # the process group is started here and ranks are read from torch.distributed.
        self.ds_cpu = asked == "DeepSpeed" and cpu
        if asked == "DeepSpeed":
            require_deepspeed()
        if self.ds_cpu:
            import torch.distributed as dist

            dist.init_process_group("gloo")
        # Buffers (rotary tables) are constant: broadcasting them on every forward would only make
        # the number of forward passes per rank matter.
        self.acc = Accelerator(cpu=cpu and not self.ds_cpu, mixed_precision=mixed_precision,
                               kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)])
        kind = self.acc.distributed_type
        self.world_size, self.rank = self.acc.num_processes, self.acc.process_index
        self.is_main, self.device = self.acc.is_main_process, self.acc.device
        if self.ds_cpu:
            self.world_size, self.rank = dist.get_world_size(), dist.get_rank()
            self.is_main = self.rank == 0
        self.amp_dtype = None  # accelerate autocasts the prepared model; autocast() below covers the rest
        self.scaler = self.acc.scaler
        # accelerate runs FSDP on accelerators only (CPU processes silently get DDP): grpo shards itself there.
        self.own_fsdp = asked == FSDP2 and kind == DistributedType.MULTI_CPU
        self.fsdp = kind == DistributedType.FSDP or self.own_fsdp
        self.deepspeed = kind == DistributedType.DEEPSPEED
        zero = self.acc.state.deepspeed_plugin.zero_stage if self.deepspeed else None
        self.collective_forward = self.fsdp or zero == 3
        self.strategy = FSDP2 if self.fsdp else f"DeepSpeed ZeRO-{zero}" if self.deepspeed else DDP
        if self.ds_cpu and zero == 3:
            from grpo.llm.infra.launch import ZERO3_ON_CPU

            raise ValueError(ZERO3_ON_CPU)
        if asked and asked.startswith("FSDP") and asked != FSDP2:
            raise ValueError("FSDP: set fsdp_version: 2 in the accelerate config (gradient clipping, generation "
                             "and checkpoints here assume FSDP2)")
        if asked and not self.strategy.startswith(asked):
            raise ValueError(f"the accelerate config asks for {asked} but this launch runs {self.strategy} "
                             f"({kind.value} processes); see docs/scale-out.md for what runs where")

    def prepare(self, model: Any, optimizer: torch.optim.Optimizer) -> tuple[Any, torch.optim.Optimizer]:
        if self.deepspeed:
            ds = self.acc.state.deepspeed_plugin.deepspeed_config
            if ds.get("train_micro_batch_size_per_gpu", "auto") == "auto":
                ds["train_micro_batch_size_per_gpu"] = 1  # only used for DeepSpeed's throughput logs here
            ds["train_batch_size"] = ds["train_micro_batch_size_per_gpu"] * self.world_size  # accelerate's count may be 1
        if self.own_fsdp:
            model = fully_shard_model(model, optimizer, os.environ.get("FSDP_RESHARD_AFTER_FORWARD", "true") == "true")
        else:
            with warnings.catch_warnings():  # torch renames broadcast_buffers; accelerate knows the old name only
                warnings.filterwarnings("ignore", message=".*broadcast_buffers.*", category=FutureWarning)
                model, optimizer = self.acc.prepare(model, optimizer)
        if self.fsdp:
            # transformers' generate synchronises ranks (synced_gpus) for modules flagged as FSDP-managed.
            from grpo.llm.modeling.hf import inner_model

            for m in {id(x): x for x in (self.unwrap(model), inner_model(model))}.values():
                m._is_fsdp_managed_module = True
        return model, optimizer

    def unwrap(self, model: Any) -> Any:
        return self.acc.unwrap_model(model)

    def autocast(self) -> Any:
        return self.acc.autocast()

    def accumulating(self, model: Any, last: bool) -> Any:
        if self.own_fsdp:
            model.set_requires_gradient_sync(last)  # reduce-scatter the last micro-batch's gradients only
            return nullcontext()
        return nullcontext() if last else self.acc.no_sync(model)

    def backward(self, loss: Tensor) -> None:
        self.acc.backward(loss)

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.acc.unscale_gradients()

    def after_step(self, stepped: bool) -> None:
        # accelerate's optimizer updates the loss scale when it steps; a skipped step must too.
        if self.scaler is not None and not stepped:
            self.scaler.update()

    def savable(self, model: Any) -> Any:
        if not (self.fsdp or self.deepspeed):
            return self.unwrap(model)
        state = full_model_state(model) if self.own_fsdp else without_tied_copies(
            self.unwrap(model), self.acc.get_state_dict(model))
        return _WithStateDict(self.unwrap(model), state)

    def optimizer_state(self, model: Any, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        if self.fsdp:  # full tensors keyed by parameter name, gathered on the main process
            return full_optimizer_state(model, optimizer)
        if self.deepspeed:
            raise ValueError("checkpoints under DeepSpeed are not supported here; use DDP or FSDP2")
        return optimizer.state_dict()

    def load_optimizer_state(self, model: Any, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        if self.fsdp:  # every process reads the full state and keeps its shards
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
        else:
            optimizer.load_state_dict(state)

    def replicas_in_sync(self, model: Any) -> bool | None:
        if self.fsdp or self.deepspeed:
            return None
        mine = parameter_fingerprint(self.unwrap(model))  # [2]
        every = self.cat(mine[None])  # [W, 2]
        return bool((every == every[0]).all())

    # ------------------------------------------------------------------ collectives
    def _reduce(self, x: Tensor | float, op: Any) -> Tensor:
        import torch.distributed as dist

        t = torch.as_tensor(x, dtype=torch.float64).detach().to(self.device).clone()
        dist.all_reduce(t, op=op)
        return t.cpu()

    def sum(self, x: Tensor | float) -> Tensor:
        import torch.distributed as dist

        return self._reduce(x, dist.ReduceOp.SUM)

    def max(self, x: Tensor | float) -> Tensor:
        import torch.distributed as dist

        return self._reduce(x, dist.ReduceOp.MAX)

    def cat(self, x: Tensor) -> Tensor:
        import torch.distributed as dist

        wire = x.detach().to(self.device)
        wire = wire.to(torch.uint8) if wire.dtype == torch.bool else wire
        n = torch.tensor([wire.shape[0]], device=self.device)
        sizes = [torch.zeros_like(n) for _ in range(self.world_size)]
        dist.all_gather(sizes, n)
        padded = torch.zeros((int(max(sizes)), *wire.shape[1:]), dtype=wire.dtype, device=self.device)
        padded[:wire.shape[0]] = wire
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded)
        out = torch.cat([p[:int(s)] for p, s in zip(parts, sizes)]).to(x.device)
        return out.bool() if x.dtype == torch.bool else out

    def barrier(self) -> None:
        import torch.distributed as dist

        dist.barrier()

    def finish(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    @contextmanager
    def main_first(self) -> Iterator[None]:
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()


class _WithStateDict:
    """A model whose ``save_pretrained`` writes a gathered full state dict (FSDP, DeepSpeed)."""

    def __init__(self, model: Any, state_dict: dict[str, Tensor]):
        self.model, self.state_dict = model, state_dict

    def save_pretrained(self, path: Any, **kwargs: Any) -> None:
        self.model.save_pretrained(path, state_dict=self.state_dict, **kwargs)


def make_runtime(device: str = "auto", mixed_precision: str = "no") -> Runtime:
    """An :class:`AccelerateRuntime` inside a multi-process launch, else a one-process :class:`Runtime`."""
    if launched():
        return AccelerateRuntime(device, mixed_precision)
    from grpo.llm.modeling.models import pick_device

    return Runtime(pick_device(device), mixed_precision)
