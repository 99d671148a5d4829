"""Execute the book's notebooks with papermill, in book order, and report.

Usage::

    python -m bigmodel_utils.run [--profile smoke|full] [--kernel cpu|gpu]
                                 [--output-dir DIR] [NOTEBOOK ...]

``notebooks/`` holds each chapter's source. By default the ``smoke`` profile
writes its executed copy back in place (these are the outputs nbval checks in
CI) and the ``full`` profile writes to ``book/chapters/`` (what the book
publishes). Each output is written to a temporary file and renamed only when the
whole notebook succeeded: a failed or interrupted run never touches the last good
outputs; the failed copy goes to ``_build/failed/`` and the failing cell and error
are printed. Every run updates a JSON execution report (seconds, profile,
kernel, device, versions, peak memory per notebook) and the book's report page.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path

from .devices import RUN_INFO_ENV
from .kernels import KERNELS, kernel_name
from .profiles import get_profile

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
CHAPTERS = ROOT / "book" / "chapters"
REPORTS = ROOT / "book" / "reports"
REPORT_PAGE = ROOT / "book" / "execution_report.md"
FAILED = ROOT / "_build" / "failed"
DEFAULT_OUTPUT = {"smoke": NOTEBOOKS, "full": CHAPTERS}
RUNNER_PACKAGES = ("papermill", "nbclient", "ipykernel", "jupyter-book", "nbval", "torch", "keras", "numpy")


class NotebookFailed(RuntimeError):
    """A notebook raised; carries the failing cell and error for the summary."""


def book_order(toc: Path = ROOT / "_toc.yml") -> list[str]:
    """Chapter names (notebook stems) in the order of ``_toc.yml``."""
    import yaml

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("file"), str):
                yield node["file"]
            for v in node.values():
                yield from walk(v)
        elif isinstance(node, list):
            for v in node:
                yield from walk(v)

    files = walk(yaml.safe_load(toc.read_text(encoding="utf-8")))
    return [Path(f).stem for f in files if Path(f).parent.as_posix() == "book/chapters"]


def resolve_notebooks(names: list[str]) -> list[Path]:
    """Turn names or paths into source notebooks, in book order; unknown names are an error."""
    order = book_order()
    if not names:
        return [NOTEBOOKS / f"{n}.ipynb" for n in order]
    chosen = []
    for name in names:
        stem = Path(name).stem
        path = NOTEBOOKS / f"{stem}.ipynb"
        if not path.is_file():
            raise SystemExit(f"no notebook {name!r}: expected {path}; chapters are {', '.join(order)}")
        chosen.append(path)
    rank = {n: i for i, n in enumerate(order)}
    return sorted(chosen, key=lambda p: rank.get(p.stem, len(rank)))


class PeakMemory:
    """Polls the resident memory of the runner's child processes (the kernel)."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def execute_one(src: Path, dest: Path, *, profile: str, kernel: str, seed: int, progress: bool = True) -> dict:
    """Run one notebook; rename the output into place only on success."""
    import papermill as pm

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=".running.ipynb", dir=dest.parent)
    os.close(fd)
    info_fd, info_path = tempfile.mkstemp(suffix=".json")
    os.close(info_fd)
    os.environ[RUN_INFO_ENV] = info_path
    start = time.perf_counter()
    try:
        with PeakMemory() as mem:
            try:
                pm.execute_notebook(
                    str(src), tmp,
                    parameters={"profile": profile, "device": "auto", "seed": seed},
                    kernel_name=kernel_name(kernel),
                    cwd=str(src.parent),
                    progress_bar=progress,
                    log_output=False,
                )
            except pm.PapermillExecutionError as err:
                FAILED.mkdir(parents=True, exist_ok=True)
                failed_copy = FAILED / dest.name
                os.replace(tmp, failed_copy)
                raise NotebookFailed(
                    f"cell {err.cell_index} (execution count {err.exec_count}) raised {err.ename}: {err.evalue}\n"
                    f"    last good output left untouched: {dest}\n    failed copy for inspection: {failed_copy}"
                ) from None
        seconds = time.perf_counter() - start
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; an executed notebook is an ordinary file
        os.replace(tmp, dest)
        kernel_info = json.loads(Path(info_path).read_text() or "{}")
        return {
            "status": "ok",
            "seconds": round(seconds, 1),
            "profile": profile,
            "kernel": kernel_name(kernel),
            "device": kernel_info.get("device", "unknown"),
            "threads": kernel_info.get("threads"),
            "gpu": kernel_info.get("gpu"),
            "peak_memory_mb": round(mem.peak / 2**20),
            "versions": {k: kernel_info.get(k) for k in ("python", "torch", "keras", "numpy")},
            "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
    finally:
        os.environ.pop(RUN_INFO_ENV, None)
        for p in (tmp, info_path):
            if os.path.exists(p):
                os.remove(p)


def _versions() -> dict[str, str]:
    out = {}
    for pkg in RUNNER_PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def machine_description() -> str:
    """CPU model and core count, for the report (numbers are only comparable on one machine)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def update_report(path: Path, profile: str, kernel: str, results: dict[str, dict]) -> dict:
    """Merge this run's results into the JSON report at ``path`` (failures keep the last good entry)."""
    report = json.loads(path.read_text()) if path.is_file() else {"notebooks": {}}
    report.update(
        profile=profile, kernel=kernel_name(kernel), machine=machine_description(), runner_versions=_versions()
    )
    for name, entry in results.items():
        if entry["status"] == "ok":
            report["notebooks"][name] = entry
        else:
            report["notebooks"].setdefault(name, {"status": "never succeeded"})["last_failure"] = entry
    order = book_order()
    report["notebooks"] = dict(sorted(report["notebooks"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99))
    ok = [e for e in report["notebooks"].values() if e.get("status") == "ok"]
    report["total_seconds"] = round(sum(e["seconds"] for e in ok), 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    return report


def render_report_page(reports_dir: Path = REPORTS, page: Path = REPORT_PAGE) -> str:
    """Write the book's execution-report page from every JSON report in ``reports_dir``."""
    lines = [
        "# Execution report",
        "",
        "Every chapter of this book is a notebook executed by the runner "
        "(`python -m bigmodel_utils.run`). This page is written by the runner itself from its JSON "
        "reports in `book/reports/`; nothing on it is typed by hand. Times are wall-clock seconds "
        "for the whole notebook, including start-up of the kernel; peak memory is the resident "
        "memory of the kernel process.",
        "",
    ]
    files = sorted(reports_dir.glob("*.json"))
    if not files:
        lines.append("No run has been recorded yet.")
    for f in files:
        r = json.loads(f.read_text())
        lines += [
            f"## Profile `{r['profile']}`, kernel `{r['kernel']}`",
            "",
            f"Machine: {r['machine']}. Total: {r['total_seconds']:.0f} s.",
            "",
            "| chapter | seconds | device | threads | peak memory (MB) | torch | keras | finished (UTC) |",
            "|---|---:|---|---:|---:|---|---|---|",
        ]
        for name, e in r["notebooks"].items():
            if e.get("status") != "ok":
                lines.append(f"| {name} | failed | | | | | | |")
                continue
            dev = e["device"] + (f" ({e['gpu']})" if e.get("gpu") else "")
            lines.append(
                f"| {name} | {e['seconds']:.1f} | {dev} | {e['threads']} | {e['peak_memory_mb']} "
                f"| {e['versions']['torch']} | {e['versions']['keras']} | {e['finished'][:16].replace('T', ' ')} |"
            )
        lines.append("")
    lines += cost_summary(reports_dir)
    text = "\n".join(lines)
    page.write_text(text)
    return text


BUDGET_SECONDS = {"full": 240.0, "smoke": 30.0}


def cost_summary(reports_dir: Path = REPORTS) -> list[str]:
    """Markdown lines: each chapter's cost per profile, the GPU speedup where a GPU run exists, and
    the chapters over the time budgets (4 min full, 30 s smoke; the budgets count compute, these
    times also include kernel start-up, so a chapter near the line is worth a second look)."""
    runs, setups = {}, {}
    for f in sorted(reports_dir.glob("*.json")):
        r = json.loads(f.read_text())
        gpu = "gpu" in r["kernel"]
        runs[(r["profile"], gpu)] = {n: e["seconds"] for n, e in r["notebooks"].items() if e.get("status") == "ok"}
        if r["profile"] == "full":
            setups[gpu] = (r.get("machine", "unknown machine"), r.get("runner_versions", {}).get("torch", "unknown"))
    if not runs:
        return []
    names = [n for n in book_order() if any(n in v for v in runs.values())]
    lines = ["## Cost per chapter and GPU speedup", "",
             "Seconds per chapter from the reports above; the speedup is the CPU time divided by the GPU "
             "time of the same chapter in the `full` profile. A chapter over its budget "
             f"({BUDGET_SECONDS['full']:.0f} s full, {BUDGET_SECONDS['smoke']:.0f} s smoke, kernel start "
             "included) is marked **over**.", "",
             "| chapter | full, CPU (s) | smoke, CPU (s) | full, GPU (s) | GPU speedup |", "|---|---:|---:|---:|---:|"]

    def cell(profile, gpu, name):
        t = runs.get((profile, gpu), {}).get(name)
        if t is None:
            return "–"
        over = not gpu and t > BUDGET_SECONDS[profile]
        return f"{t:.1f}" + (" **over**" if over else "")

    for n in names:
        cpu, gpu = runs.get(("full", False), {}).get(n), runs.get(("full", True), {}).get(n)
        speed = f"{cpu / gpu:.1f}x" if cpu and gpu else "–"
        lines.append(f"| {n} | {cell('full', False, n)} | {cell('smoke', False, n)} | {cell('full', True, n)} | {speed} |")
    if False in setups and True in setups:
        (cpu_machine, cpu_torch), (gpu_machine, gpu_torch) = setups[False], setups[True]
        lines += ["", f"The CPU times come from {cpu_machine} with torch {cpu_torch}, the GPU times from {gpu_machine} "
                      f"with torch {gpu_torch}: a speedup compares whole setups (processor, GPU and library "
                      "versions), not the GPU alone."]
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bigmodel_utils.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="chapter names or paths (default: all, in book order)")
    parser.add_argument("--profile", default="smoke", help="execution profile: smoke (default) or full")
    parser.add_argument("--kernel", default="cpu", help=f"Jupyter kernel: {' or '.join(KERNELS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, help="where executed notebooks go (default: by profile)")
    parser.add_argument("--no-progress", action="store_true", help="hide papermill's per-cell progress bar")
    args = parser.parse_args(argv)
    # a terminated run (SIGTERM, e.g. a CI timeout) unwinds like Ctrl-C: temporary files are removed
    # and the last good outputs stay untouched
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        profile = get_profile(args.profile).name
        kernel_name(args.kernel)
    except ValueError as err:
        parser.error(str(err))
    out_dir = (args.output_dir or DEFAULT_OUTPUT.get(profile) or ROOT / "_build" / profile).resolve()
    default_place = args.output_dir is None
    report_path = REPORTS / f"{profile}-{args.kernel}.json" if default_place else out_dir / "execution_report.json"
    notebooks = resolve_notebooks(args.notebooks)
    print(f"Running {len(notebooks)} notebook(s), profile {profile!r}, kernel {kernel_name(args.kernel)!r} -> {out_dir}")
    results: dict[str, dict] = {}
    for i, src in enumerate(notebooks, 1):
        print(f"[{i}/{len(notebooks)}] {src.stem} ...", flush=True)
        try:
            entry = execute_one(src, out_dir / src.name, profile=profile, kernel=args.kernel, seed=args.seed,
                                progress=not args.no_progress)
            print(f"[{i}/{len(notebooks)}] {src.stem}: ok in {entry['seconds']:.1f} s on {entry['device']}, "
                  f"peak memory {entry['peak_memory_mb']} MB", flush=True)
        except NotebookFailed as err:
            entry = {"status": "failed", "error": str(err).splitlines()[0],
                     "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
            print(f"[{i}/{len(notebooks)}] {src.stem}: FAILED {err}", file=sys.stderr, flush=True)
        results[src.stem] = entry
    report = update_report(report_path, profile, args.kernel, results)
    if default_place:
        render_report_page()
    failed = [n for n, e in results.items() if e["status"] != "ok"]
    ran = sum(e["seconds"] for e in results.values() if e["status"] == "ok")
    print(f"Done: {len(results) - len(failed)} ok, {len(failed)} failed, {ran:.1f} s; report {report_path}"
          f" (all chapters of this profile: {report['total_seconds']:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
