"""Trial packing: aggregate training throughput of 1, 2 and 4 processes sharing one device, in one run.

    uv run python bench/packing.py                        # small_cnn on the CPU, one torch thread per process
    python bench/packing.py --model small_cnn --device cuda --batch-size 128          # on a GPU (torch only)
    python bench/packing.py --model preact_resnet18 --device cuda --batch-size 512 --precision bf16 --channels-last

Each process trains its own model with SGD steps on a CIFAR-shaped synthetic batch, as a packed trial would (a
sweep with `resources: {gpu: 0.25}` puts four on one GPU). All of a row's processes warm up, wait at a barrier,
then step for the same `--seconds`; a row's throughput is the sum of its processes' images/s. Goal: >= 1.5x the
single process at 4 processes for the small model. Torch only: runs wherever torch does (no Ray, no data)."""

from __future__ import annotations

import argparse
import multiprocessing as mp
import queue
import time

import torch
from step_cost import synthetic_training  # bench/ is the script's folder, so first on the import path

from trainables.step import make_step


def train_for(args: argparse.Namespace, barrier, results) -> None:
    """One packed process: warm up, wait for the others, then count the images it trains on in `args.seconds`."""
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    net, optimizer, x, y = synthetic_training(args.model, args.batch_size, device, args.channels_last)
    step = make_step("sgd", forward_dtype=torch.bfloat16 if args.precision == "bf16" else None)
    net.train()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step(net, x, y, optimizer)
    sync()
    barrier.wait()
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < args.seconds:
        step(net, x, y, optimizer)
        steps += 1
        if steps % 10 == 0:
            sync()  # keep the host within a few steps of the device, so the clock measures the device's work
    sync()
    results.put(steps * args.batch_size / (time.perf_counter() - start))


def packed_throughput(args: argparse.Namespace, processes: int) -> list[float]:
    """images/s of each of `processes` processes training at once."""
    context = mp.get_context("spawn")  # CUDA cannot be used in forked children
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=train_for, args=(args, barrier, results)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    rates = []
    while len(rates) < processes:
        try:
            rates.append(results.get(timeout=1))
        except queue.Empty:
            failed = [worker.exitcode for worker in workers if worker.exitcode]
            if failed:  # the others would wait at the barrier for it forever
                for worker in workers:
                    worker.terminate()
                raise SystemExit(f"a packed process exited with {failed[0]}") from None
    for worker in workers:
        worker.join()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="bf16 autocast forwards")
    parser.add_argument("--channels-last", action="store_true", help="NHWC model and batch")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4], help="rows: processes at once")
    parser.add_argument("--seconds", type=float, default=15.0, help="timed window of each row")
    parser.add_argument("--warmup", type=int, default=5, help="steps before the window")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads per process (default: 1 on the CPU, torch's on GPU)"
    )
    args = parser.parse_args()
    if args.threads is None and args.device == "cpu":
        args.threads = 1
    if args.processes[0] != 1 or any(n < 1 for n in args.processes):
        parser.error(f"--processes: 1 first (the ratios' reference), then counts of at least 1; got {args.processes}")

    device = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"cpu, {args.threads} thread(s) each"
    print(
        f"{args.model}, sgd, batch {args.batch_size} x 3x32x32, {args.precision}"
        f"{', channels_last' if args.channels_last else ''}; {device}; torch {torch.__version__}; "
        f"{args.seconds:g} s per row"
    )
    print(f"{'processes':>9}{'img/s (sum)':>13}{'per process':>13}{'x one':>7}")
    single = None  # the first row, one process: the ratios are to it
    for processes in args.processes:
        total = sum(packed_throughput(args, processes))
        single = single or total
        print(f"{processes:>9}{total:>13.0f}{total / processes:>13.0f}{total / single:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
