"""Run every benchmark (`make bench`) and print the verdicts; results go to bench/results/*.json.

  python bench/run_all.py [--device cpu|cuda] [--quick]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import book_build  # noqa: E402
import book_time  # noqa: E402
import inference  # noqa: E402
import mnist_time_to_accuracy  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", type=int, default=1, help="rounds of the MNIST time-to-accuracy benchmark")
    p.add_argument("--output", help="ignored; kept for bench/gpu_book.sh")
    args = p.parse_args(argv)
    verdicts = []
    gpu = args.device != "cpu"
    print("== 1. MNIST time to 99 % test accuracy ==", flush=True)
    verdicts += mnist_time_to_accuracy.main(["--device", args.device, "--rounds", str(args.rounds)] + (["--skip-tf"] if gpu else []))["verdicts"]
    print("== 2. inference latency and throughput ==", flush=True)
    verdicts += inference.main(["--device", args.device])["verdicts"]
    if not gpu:
        print("== 3. whole book, from the runner's reports ==", flush=True)
        verdicts += book_time.main([])["verdicts"]
        print("== 4. book build without execution ==", flush=True)
        book_build.main([])
    print("\n".join(["", "Verdicts:"] + [f"- {v}" for v in verdicts]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
