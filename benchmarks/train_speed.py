"""Training throughput (target tokens/second) and peak memory of nmt's Transformer on Multi30k,
side by side with a plain `torch.nn.Transformer` of the same size, in one run.

    python benchmarks/train_speed.py             # d256, 3+3 layers, 4 heads, ffn 1024, 4096-token batches
    python benchmarks/train_speed.py --engines nmt:bf16,baseline:fp32 --repeats 5
    python benchmarks/train_speed.py --engines nmt:fp32 --nproc 2   # 1 process x 2 threads vs 2 x 1 (DDP, gloo)

An engine is a model and a precision: nmt's Transformer or the baseline, in fp32 or under bf16
autocast (nmt.runtime.autocast, as `nmt train --precision bf16` uses it). Each engine runs in its own
process (so peak memory is its own), the engines alternate, and the figures are medians over
--repeats runs of --steps timed updates (after --warmup untimed ones), on the same token batches,
with the same loss, optimizer, gradient clipping and allocator setting (nmt.runtime.keep_freed_memory,
as `nmt train` runs): nmt's engine takes `nmt train`'s own update (nmt.update.update, whose loss makes the
logits 1,024 target tokens at a time). Ratios are to the fp32 baseline. An engine "nmt:fp32:x2" is
nmt's on 2 processes (torch.distributed, gloo; DistributedDataParallel as `nmt train --nproc 2` runs
it), the cores shared among them, each taking every other batch: its tokens/s count both processes'
tokens, its peak memory is rank 0's.

Model FLOP utilisation (MFU) puts the speed against the machine's own limit, its matrix-multiply rate. Every
engine run, right after its timed updates and in the same process (rank 0, on all the run's threads, same
allocator setting), times large square matmuls (--peak-size, 2048 x 2048 @ 2048 x 2048: 2 n^3 FLOPs each) in
fp32 and in bf16, 2 untimed and 5 timed each: so the bar is measured under the same load as the speed, even
when other work on the machine comes and goes. A run's MFU is its achieved FLOP/s (target tokens/s x training
FLOPs per target token) over the median of its own timed matmuls of the engine's precision (bf16 autocast
runs its matmuls in bf16, so its bar is the bf16 peak); the table shows the median MFU over the runs, and
the peak line the median over all runs' timed matmuls.

FLOPs per target token are counted from the model's shapes on the batches that engine timed, with each
sentence's own lengths (s source tokens with EOS, t target tokens with BOS/EOS; padding is not counted,
it is not useful work). Forward, a matmul of (m x k) @ (k x n) counts 2 m k n:
  encoder, per layer and source token:  2 (3d^2 + d^2)   qkv and output projections
                                        + 2 (2 d f)        feed-forward (d -> f -> d)
            per layer and sentence:     4 d s^2           scores q k^T and weights @ v (all heads: d)
  decoder, per layer and target token:  2 (3d^2 + d^2)   self-attention projections
                                        + 2 (2d^2)        cross-attention query and output projections
                                        + 2 (2 d f)       feed-forward
           per layer and source token:  2 (2d^2)          cross-attention keys and values of the memory
           per layer and sentence:      4 d t(t+1)/2      causal self-attention (the keys a query may see)
                                        + 4 d t s         cross-attention
  output projection, per target token:  2 d V
summed over the batches, divided by their target tokens, times 3 for training (the backward pass takes
twice the forward's FLOPs: gradients of inputs and of weights). Not counted: embeddings, positions,
biases, LayerNorm, softmax, dropout, activations, the loss and the optimizer step (elementwise work, no
matmul; well under 1% of the FLOPs here, though not of the time). nmt's model and the baseline are counted
alike (same shapes), so MFU ranks engines as tokens/s does.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path


def prepared_data(data: Path, cache: Path) -> Path:
    from nmt.errors import DataError
    from nmt.prepare import PrepareConfig, prepare

    data = data.resolve()
    cfg = PrepareConfig(src="en", tgt="fr", train=str(data / "train"), valid=str(data / "val"), vocab_size=8000)
    try:
        return prepare(cfg, cache).out
    except DataError:  # the benchmark's own cache, from other data or another nmt version: rebuild it
        return prepare(cfg, cache, force=True).out


def baseline_model(vocab: int, args: argparse.Namespace):
    """The reference point: a plain torch.nn.Transformer with sinusoidal positions, one shared embedding
    and an output layer, as a tutorial would write it."""
    import torch
    from torch import nn

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab, args.d_model, padding_idx=0)
            self.core = nn.Transformer(
                args.d_model, args.heads, args.layers, args.layers, args.ffn, dropout=0.1, batch_first=True
            )
            self.out = nn.Linear(args.d_model, vocab)
            pos = torch.arange(1024).unsqueeze(1)
            div = torch.exp(torch.arange(0, args.d_model, 2) * (-math.log(10000.0) / args.d_model))
            pe = torch.zeros(1024, args.d_model)
            pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
            self.register_buffer("pe", pe, persistent=False)

        def forward(self, src, src_len, tgt_in):
            scale = math.sqrt(args.d_model)
            s = self.embed(src) * scale + self.pe[: src.size(1)]
            t = self.embed(tgt_in) * scale + self.pe[: tgt_in.size(1)]
            # bool like the padding masks (True: may not attend), so torch takes one masking path
            causal = torch.ones(tgt_in.size(1), tgt_in.size(1), dtype=torch.bool, device=tgt_in.device).triu(1)
            h = self.core(
                s,
                t,
                tgt_mask=causal,
                src_key_padding_mask=src == 0,
                tgt_key_padding_mask=tgt_in == 0,
                memory_key_padding_mask=src == 0,
            )
            return self.out(h)

    return Model()


def in_process(target, *args):
    """Run target(*args, queue) in a fresh process and return what it puts on the queue;
    exit if the process dies without an answer (its traceback is on stderr)."""
    import queue as queues

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    while True:
        try:
            result = queue.get(timeout=5)
            break
        except queues.Empty:
            if not proc.is_alive():
                sys.exit(f"{target.__name__}{args[:2]} failed (exit code {proc.exitcode})")
    proc.join()
    return result


def in_processes(world: int, target, *args):
    """Run target(*args, rank, world, port, queue) in `world` fresh processes that form one torch.distributed
    group (gloo) and return what rank 0 puts on the queue."""
    import queue as queues
    import socket

    with socket.socket() as sock:  # a free port for the group's rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, rank, world, port, queue)) for rank in range(world)]
    for proc in procs:
        proc.start()
    while True:
        try:
            result = queue.get(timeout=5)
            break
        except queues.Empty:
            if any(proc.exitcode not in (None, 0) for proc in procs):
                for proc in procs:
                    proc.kill()
                sys.exit(f"{target.__name__}{args[:2]} on {world} processes failed")
    for proc in procs:
        proc.join()
    return result


def run_engine(
    engine: str, precision: str, data_dir: str, args: argparse.Namespace, rank: int, world: int, port: int, queue
) -> None:
    """Train `args.warmup + args.steps` updates; report tokens/s over the timed ones and peak memory. With
    `world` processes (nmt only), each takes every world-th batch and the tokens of all are counted."""
    import torch

    from nmt.config import ModelConfig, TrainConfig
    from nmt.data import ParallelIds, collate, token_batches
    from nmt.distributed import Group
    from nmt.distributed import start as join_group
    from nmt.loss import label_smoothed_loss
    from nmt.model import Transformer
    from nmt.optim import build_optimizer
    from nmt.runtime import autocast, keep_freed_memory, pick_device, set_threads
    from nmt.update import engine as nmt_engine
    from nmt.update import update

    group = Group(rank, world, rank, world)
    set_threads(args.threads, share=world)
    keep_freed_memory()  # both engines: as `nmt train` runs
    torch.manual_seed(1)
    device = pick_device(args.device)
    data = ParallelIds.load(Path(data_dir) / "train.ids.safetensors")
    vocab = json.loads((Path(data_dir) / "prepare.json").read_text())["vocab_size"]["src"]
    if engine == "nmt":
        model = Transformer(
            ModelConfig(
                src_vocab_size=vocab,
                tgt_vocab_size=vocab,
                d_model=args.d_model,
                n_heads=args.heads,
                enc_layers=args.layers,
                dec_layers=args.layers,
                ffn_dim=args.ffn,
                dropout=0.1,
            )
        )
    else:
        model = baseline_model(vocab, args)
    model.to(device).train()
    cfg = TrainConfig(lr=1e-4, precision=precision)  # label smoothing 0.1, clipping at 1.0
    optimizer = build_optimizer(model.parameters(), cfg)
    batches = token_batches(data.src_lens, data.tgt_lens, args.batch_tokens, seed=1)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
        join_group(group, device)
    loss = nmt_engine(model, cfg, device, group) if engine == "nmt" else None
    tokens, start = 0, 0.0
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            tokens, start = 0, time.perf_counter()
        chosen = [batches[(i * world + r) % len(batches)] for r in range(world)]  # this update's, over all processes
        batch = collate(data, chosen[rank], 0, 2, 3).to(device)
        if engine == "nmt":
            update(
                loss,
                optimizer,
                [batch],
                sum(int(data.tgt_lens[b].sum()) + len(b) for b in chosen),
                cfg,
                device,
                i + 1,
                group,
            )
        else:
            with autocast(device, precision):
                logits = model(batch.src, batch.src_len, batch.tgt_in)
            loss, _ = label_smoothed_loss(logits, batch.tgt_out, cfg.label_smoothing, 0)
            (loss / batch.n_tokens).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm, foreach=True)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        tokens += sum(int(data.tgt_lens[b].sum()) + len(b) for b in chosen)  # = batch.n_tokens on one process
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = (
        torch.cuda.max_memory_allocated()
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    if rank == 0:  # peak memory: rank 0's own
        set_threads(args.threads)  # the matmul peak on all the run's threads, whatever its share was
        queue.put(
            {
                "tokens_per_s": tokens / seconds,
                "peak_mb": peak / 2**20,
                "params": sum(p.numel() for p in model.parameters()),
                "gflops": matmul_rates(args.peak_size, device),
            }
        )
    if world > 1:
        torch.distributed.destroy_process_group()


def matmul_rates(n: int, device) -> dict[str, list[float]]:
    """GFLOP/s of (n x n) @ (n x n) in fp32 and bf16 on the current threads: 2 untimed, then 5 timed each."""
    import torch

    rates: dict[str, list[float]] = {}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        rates[precision] = []
        for i in range(2 + 5):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            torch.mm(a, b)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= 2:
                rates[precision].append(2 * n**3 / (time.perf_counter() - start) / 1e9)
    return rates


def timed_batches(n_batches: int, args: argparse.Namespace, world: int) -> list[int]:
    """The indices into token_batches of the batches an engine on `world` processes trains on in its timed
    updates (run_engine's choice)."""
    return [(i * world + r) % n_batches for i in range(args.warmup, args.warmup + args.steps) for r in range(world)]


def flops_per_token(args: argparse.Namespace, vocab: int, src_lens, tgt_lens) -> dict[str, float]:
    """Training FLOPs per target token of the model `args` describes (d_model, layers, ffn) over the sentence
    pairs with these lengths (without EOS/BOS; they are added here), counted as the module docstring says.
    Returns the forward FLOPs per target token by part and "train", 3x their sum."""
    import numpy as np

    s = np.asarray(src_lens, dtype=np.float64) + 1  # + EOS
    t = np.asarray(tgt_lens, dtype=np.float64) + 1  # + BOS (in) / EOS (out)
    d, f, n_layers, target = args.d_model, args.ffn, args.layers, t.sum()
    parts = {
        "encoder matmuls": n_layers * s.sum() * 2 * (4 * d * d + 2 * d * f),
        "encoder attention": n_layers * 4 * d * (s * s).sum(),
        "decoder matmuls": n_layers * (t.sum() * 2 * (6 * d * d + 2 * d * f) + s.sum() * 2 * 2 * d * d),
        "decoder attention": n_layers * 4 * d * (t * (t + 1) / 2 + t * s).sum(),
        "output projection": target * 2 * d * vocab,
    }
    per_token = {name: float(flops / target) for name, flops in parts.items()}
    per_token["train"] = 3 * sum(per_token.values())
    per_token["src/tgt"] = float(s.sum() / target)
    return per_token


def model_arguments(description: str) -> argparse.ArgumentParser:
    """The options the training benchmarks share: data, model size and batch size."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("NMT_DATA", "../shared/data/multi30k")),
        help="directory with Multi30k train and val .en.gz/.fr.gz (default: $NMT_DATA or ../shared/data/multi30k)",
    )
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=3, help="encoder and decoder layers each")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--ffn", type=int, default=1024)
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=None)
    return parser


def main() -> None:
    parser = model_arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed updates per run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed updates before timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--engines",
        default="nmt:fp32,nmt:bf16,baseline:fp32,baseline:bf16",
        help="comma-separated MODEL:PRECISION[:xN], MODEL nmt or baseline, PRECISION fp32 or bf16; "
        "xN: N processes (nmt only, DistributedDataParallel over gloo, the cores shared)",
    )
    parser.add_argument(
        "--peak-size",
        type=int,
        default=2048,
        help="n of the n x n @ n x n matmuls that measure the fp32 and bf16 peak (default 2048)",
    )
    parser.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="also run each nmt engine on this many processes (adds MODEL:PRECISION:xN engines)",
    )
    args = parser.parse_args()

    cache = Path(tempfile.gettempdir()) / "nmt-bench-multi30k-en-fr"
    data_dir = str(prepared_data(args.data, cache))
    engines = args.engines.split(",")
    if args.nproc > 1:
        engines += [f"{e}:x{args.nproc}" for e in engines if e.startswith("nmt:")]
    for engine in engines:
        model, precision, *procs = engine.split(":")
        if (
            model not in ("nmt", "baseline")
            or precision not in ("fp32", "bf16")
            or len(procs) > 1
            or (procs and (model != "nmt" or not re.fullmatch(r"x[1-9]\d*", procs[0])))
        ):
            parser.error(f"--engines: {engine!r} is not MODEL:PRECISION[:xN] (nmt or baseline, fp32 or bf16)")
    results: dict[str, list[dict]] = {e: [] for e in engines}
    for _ in range(args.repeats):
        for engine in engines:  # alternate, so drifting machine load hits all alike
            model, precision, *procs = engine.split(":")
            world = int(procs[0][1:]) if procs else 1
            results[engine].append(in_processes(world, run_engine, model, precision, data_dir, args))
    import numpy as np

    from nmt.data import ParallelIds, token_batches

    data = ParallelIds.load(Path(data_dir) / "train.ids.safetensors")
    vocab = json.loads((Path(data_dir) / "prepare.json").read_text())["vocab_size"]["src"]
    batches = token_batches(data.src_lens, data.tgt_lens, args.batch_tokens, seed=1)  # run_engine's

    def counted(engine: str) -> dict[str, float]:
        procs = engine.split(":")[2:]
        chosen = np.concatenate(
            [batches[i] for i in timed_batches(len(batches), args, int(procs[0][1:]) if procs else 1)]
        )
        return flops_per_token(args, vocab, data.src_lens[chosen], data.tgt_lens[chosen])

    flops = {engine: counted(engine) for engine in engines}
    peaks = {p: [g for runs in results.values() for r in runs for g in r["gflops"][p]] for p in ("fp32", "bf16")}
    print(
        f"Multi30k en-fr, d_model {args.d_model}, {args.layers}+{args.layers} layers, {args.heads} heads, "
        f"ffn {args.ffn}, vocab {vocab}, batches of {args.batch_tokens} tokens, "
        f"median of {args.repeats} runs x {args.steps} updates, torch {__import__('torch').__version__}, "
        f"{os.cpu_count()} cpus, {args.threads or len(os.sched_getaffinity(0))} threads"
    )
    print(
        f"matmul peak ({args.peak_size}^3, median of {len(peaks['fp32'])} per precision, timed in the engines' "
        "processes after their updates): " + ", ".join(f"{p} {statistics.median(peaks[p]):,.0f} GFLOP/s" for p in peaks)
    )
    first = flops[engines[0]]
    print(
        f"training FLOPs per target token (3x forward; {engines[0]}'s batches, source/target tokens "
        f"{first['src/tgt']:.2f}): {first['train'] / 1e6:.1f} M; forward: "
        + ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in first.items() if k not in ("train", "src/tgt"))
    )
    print(
        f"{'engine':<14} {'params':>11} {'tgt tok/s':>10} {'runs':>26} {'peak MB':>8} {'vs baseline fp32':>16} "
        f"{'GFLOP/s':>8} {'MFU':>6}"
    )
    base_runs = results.get("baseline:fp32")
    base = statistics.median(r["tokens_per_s"] for r in base_runs) if base_runs else None
    for engine, runs in results.items():
        tps = statistics.median(r["tokens_per_s"] for r in runs)
        mem = statistics.median(r["peak_mb"] for r in runs)
        ratio = f"{tps / base:.2f}x" if base else "-"
        spread = " ".join(f"{r['tokens_per_s']:.0f}" for r in runs)
        achieved = tps * flops[engine]["train"] / 1e9
        precision = engine.split(":")[1]  # each run against the matmuls it timed itself
        mfu = statistics.median(
            r["tokens_per_s"] * flops[engine]["train"] / 1e9 / statistics.median(r["gflops"][precision]) for r in runs
        )
        print(
            f"{engine:<14} {runs[0]['params']:>11,} {tps:>10,.0f} {spread:>26} {mem:>8,.0f} {ratio:>16} "
            f"{achieved:>8,.0f} {mfu:>6.1%}"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
