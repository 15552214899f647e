"""Fixtures shared by several test modules, and the device the `gpu`-marked tests run on.

`pytest --device cuda` (benchmarks/gpu_checks.sh runs `pytest -m gpu --device cuda`) runs the gpu-marked
tests on that device against float64 references on the CPU; with the default `--device cpu` they run on
the CPU like every other test, and those that only mean something on CUDA (`cuda_device`) skip."""

from __future__ import annotations

import pytest
import torch


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu",
                     help="device of the gpu-marked tests: cpu (default), cuda or cuda:N")


def pytest_configure(config: pytest.Config) -> None:
    name = config.getoption("--device")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise pytest.UsageError(f"--device {name}: not a device ({exc}); give cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError(f"--device {name}: torch {torch.__version__} sees no CUDA device")


@pytest.fixture(scope="session")
def device(pytestconfig: pytest.Config) -> torch.device:
    """The --device the gpu-marked tests run on (a CUDA device with its index)."""
    device = torch.device(pytestconfig.getoption("--device"))
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


@pytest.fixture
def cuda_device(device: torch.device) -> torch.device:
    """The --device for a test that only means something on CUDA; skips elsewhere."""
    if device.type != "cuda":
        pytest.skip("needs CUDA: pytest -m gpu --device cuda (benchmarks/gpu_checks.sh)")
    return device


@pytest.fixture
def one_thread():
    """For tests on tiny tensors: extra OpenMP threads only add wake-ups and spinning, which on a loaded
    2-core machine made a training step 20x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
