"""Device and precision choices, in one place for training, evaluation and inference."""

from __future__ import annotations

import contextlib

import torch

from .errors import ConfigError

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"train.device: unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but no CUDA GPU is available; use cpu or auto")
    return device


# Whether a plain `precision auto` picks bf16 on a CPU with native bf16 (AVX512-BF16 / AMX). bf16 measured
# better at equal minutes (issue 17, README), so the CPU `--budget` recipes use it (budget.with_cpu_bf16);
# plain `auto` stays fp32 so runs keep fp32's exact numbers unless asked.
CPU_AUTO_BF16 = False
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_bf16_supported(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Native bf16 on this CPU: the kernel's CPU flags where there are some (Linux); elsewhere oneDNN's check
    (which also says yes for AVX512 CPUs that only emulate bf16, so the flags come first); else no."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            flags = {word for line in f if line.startswith("flags") for word in line.split(":", 1)[1].split()}
        return any(flag in flags for flag in CPU_BF16_FLAGS)
    except OSError:
        pass
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def precision_choice(precision: str, device: torch.device) -> tuple[str, str]:
    """The precision a run trains in and why, `auto` resolved for this device."""
    if precision != "auto":
        return precision, "set by train.precision"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "auto: this GPU supports bf16"
        return "fp32", "auto: this GPU has no bf16"
    if device.type == "cpu" and cpu_bf16_supported():
        if CPU_AUTO_BF16:
            return "bf16", "auto: this CPU has native bf16 (AVX512-BF16/AMX)"
        return "fp32", ("auto: this CPU has native bf16, but plain runs stay fp32; --budget recipes and "
                        "train.precision=bf16 use it")
    return "fp32", f"auto: no native bf16 on this {device.type}"


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """Mixed-precision dtype (None: fp32); "auto" as `precision_choice` resolves it."""
    if precision == "auto":
        return AUTOCAST_DTYPES[precision_choice(precision, device)[0]]
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision fp16 needs a CUDA GPU; use bf16 or fp32 on the CPU")
    return AUTOCAST_DTYPES[precision]


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)

