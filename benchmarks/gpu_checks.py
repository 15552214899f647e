#!/usr/bin/env python3
"""Device checks of the Quixer simulator and training, run on the target device (default cuda); with
--device cpu (DEV=cpu bash benchmarks/gpu_checks.sh) the same checks run at smaller sizes as a dry run.

Prints one line per check, `PASS <name>: <detail>`, `FAIL <name>: <detail>` or `SKIP <name>: <why>`, then a
summary; exits 1 if any check failed. Every check is a function in CHECKS (add new ones there);
--only NAME[,NAME..] runs a subset, --list names them.

  (1) simulator: float32 on the device against float64 on CPU (forward and every gradient of a small
      Quixer-sized problem, relative error < 1e-4, over several steps so that CUDA graphs are warmed up,
      captured and replayed); memory-budget chunking (with a short last chunk) against all windows at
      once; CUDA graphs against eager.
  (2) benchmarks/bench_quixer.py on the device: the paper-sized model at batch 32/256/1024/4096 (CPU:
      small batches), at n = 10, and (CUDA) without CUDA graphs; ms per step and window, peak memory
      against the simulator's estimate; the 25 ms target for a paper-sized step at batch 1024 (CUDA).
  (3) the training loop (Quixer, LSTM, Transformer, FNet): 4 steps after warm-up under
      torch.cuda.set_sync_debug_mode("error"), i.e. no host synchronisation inside a step (CUDA).
  (4) with 2 or more GPUs: run_train_gpu.sh 0,1 (torchrun, NCCL), killed after a checkpoint and rerun,
      equals the uninterrupted run.
  (5) the lambeq encoder's table and stairs states on the device against float64 on CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from quixer_rna import quixer_sim  # noqa: E402
from quixer_rna.quixer_sim import (  # noqa: E402
    apply_circuit,
    circuit14_gates,
    pauli_expectations,
    polynomial_state,
    run_circuit,
    simulation_bytes_per_window,
    simulator_cache_info,
)

PAPER_STEP_TARGET_MS = 25.0   # n=6, L=4, d=3, T=32, E=512, V=9924 at batch 1024 on one GPU
REL_TOL_FLOAT32 = 1e-4


@dataclass
class Context:
    device: torch.device
    bench_steps: int
    cache: dict = field(default_factory=dict)   # results shared between checks (bench rows)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


Result = tuple[str, str]   # ("PASS" | "FAIL" | "SKIP", detail)


# ----------------------------------------------------------------------------------------------------
# (1) The simulator on the device.

@dataclass
class SimProblem:
    qubits: int
    layers: int
    degree: int
    tensors: dict[str, torch.Tensor]   # float64 on CPU


def _sim_problem(ctx: Context) -> SimProblem:
    """Quixer-sized circuits (n=6, L=4, d=3); 64 windows x 32 tokens on CUDA, 12 x 8 on CPU."""
    qubits, layers, degree = 6, 4, 3
    windows, tokens = (64, 32) if ctx.cuda else (12, 8)
    gen = torch.Generator().manual_seed(0)
    num_gates, readout_gates = len(circuit14_gates(qubits, layers)), len(circuit14_gates(qubits, 1))
    b_re, b_im = torch.rand(tokens, generator=gen, dtype=torch.float64), torch.rand(tokens, generator=gen,
                                                                                    dtype=torch.float64)
    norm = torch.sqrt(b_re**2 + b_im**2).sum()
    tensors = {
        "angles": 0.7 * torch.randn(windows, tokens, num_gates, generator=gen, dtype=torch.float64),  # [W, T, G]
        "b_re": b_re / norm, "b_im": b_im / norm,
        "coeffs": torch.rand(degree + 1, generator=gen, dtype=torch.float64),
        "readout": torch.randn(readout_gates, generator=gen, dtype=torch.float64),
        "weights": torch.randn(3 * qubits, windows, generator=gen, dtype=torch.float64),
    }
    return SimProblem(qubits, layers, degree, tensors)


def _sim_run(problem: SimProblem, device: torch.device, dtype: torch.dtype, reference: bool = False,
             **kwargs) -> dict[str, torch.Tensor]:
    """The model's simulator pipeline (polynomial state, post-selection norm, readout circuit, Pauli
    expectations) forward and backward; outputs and gradients as float64 on CPU. The readout runs through
    run_circuit (workspace loops, CUDA graphs), or with reference=True through plain-autograd apply_circuit."""
    n = problem.qubits
    gates, readout_gates = circuit14_gates(n, problem.layers), circuit14_gates(n, 1)
    t = {k: v.to(device=device, dtype=dtype, copy=True) for k, v in problem.tensors.items()}
    leaves = {k: t[k].requires_grad_() for k in ("angles", "b_re", "b_im", "coeffs", "readout")}
    psi = polynomial_state(leaves["angles"].permute(2, 0, 1), leaves["b_re"], leaves["b_im"], leaves["coeffs"], n,
                           gates, **kwargs)
    norm2 = (psi * psi).sum((0, 1))
    readout = apply_circuit if reference else run_circuit
    graph_kwargs = {k: v for k, v in kwargs.items() if k == "use_cuda_graphs"}
    features = pauli_expectations(readout(psi / torch.sqrt(norm2), leaves["readout"].unsqueeze(-1), n,
                                          readout_gates, **({} if reference else graph_kwargs)), n)
    ((features * t["weights"]).sum() + norm2.sum()).backward()
    results = {"psi": psi, "features": features}
    results.update({f"grad_{k}": v.grad for k, v in leaves.items()})
    return {k: v.detach().to("cpu", torch.float64) for k, v in results.items()}


def _relative_errors(ours: dict, reference: dict) -> dict[str, float]:
    return {k: float((ours[k] - reference[k]).norm() / reference[k].norm().clamp_min(1e-300)) for k in reference}


def _worst(errors: dict[str, float]) -> str:
    name = max(errors, key=errors.get)
    return f"worst {name} {errors[name]:.2e}"


def check_sim_float32_vs_float64(ctx: Context) -> Result:
    problem = _sim_problem(ctx)
    reference = _sim_run(problem, torch.device("cpu"), torch.float64, reference=True)
    quixer_sim.clear_simulator_cache()
    worst, times = 0.0, []
    details = []
    for step in range(4):   # warm-up calls, capture, replays: every step is checked
        if ctx.cuda:
            torch.cuda.synchronize(ctx.device)
        start = time.perf_counter()
        ours = _sim_run(problem, ctx.device, torch.float32)
        times.append(1000 * (time.perf_counter() - start))
        errors = _relative_errors(ours, reference)
        worst = max(worst, max(errors.values()))
        details.append(_worst(errors))
    states = sorted({s for info in simulator_cache_info() for s in (info["forward"], info["adjoint"])})
    windows, tokens = problem.tensors["angles"].shape[:2]
    detail = (f"{windows} windows x {tokens} tokens, n={problem.qubits} L={problem.layers} d={problem.degree}: "
              f"max relative error {worst:.2e} over 4 steps ({details[-1]}); gate loops {','.join(states)}; "
              f"ms per step {', '.join(f'{x:.0f}' for x in times)}")
    ok = worst < REL_TOL_FLOAT32
    if ctx.cuda and quixer_sim.USE_CUDA_GRAPHS and states != ["graph"]:
        ok, detail = False, detail + " (expected every loop captured as a CUDA graph)"
    return ("PASS" if ok else "FAIL"), detail


def check_sim_chunked_equals_whole(ctx: Context) -> Result:
    problem = _sim_problem(ctx)
    windows, tokens = problem.tensors["angles"].shape[:2]
    num_gates = len(circuit14_gates(problem.qubits, problem.layers))
    whole = _sim_run(problem, ctx.device, torch.float32, chunk=windows)
    held = simulation_bytes_per_window(problem.qubits, tokens, problem.degree, torch.float32, num_gates=num_gates,
                                       part="held")
    work = simulation_bytes_per_window(problem.qubits, tokens, problem.degree, torch.float32, num_gates=num_gates,
                                       part="chunk")
    most = max(1, (windows * 3) // 8)   # about three chunks, the last one short
    chunk = quixer_sim.chunk_windows(windows, problem.qubits, tokens, problem.degree, torch.float32, ctx.device,
                                     windows * held + most * work, num_gates=num_gates)
    chunked = _sim_run(problem, ctx.device, torch.float32, budget_bytes=windows * held + most * work)
    errors = _relative_errors(chunked, whole)
    worst = max(errors.values())
    ok = worst < 1e-5 and 1 < chunk < windows
    return ("PASS" if ok else "FAIL"), (f"{windows} windows in chunks of {chunk} (budget-driven) vs all at once: "
                                        f"max relative difference {worst:.2e} ({_worst(errors)})")


def check_sim_graphs_equal_eager(ctx: Context) -> Result:
    if not ctx.cuda:
        return "SKIP", "CUDA graphs exist only on CUDA (the CPU tests drive the same code with a fake capture)"
    problem = _sim_problem(ctx)
    eager = _sim_run(problem, ctx.device, torch.float32, use_cuda_graphs=False)
    worst = 0.0
    for _ in range(4):
        graphed = _sim_run(problem, ctx.device, torch.float32, use_cuda_graphs=True)
        worst = max(worst, max(_relative_errors(graphed, eager).values()))
    states = sorted({s for info in simulator_cache_info() for s in (info["forward"], info["adjoint"])})
    ok = worst < 1e-6 and "graph" in states and "failed" not in states
    return ("PASS" if ok else "FAIL"), f"graphs vs eager max relative difference {worst:.2e}; loops {','.join(states)}"


# ----------------------------------------------------------------------------------------------------
# (2) bench_quixer.py on the device.

def _bench(ctx: Context, key: str, flags: list[str]) -> tuple[int, list[dict], str]:
    """Run bench_quixer.py with `flags` on the device (cached per key); rows from its --json output."""
    if key not in ctx.cache:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "rows.json"
            command = [sys.executable, str(ROOT / "benchmarks" / "bench_quixer.py"), f"--device={ctx.device}",
                       f"--steps={ctx.bench_steps}", f"--json={out}", *flags]
            print("  $ " + " ".join(command[1:]), flush=True)
            proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            print("\n".join("  | " + line for line in proc.stdout.rstrip().splitlines()), flush=True)
            rows = json.loads(out.read_text()) if out.exists() else []
            ctx.cache[key] = (proc.returncode, rows, proc.stderr.strip())
    return ctx.cache[key]


def _bench_result(ctx: Context, key: str, flags: list[str], graphs: bool = True) -> Result:
    code, rows, stderr = _bench(ctx, key, flags)
    problems = [f"batch {r['batch']}: {r['error']}" for r in rows if "error" in r]
    if code != 0 and not problems:
        problems.append(f"exit code {code}: {(stderr.splitlines() or ['no output'])[-1]}")
    good = [r for r in rows if "error" not in r]
    for r in good:
        if ctx.cuda and graphs and r["graph_loops"] != "graph":
            problems.append(f"batch {r['batch']}: gate loops {r['graph_loops']}, expected CUDA graphs")
        if ctx.cuda and r["sim_estimate_mib"] > 1.25 * r["peak_mib"]:
            problems.append(f"batch {r['batch']}: simulator estimate {r['sim_estimate_mib']:.0f} MiB above the "
                            f"measured peak {r['peak_mib']:.0f} MiB")
    summary = "; ".join(f"B={r['batch']}: {r['ms_per_step']:.1f} ms/step {r['ms_per_window']:.4f} ms/window "
                        f"peak {r['peak_mib']:.0f} MiB (sim est {r['sim_estimate_mib']:.0f})" for r in good)
    if problems:
        return "FAIL", "; ".join(problems) + (f" | {summary}" if summary else "")
    return "PASS", summary


def _paper_flags(ctx: Context) -> list[str]:
    if ctx.cuda:
        return ["--vocab_sizes", "9924", "--batch_sizes", "32", "256", "1024", "4096"]
    return ["--vocab_sizes", "512", "--batch_sizes", "32", "64"]


def check_bench_paper(ctx: Context) -> Result:
    return _bench_result(ctx, "paper", _paper_flags(ctx))


def check_bench_qubits10(ctx: Context) -> Result:
    flags = ["--qubits", "10", "--vocab_sizes", "512", "--batch_sizes"]
    flags += ["32", "256", "1024", "4096"] if ctx.cuda else ["4"]
    return _bench_result(ctx, "qubits10", flags)


def check_bench_without_graphs(ctx: Context) -> Result:
    if not ctx.cuda:
        return "SKIP", "the eager-vs-graph comparison only means something on CUDA"
    status, detail = _bench_result(ctx, "eager", ["--vocab_sizes", "9924", "--batch_sizes", "32", "1024",
                                                  "--cuda_graphs", "off"], graphs=False)
    return status, "eager (QUIXER graphs off): " + detail


def check_paper_step_target(ctx: Context) -> Result:
    if not ctx.cuda:
        return "SKIP", f"the {PAPER_STEP_TARGET_MS:.0f} ms target is for one GPU"
    _, rows, _ = _bench(ctx, "paper", _paper_flags(ctx))
    row = next((r for r in rows if r.get("batch") == 1024 and "error" not in r), None)
    if row is None:
        return "FAIL", "no batch-1024 measurement (see bench_paper)"
    ok = row["ms_per_step"] <= PAPER_STEP_TARGET_MS
    return ("PASS" if ok else "FAIL"), (f"paper-sized step at batch 1024: {row['ms_per_step']:.1f} ms "
                                        f"(target {PAPER_STEP_TARGET_MS:.0f} ms)")


# ----------------------------------------------------------------------------------------------------
# (3) The training loop on the device: no host synchronisation inside a step.

def _token_folder(ctx: Context) -> Path:
    """Raw k-mer tokens of 40 synthetic transcripts, made by the stages themselves (once per run)."""
    if "tokens" not in ctx.cache:
        work = Path(tempfile.mkdtemp(prefix="gpu_checks_"))
        for argv in (["download_rna_sequences.py", "--source", "synthetic", "--max_sequences", "40", "--output",
                      str(work / "rna.fasta")],
                     ["prepare_autoregressive_data.py", "--fasta", str(work / "rna.fasta"), "--output_dir",
                      str(work / "prepare")],
                     ["prepare_classical_benchmarks.py", "--data_dir", str(work / "prepare"), "--output_dir",
                      str(work / "tokens")]):
            subprocess.run([sys.executable, str(ROOT / argv[0]), *argv[1:], "--log_level", "warning"], check=True,
                           cwd=ROOT)
        ctx.cache["tokens"] = work / "tokens"
    return ctx.cache["tokens"]


def check_sync_free_training_steps(ctx: Context) -> Result:
    """4 training steps per model after 3 warm-up steps (CUDA graph captures synchronise once) with
    torch.cuda.set_sync_debug_mode("error"): any host synchronisation inside a step raises."""
    if not ctx.cuda:
        return "SKIP", "sync debug mode exists only on CUDA"
    from quixer_rna.formats.tokens import open_tokens
    from quixer_rna.training import TrainConfig, Trainer, setup_distributed

    data = open_tokens(_token_folder(ctx))
    configs = {"quixer": {"qubits": 6, "ansatz_layers": 4, "qsvt_degree": 3, "embedding_dim": 128},
               "lstm": {"embedding_dim": 96}, "transformer": {"embedding_dim": 96}, "fnet": {"embedding_dim": 96}}
    done = []
    for model, config in configs.items():
        train = TrainConfig(epochs=1, batch_size=256, max_steps_per_epoch=9, device=str(ctx.device),
                            checkpoint_every=0, val_windows=256)

        class Enough(Exception):
            pass

        def step(global_step: int) -> None:
            if global_step == 3:
                torch.cuda.synchronize(ctx.device)
                torch.cuda.set_sync_debug_mode("error")
            if global_step == 7:
                torch.cuda.set_sync_debug_mode("default")
                raise Enough

        trainer = Trainer(model, config, data, train, Path(tempfile.mkdtemp()), setup_distributed(str(ctx.device)),
                          resume=False)
        try:
            trainer.run(step_callback=step)
        except Enough:
            done.append(model)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return "PASS", f"steps 4-7 of {', '.join(done)} ran with set_sync_debug_mode('error')"


# ----------------------------------------------------------------------------------------------------
# (4) Several GPUs: the launcher under NCCL, one GPU per process, kill and resume.

def check_multi_gpu_launcher(ctx: Context) -> Result:
    if not ctx.cuda or torch.cuda.device_count() < 2:
        return "SKIP", "needs 2 or more GPUs"
    tokens = _token_folder(ctx)
    work = Path(tempfile.mkdtemp(prefix="gpu_checks_ddp_"))
    flags = ["--data_dir", str(tokens), "--epochs", "2", "--max_steps_per_epoch", "8", "--batch_size", "512",
             "--checkpoint_every", "2", "--val_windows", "1000", "--qubits", "4", "--embedding_dim", "32"]

    def launch(out: Path, kill_at: Path | None = None) -> None:
        proc = subprocess.Popen(["bash", str(ROOT / "run_train_gpu.sh"), "0,1", "quixer", str(out), *flags], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        while kill_at is not None and proc.poll() is None and not kill_at.exists():
            time.sleep(0.05)
        if kill_at is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    launch(work / "whole")
    launch(work / "killed", kill_at=work / "killed" / "checkpoint_last.pt")
    launch(work / "killed")
    whole, resumed = (json.loads((work / name / "metrics.json").read_text()) for name in ("whole", "killed"))
    if whole["world_size"] != 2:
        return "FAIL", f"world size {whole['world_size']}, expected 2"
    same = all(abs(whole["test"][k] - resumed["test"][k]) <= 1e-6 * max(1.0, abs(whole["test"][k]))
               for k in whole["test"])
    return ("PASS" if same else "FAIL"), f"NCCL 2 ranks: killed and resumed test {resumed['test']} vs {whole['test']}"


# ----------------------------------------------------------------------------------------------------
# (5) The lambeq encoder's table and stairs on the device.

def check_encoder(ctx: Context) -> Result:
    from quixer_rna.encoding import KmerEncoder, readout_of

    encoder = KmerEncoder.build(4, 4, "Sim14", 1, "probabilities", seed=0, stairs=True)
    ids = torch.arange(4**4)
    reference = encoder.states_of(ids, torch.float64)
    ours = encoder.states_of(ids.to(ctx.device), torch.float32).cpu()
    table_error = float((readout_of(ours, "probabilities").double() - readout_of(reference, "probabilities")).abs().max())
    windows = torch.randint(0, 4**4, (16, 6), generator=torch.Generator().manual_seed(0))
    stairs_ref = encoder.contextual(windows, reference)
    stairs = encoder.contextual(windows.to(ctx.device), encoder.states_of(ids.to(ctx.device), torch.float32)).cpu()
    stairs_error = float((stairs.double() - stairs_ref.double()).abs().max())
    ok = table_error < 1e-5 and stairs_error < 1e-4
    return ("PASS" if ok else "FAIL"), f"table max error {table_error:.2e}, stairs max error {stairs_error:.2e} vs float64 CPU"


# ----------------------------------------------------------------------------------------------------
# The checks, in order.

CHECKS: list[tuple[str, Callable[[Context], Result]]] = [
    ("sim_float32_vs_float64", check_sim_float32_vs_float64),
    ("sim_chunked_equals_whole", check_sim_chunked_equals_whole),
    ("sim_graphs_equal_eager", check_sim_graphs_equal_eager),
    ("bench_paper", check_bench_paper),
    ("bench_qubits10", check_bench_qubits10),
    ("bench_without_graphs", check_bench_without_graphs),
    ("paper_step_target", check_paper_step_target),
    ("sync_free_training_steps", check_sync_free_training_steps),
    ("multi_gpu_launcher", check_multi_gpu_launcher),
    ("encoder", check_encoder),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=os.environ.get("DEV", "cuda"), help="cuda, cuda:N or cpu (dry run)")
    parser.add_argument("--only", default="", help="comma-separated check names to run (default all)")
    parser.add_argument("--list", action="store_true", help="list the checks and exit")
    parser.add_argument("--bench_steps", type=int, default=None, help="timed steps per benchmark row "
                        "(default 5 on CUDA, 1 on CPU)")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(name for name, _ in CHECKS))
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"FAIL setup: --device {args.device} but torch {torch.__version__} sees no CUDA device")
        return 1
    selected = [name for name in args.only.split(",") if name]
    unknown = sorted(set(selected) - {name for name, _ in CHECKS})
    if unknown:
        print(f"FAIL setup: unknown checks {unknown}; --list names them")
        return 1
    torch.set_num_threads(min(4, os.cpu_count() or 1) if device.type == "cuda" else 1)
    ctx = Context(device, args.bench_steps or (5 if device.type == "cuda" else 1))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"gpu_checks on {device} ({name}), torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"graphs {'on' if quixer_sim.USE_CUDA_GRAPHS else 'off'}", flush=True)
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    for check_name, check in CHECKS:
        if selected and check_name not in selected:
            continue
        start = time.perf_counter()
        try:
            status, detail = check(ctx)
        except Exception as exc:  # noqa: BLE001 - a crashing check is a failed check; the others still run
            traceback.print_exc()
            status, detail = "FAIL", f"{type(exc).__name__}: {exc}"
        counts[status] += 1
        print(f"{status} {check_name}: {detail} [{time.perf_counter() - start:.1f} s]", flush=True)
    print(f"gpu_checks: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped on {device}")
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
