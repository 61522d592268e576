"""Does bf16 autocast cost quality? Trains the same model from the same seed on Multi30k en-fr for
the same number of updates in fp32 and under bf16 autocast (`nmt train --precision bf16`), then
prints each run's validation loss (label-smoothed, per target token) and training time.

    python benchmarks/train_precision.py                     # d256, 3+3 layers, 600 updates each
    python benchmarks/train_precision.py --steps 1000

Each run validates twice at the end: at its own precision (what `nmt train` logs) and in fp32, so
that the two models are compared by the same arithmetic. The runs go one after the other, each in
its own process; run nothing else heavy meanwhile, the times are wall-clock.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

from train_speed import in_process, model_arguments, prepared_data


def train_run(precision: str, data_dir: str, run_dir: str, args: argparse.Namespace, queue) -> None:
    import nmt.train as training
    from nmt.config import TrainConfig

    cfg = TrainConfig(
        seed=1,
        batch_tokens=args.batch_tokens,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        max_steps=args.steps,
        valid_every=args.steps,
        valid_bleu=False,
        log_every=args.steps,
        keep_last=1,
        early_stop_metric="loss",
        precision=precision,
    )
    model = {
        "d_model": args.d_model,
        "n_heads": args.heads,
        "enc_layers": args.layers,
        "dec_layers": args.layers,
        "ffn_dim": args.ffn,
        "dropout": 0.1,
        "share_all_embeddings": True,
    }
    trainer = training.start(Path(data_dir), Path(run_dir), model, cfg, overwrite=True, threads=args.threads)
    try:
        trainer.train()
        own = trainer.state.last_valid["valid_loss"]
        trainer.cfg = dataclasses.replace(trainer.cfg, precision="fp32")
        fp32 = trainer.validate()["valid_loss"]
        queue.put({"valid_loss": own, "valid_loss_fp32": fp32, "minutes": trainer.state.train_seconds / 60})
    finally:
        trainer.close()


def main() -> None:
    parser = model_arguments(__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=600, help="updates per run")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup-steps", type=int, default=300)
    args = parser.parse_args()

    data_dir = str(prepared_data(args.data, Path(tempfile.gettempdir()) / "nmt-bench-multi30k-en-fr"))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "bf16"):
            results[precision] = in_process(train_run, precision, data_dir, f"{tmp}/{precision}", args)
    print(
        f"Multi30k en-fr, d_model {args.d_model}, {args.layers}+{args.layers} layers, ffn {args.ffn}, "
        f"{args.batch_tokens}-token batches, seed 1, {args.steps} updates, lr {args.lr}, warm-up {args.warmup_steps}"
    )
    print(f"{'precision':<10} {'valid loss':>10} {'(in fp32)':>10} {'vs fp32':>8} {'train min':>10}")
    base = results["fp32"]["valid_loss_fp32"]
    for precision, r in results.items():
        change = f"{(r['valid_loss_fp32'] / base - 1) * 100:+.2f}%"
        print(
            f"{precision:<10} {r['valid_loss']:>10.4f} {r['valid_loss_fp32']:>10.4f} {change:>8} {r['minutes']:>10.1f}"
        )


if __name__ == "__main__":
    main()
