"""Training placement and precision: windows on the training device, TF32/bf16 params, the
attention kernel named, and the GPU benchmark's code path (run here on the CPU)."""
import importlib.util

import numpy as np
import torch

from conftest import ROOT
from spreadcast.config import TrainConfig
from spreadcast.features.windows import Windows
from spreadcast.model.net import ModelConfig, SpreadTransformer
from spreadcast.training.device import attention_backend, attention_kernel, place_windows, set_precision
from spreadcast.training.loop import autocast_context


def small_windows() -> Windows:
    x = torch.arange(40 * 3, dtype=torch.float32).reshape(40, 3)
    return Windows(x, torch.zeros_like(x), torch.randn(40, 2), history=5)


def test_batches_are_gathered_where_the_windows_live():
    windows = small_windows()
    moved = windows.to("meta")                 # a device without data: shapes and placement only
    assert moved.device.type == "meta" and moved.nbytes() == windows.nbytes()
    x, m, y = moved.batch(np.array([4, 9, 30]))
    assert x.device.type == m.device.type == y.device.type == "meta"
    assert x.shape == (3, 5, 3) and y.shape == (3, 2)
    x_cpu, _, _ = windows.batch(np.array([4, 9, 30]))
    torch.testing.assert_close(x_cpu[1, -1], torch.tensor([27.0, 28.0, 29.0]))   # row 9 ends the window
    torch.testing.assert_close(x_cpu[1, 0], torch.tensor([15.0, 16.0, 17.0]))    # row 5 starts it


def test_placement_and_precision_on_the_cpu():
    windows = small_windows()
    placed, where = place_windows(windows, torch.device("cpu"), on_device=True)
    assert placed is windows and where.startswith("host")
    before = torch.backends.cuda.matmul.allow_tf32
    assert set_precision(torch.device("cpu"), tf32=True, amp=False) == "fp32"
    assert set_precision(torch.device("cpu"), tf32=True, amp=True) == "bf16 autocast"
    assert torch.backends.cuda.matmul.allow_tf32 == before          # nothing switched off the GPU
    cfg = TrainConfig()
    assert cfg.tf32 is True and cfg.windows_on_device is True


def test_attention_kernel_is_named_from_the_profiler():
    cfg = ModelConfig(n_features=3, n_targets=2, history=5, d_model=8, n_heads=2, n_layers=1,
                      skip_decays=(0.0,))
    model = SpreadTransformer(cfg)
    x, m, _ = small_windows().batch(np.array([4, 5]))
    kernel = attention_kernel(model, x, m, autocast_context(torch.device("cpu"), False)[0])
    assert "attention" in kernel and kernel.startswith("_scaled_dot_product")
    assert model.training                                      # left as it was found
    assert attention_backend(model, 4, torch.device("cpu"), amp=False) in ("FLASH_ATTENTION", "MATH")


def test_gpu_benchmark_path_runs_on_the_cpu():
    spec = importlib.util.spec_from_file_location("train_throughput", ROOT / "bench" / "train_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    size = dict(features=16, history=8, d_model=16, n_heads=2, n_layers=1)
    for precision, where in (("fp32", "host"), ("bf16", "device")):
        result = bench.bench_device(size, torch.device("cpu"), precision, where, steps=2, repeats=1, batch=8)
        assert result["samples_per_s"] > 0 and result["peak_gpu_mib"] == 0.0
        assert "attention" in result["attention_kernel"]
