"""Where and in what precision a lag head trains: the exported windows placed on the training
device, TF32 and bf16 switched by params, and the attention kernel that actually runs.

On a GPU the step is launch-bound at these sizes: gathering each batch on the host and copying
it costs more than the step itself, so the (small) exported matrices go to the device once and
every batch is gathered there. On the CPU host and device are the same memory and nothing moves.
"""
from __future__ import annotations

import contextlib
import os
import tempfile

import torch

from spreadcast.features.windows import Windows

# Share of the free GPU memory the exported windows may take; above it batches come from the host.
DEVICE_MEMORY_SHARE = 0.5


def amp_dtype(device: torch.device, amp: bool) -> torch.dtype:
    """The dtype a step computes in: fp32 without `amp`; with it bf16, or fp16 (with a grad
    scaler) on a CUDA device without bf16. The one place this choice is made."""
    if not amp:
        return torch.float32
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def set_precision(device: torch.device, tf32: bool, amp: bool) -> str:
    """Switch TF32 matmuls (CUDA only) and name the precision a step computes in."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    dtype = amp_dtype(device, amp)
    if dtype == torch.bfloat16:
        return "bf16 autocast"
    if dtype == torch.float16:
        return "fp16 autocast + grad scaler"
    return "tf32" if device.type == "cuda" and tf32 else "fp32"


def place_windows(windows: Windows, device: torch.device, on_device: bool) -> tuple[Windows, str]:
    """The windows on `device` when asked and they fit, else on the host; and where they are."""
    if device.type != "cuda":
        return windows, "host (= device)"
    if windows.device == device:
        return windows, "device"
    if on_device:
        free, _ = torch.cuda.mem_get_info(device)
        if windows.nbytes() <= DEVICE_MEMORY_SHARE * free:
            return windows.to(device), "device"
    return windows, "host"


@contextlib.contextmanager
def _quiet_stderr():
    """Silence C++ writers on fd 2 (the profiler announces its start and stop there)."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def attention_backend(model: torch.nn.Module, batch: int, device: torch.device, amp: bool) -> str:
    """The scaled-dot-product-attention backend PyTorch picks for the model's training shapes
    and precision (FLASH_ATTENTION, EFFICIENT_ATTENTION, CUDNN_ATTENTION or MATH), asked of its
    dispatcher directly: instant, unlike a profiled pass (`attention_kernel`, for benchmarks)."""
    from torch.nn.attention import SDPBackend

    cfg = model.cfg
    dtype = amp_dtype(device, amp)
    q = torch.zeros(batch, cfg.n_heads, cfg.history, cfg.d_model // cfg.n_heads, device=device, dtype=dtype)
    try:
        return SDPBackend(torch._fused_sdp_choice(q, q, q, None, cfg.dropout, True)).name
    except (AttributeError, RuntimeError, TypeError, ValueError):   # a private entry point: may move
        return "unknown"


def attention_kernel(model: torch.nn.Module, x: torch.Tensor, m: torch.Tensor, autocast) -> str:
    """The scaled-dot-product-attention kernel one forward pass runs (from the profiler), e.g.
    `_scaled_dot_product_flash_attention_for_cpu` or `_scaled_dot_product_cudnn_attention`."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if x.is_cuda else [])
    was_training = model.training
    model.eval()
    try:
        with _quiet_stderr(), profile(activities=activities) as prof, torch.no_grad(), autocast():
            model(x, m)
    finally:
        model.train(was_training)
    names = {e.name.removeprefix("aten::") for e in prof.events()}
    kernels = sorted(n for n in names if n.startswith("_") and "attention" in n and "backward" not in n)
    if kernels:
        return kernels[0]
    return "math" if "scaled_dot_product_attention" in names else "none"
