"""Execute the book's notebooks with papermill, in book order, and report.

Usage::

    python -m bigmodel_utils.run [--profile smoke|full] [--kernel cpu|gpu] [--force]
                                 [--cell-timeout S] [--output-dir DIR] [NOTEBOOK ...]

``notebooks/`` holds each chapter's source. By default the ``smoke`` profile
writes its executed copy back in place (these are the outputs nbval checks in
CI) and the ``full`` profile writes to ``book/chapters/`` (what the book
publishes). Each output is written to a temporary file in ``_build/running/`` and
renamed only when the whole notebook succeeded: a failed, interrupted or killed
run never touches the last good outputs; the failed copy goes to
``_build/failed/`` and the failing cell and error are printed. A chapter whose
inputs are unchanged since its last successful run into the same place is
skipped (``--force`` re-executes it); its prose is still brought up to date.
Every executed chapter updates a JSON execution report (seconds, profile,
kernel, device, machine, versions, peak memory per notebook) and the book's
report page at once, so an aborted run keeps what it finished.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from copy import deepcopy
from importlib import metadata
from pathlib import Path

from .devices import RUN_INFO_ENV, THREADS_ENV
from .kernels import KERNELS, kernel_name
from .notebook_copies import fold_parameters, relink
from .plots import FIGURE_REPORT_ENV
from .profiles import get_profile

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
CHAPTERS = ROOT / "book" / "chapters"
REPORTS = ROOT / "book" / "reports"
REPORT_PAGE = ROOT / "book" / "execution_report.md"
FAILED = ROOT / "_build" / "failed"
RUNNING = ROOT / "_build" / "running"
STATE_DIR = ROOT / "_build" / "runner-state"
DEFAULT_OUTPUT = {"smoke": NOTEBOOKS, "full": CHAPTERS}
RUNNER_PACKAGES = ("papermill", "nbclient", "ipykernel", "jupyter-book", "nbval", "torch", "keras", "numpy")
BUDGET_SECONDS = {"full": 240.0, "smoke": 30.0}
CELL_TIMEOUT_FACTOR = 5  # one cell may take five times the budget of a whole chapter before it counts as hung
TEMP_NAME = re.compile(r"^(\d+)-.+\.(running\.ipynb|markdown\.ipynb|info\.json|figures\.json)$")


class NotebookFailed(RuntimeError):
    """A notebook failed; the first line of the message is a one-line summary (with the remedy)."""


class RunRefused(Exception):
    """The run cannot start (usage, another run, a corrupt report, no GPU): exit status 2, nothing executed."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; a BaseException so that no ``except Exception`` swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


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


def _as_path(name: str) -> Path | None:
    """The file a name given as a path points to (cwd first, then the repository), or None for a chapter name."""
    if "/" not in name and not name.endswith(".ipynb"):
        return None
    for path in (Path(name), ROOT / name):
        if path.is_file():
            return path.resolve()
    return None if "/" not in name else Path(name).resolve()


def resolve_notebooks(names: list[str], *, outside_ok: bool = False) -> list[Path]:
    """Turn names or paths into source notebooks, in book order; unknown names are an error.

    A path outside ``notebooks/`` is run as given only with ``outside_ok`` (the caller chose an
    output folder): mapping it to the committed chapter of the same name would silently run
    something else, and writing it over the committed output would be worse.
    """
    order = book_order()
    if not names:
        return [NOTEBOOKS / f"{n}.ipynb" for n in order]
    chosen = []
    for name in names:
        path = _as_path(name)
        if path is not None and path.parent != NOTEBOOKS.resolve():
            if not path.is_file():
                raise SystemExit(f"no notebook {name!r}: {path} does not exist")
            if not outside_ok:
                raise RunRefused(f"{path} is outside notebooks/: pass --output-dir DIR to run this file "
                                 "(the committed chapter of the same name is not run in its place)")
            chosen.append(path)
            continue
        path = NOTEBOOKS / f"{Path(name).stem}.ipynb"
        if not path.is_file():
            raise SystemExit(f"no notebook {name!r}: expected {path}; chapters are {', '.join(order)}")
        chosen.append(path)
    rank = {n: i for i, n in enumerate(order)}
    return sorted(chosen, key=lambda p: rank.get(p.stem, len(rank)))


def kernel_kind(kernel: str) -> str:
    """``cpu`` or ``gpu`` for a kind or a kernelspec name, so both spellings share one report file."""
    return next(k for k, spec in KERNELS.items() if spec["name"] == kernel_name(kernel))


def default_cell_timeout(profile: str) -> float | None:
    """Seconds one cell may run: five times the chapter budget of the profile (None: no budget known)."""
    budget = BUDGET_SECONDS.get(profile)
    return None if budget is None else CELL_TIMEOUT_FACTOR * budget


def _rel(path: Path) -> str:
    """A path as the user would type it from the repository root."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


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


# --- temporaries ---------------------------------------------------------------------------------

def _temp_path(dest: Path, kind: str) -> Path:
    """A temporary for ``dest`` in ``_build/running/``, named by pid.

    Not next to ``dest``: a ``kill -9`` would leave a hidden partial notebook in ``notebooks/``. The
    folder must be on dest's filesystem (the final rename must be atomic), else ``.running/`` beside it.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    folder = RUNNING
    folder.mkdir(parents=True, exist_ok=True)
    if os.stat(folder).st_dev != os.stat(dest.parent).st_dev:
        folder = dest.parent / ".running"
        folder.mkdir(exist_ok=True)
    return folder / f"{os.getpid()}-{dest.stem}-{secrets.token_hex(4)}.{kind}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(*out_dirs: Path) -> list[Path]:
    """Delete temporaries whose run is gone (killed with -9, power loss); live runs keep theirs."""
    removed = []
    for folder in (RUNNING, *(d / ".running" for d in out_dirs)):
        for path in folder.glob("*") if folder.is_dir() else ():
            m = TEMP_NAME.match(path.name)
            if m and not _pid_alive(int(m.group(1))):
                path.unlink(missing_ok=True)
                removed.append(path)
    for path in RUNNING.glob("outdir-*.lock") if RUNNING.is_dir() else ():
        if _unused_lock(path):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _unused_lock(path: Path) -> bool:
    """An output-folder lock nobody holds, for a folder that no longer exists (tests' temporary folders)."""
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fh.seek(0)
        words = fh.read().split(maxsplit=1)
        return len(words) == 2 and not Path(words[1].strip()).exists()


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temporary in the same folder and rename: a reader never sees half a file."""
    from .data import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text)


# --- executing one notebook ----------------------------------------------------------------------

def _stop_kernels() -> None:
    """Terminate the kernel (and what it started): the runner's child processes, then kill stragglers."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=3)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()


def _run_in_worker(call) -> None:
    """Run ``call`` (papermill) in a worker thread and wait for it.

    Why a thread: inside its event loop nbclient replaces the process's SIGINT/SIGTERM handlers; in
    a worker it cannot, so the main thread keeps the runner's handlers, and on an interrupt it stops
    the kernel itself and waits for papermill to unwind before temporaries are removed. It polls
    instead of ``join()``: an exception raised into an interrupted ``join()`` corrupts the thread
    state in Python 3.11.
    """
    box, done = {}, threading.Event()

    def work():
        try:
            call()
        except BaseException as err:  # noqa: BLE001 - re-raised in the main thread
            box["err"] = err
        finally:
            done.set()

    threading.Thread(target=work, name=f"papermill-{secrets.token_hex(3)}", daemon=True).start()
    try:
        while not done.is_set():
            time.sleep(0.1)
    except BaseException:
        logging.disable(logging.CRITICAL)  # "kernel died" messages of the kernel we stop are noise
        try:
            _stop_kernels()
            deadline = time.monotonic() + 15
            while not done.is_set() and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            logging.disable(logging.NOTSET)
        raise
    if "err" in box:
        raise box["err"]


@contextlib.contextmanager
def _quiet_kernel_manager():
    """Hide jupyter_client's and nbclient's own error logs (tracebacks of a kernel that died or did not
    start): the runner prints one line for the failure, with the remedy."""
    log = logging.getLogger("traitlets")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def _cell_reached(partial: Path) -> int | None:
    """Index of the last cell papermill started, read from its partial output (a timeout names none)."""
    import nbformat

    try:
        cells = nbformat.read(partial, 4).cells
    except Exception:  # noqa: BLE001 - no partial output: the index is unknown
        return None
    # at the end papermill marks unstarted cells "completed"; only a start time tells which ones ran
    started = [i for i, c in enumerate(cells) if c.metadata.get("papermill", {}).get("start_time")]
    return started[-1] if started else None


def _save_failed_copy(tmp: Path, dest: Path) -> Path | None:
    """Keep papermill's partial output for inspection, where there is one."""
    if not tmp.is_file() or tmp.stat().st_size == 0:
        return None
    FAILED.mkdir(parents=True, exist_ok=True)
    copy = FAILED / dest.name
    shutil.move(str(tmp), copy)
    return copy


def _explain(err: Exception, src: Path, dest: Path, *, profile: str, kernel: str, cell_timeout: float | None,
             tmp: Path) -> str:
    """One line that names the chapter, what went wrong and the remedy (the cell error keeps its detail lines)."""
    import nbformat
    import papermill as pm
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    name, kname = src.stem, kernel_name(kernel)
    if isinstance(err, NoSuchKernel):
        return f"{name}: no Jupyter kernel named {kname!r}; install the kernels: python -m bigmodel_utils.kernels install"
    if isinstance(err, (nbformat.reader.NotJSONError, nbformat.ValidationError)):
        return _malformed(src, err)
    copy = _save_failed_copy(tmp, dest)
    partial, where = copy or tmp, f"; failed copy: {_rel(copy)}" if copy else ""
    if isinstance(err, pm.PapermillExecutionError):
        return (f"{name}: cell {err.cell_index} (execution count {err.exec_count}) raised {err.ename}: "
                f"{_first_line(err.evalue)}\n"
                f"    last good output left untouched: {dest}\n    failed copy for inspection: {copy}")
    if isinstance(err, CellTimeoutError):
        cell = _cell_reached(partial)
        which = "a cell" if cell is None else f"cell {cell}"
        source = (f"of the {profile} profile" if cell_timeout == default_cell_timeout(profile)
                  else "set by --cell-timeout")
        return (f"{name}: {which} exceeded the {cell_timeout:g} s per-cell limit {source} "
                f"(--cell-timeout to change){where}")
    if isinstance(err, DeadKernelError):
        return (f"{name}: the kernel died (likely out of memory or killed); rerun that chapter alone: "
                f"python -m bigmodel_utils.run --profile {profile} --kernel {kernel_kind(kernel)} {_rel(src)}{where}")
    if isinstance(err, (OSError, RuntimeError)) and _cell_reached(partial) is None:
        return (f"{name}: the kernel {kname!r} could not start ({type(err).__name__}: {_first_line(err)}); check it with "
                f"python -m bigmodel_utils.kernels list, reinstall with python -m bigmodel_utils.kernels install{where}")
    return f"{name}: unexpected {type(err).__name__}: {_first_line(err)}{where}"


def _first_line(text) -> str:
    return (str(text).strip().splitlines() or [""])[0][:200]


def _malformed(src: Path, err: Exception) -> str:
    return (f"{src.stem}: {_rel(src)} is not a valid notebook ({type(err).__name__}: {_first_line(err)}); "
            f"restore it with `git checkout -- {_rel(src)}`")


def _check_notebook(src: Path) -> None:
    """Refuse a malformed notebook (bad JSON, not nbformat 4) before a kernel is started for it."""
    import nbformat

    try:
        nbformat.validate(nbformat.read(src, 4))
    except Exception as err:  # noqa: BLE001 - nbformat raises many kinds (JSON, schema, type errors)
        raise NotebookFailed(_malformed(src, err)) from None


def _read_run_info(path: Path) -> dict:
    """What ``setup_notebook`` recorded in the kernel (empty if the notebook never called it)."""
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return {}


def execute_one(src: Path, dest: Path, *, profile: str, kernel: str, seed: int, progress: bool = True,
                cell_timeout: float | None = None) -> dict:
    """Run one notebook; rename the output into place only on success.

    ``cell_timeout``: seconds one cell may run (None: the profile's default, 0: no limit). Any failure
    raises :class:`NotebookFailed`; an interrupt stops the kernel, removes the temporaries and re-raises.
    """
    import papermill as pm

    _check_notebook(src)
    if cell_timeout is None:
        cell_timeout = default_cell_timeout(profile)
    tmp, info = _temp_path(dest, "running.ipynb"), _temp_path(dest, "info.json")
    figures = _temp_path(dest, "figures.json")
    info.write_text("")
    figures.write_text("")
    os.environ[RUN_INFO_ENV] = str(info)
    os.environ[FIGURE_REPORT_ENV] = str(figures)
    start = time.perf_counter()
    try:
        with PeakMemory() as mem, _quiet_kernel_manager():
            try:
                _run_in_worker(lambda: pm.execute_notebook(
                    str(src), str(tmp),
                    parameters={"profile": profile, "device": "auto", "seed": seed},
                    kernel_name=kernel_name(kernel), cwd=str(src.parent), progress_bar=progress,
                    log_output=False, execution_timeout=cell_timeout or None,
                ))
            except Exception as err:  # noqa: BLE001 - every failure of this notebook becomes NotebookFailed
                raise NotebookFailed(_explain(err, src, dest, profile=profile, kernel=kernel,
                                              cell_timeout=cell_timeout, tmp=tmp)) from None
        seconds = time.perf_counter() - start
        unreadable = _unreadable_figures(figures)
        if unreadable:
            raise NotebookFailed(_explain_figures(unreadable, src, dest, tmp))
        _finish_copy(tmp, src, dest)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
        return _entry(seconds, profile, kernel, mem.peak, _read_run_info(info))
    finally:
        os.environ.pop(RUN_INFO_ENV, None)
        os.environ.pop(FIGURE_REPORT_ENV, None)
        for p in (tmp, info, figures):
            p.unlink(missing_ok=True)


def _unreadable_figures(path: Path) -> list[dict]:
    """The figures the kernel reported as unreadable (``plots.use_book_style`` checks each one shown)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        with contextlib.suppress(json.JSONDecodeError):
            rec = json.loads(line)
            if isinstance(rec, dict) and rec.get("problems"):
                records.append(rec)
    return records


def _explain_figures(records: list[dict], src: Path, dest: Path, tmp: Path) -> str:
    """One line naming the chapter, the first unreadable figure and its first problem, with the remedy;
    then every problem figure on its own line. The executed copy is kept like any failed one."""
    copy = _save_failed_copy(tmp, dest)
    first = records[0]
    more = f" (and {len(records) - 1} more figure(s))" if len(records) > 1 else ""
    lines = [f"{src.stem}: figure {first.get('title') or '(untitled)'!r} is unreadable on the page: "
             f"{first['problems'][0]}{more}; make the figure narrower or its text larger; "
             "see plots.readability_problems"]
    for rec in records:
        lines.append(f"    figure {rec.get('title') or '(untitled)'!r}: " + "; ".join(rec["problems"]))
    lines.append(f"    last good output left untouched: {dest}\n    failed copy for inspection: {copy}")
    return "\n".join(lines)


def _finish_copy(path: Path, src: Path, dest: Path) -> None:
    """The executed notebook as it is kept: papermill's injected cell folded into the parameters cell
    (one cell, holding the values it ran with) and links rewritten for the destination's folder."""
    import nbformat

    nb = fold_parameters(nbformat.read(path, 4))
    relink(nb, src.parent, dest.parent)
    nbformat.write(nb, path)


def _entry(seconds: float, profile: str, kernel: str, peak: int, kernel_info: dict) -> dict:
    """The report entry of one successful notebook."""
    return {
        "status": "ok",
        "seconds": round(seconds, 1),
        "profile": profile,
        "kernel": kernel_name(kernel),
        "device": kernel_info.get("device", "unknown"),
        "threads": kernel_info.get("threads"),
        "gpu": kernel_info.get("gpu"),
        "peak_memory_mb": round(peak / 2**20),
        "versions": {k: kernel_info.get(k) for k in ("python", "torch", "keras", "numpy")},
        "machine": machine_description(),
        "finished": _now(),
    }


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# --- the report ----------------------------------------------------------------------------------

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


@contextlib.contextmanager
def _locked(path: Path):
    """Hold an exclusive lock on ``<path>.lock``: two runs doing read-modify-write must not lose entries."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield  # closing the file releases the lock, also when the process dies


def read_report(path: Path) -> dict:
    """The report at ``path`` (empty if absent); a corrupt one is refused with the remedy."""
    if not path.is_file():
        return {"notebooks": {}}
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        report = None
    if not isinstance(report, dict) or not isinstance(report.get("notebooks"), dict):
        raise RunRefused(f"execution report {_rel(path)} is corrupt (not a JSON report); restore it with "
                         f"`git checkout -- {_rel(path)}` or delete it, then rerun")
    return report


def _machines(entries) -> str:
    """The distinct machine labels of the entries, in order (one label for the usual single-machine report)."""
    labels = list(dict.fromkeys(e.get("machine") for e in entries if e.get("machine")))
    return "; ".join(labels) or machine_description()


def update_report(path: Path, profile: str, kernel: str, results: dict[str, dict]) -> dict:
    """Merge ``results`` into the JSON report at ``path`` (failures keep the last good entry).

    Locked and atomic, so concurrent runs and aborted runs keep every finished entry.
    """
    with _locked(path):
        report = read_report(path)
        legacy = report.get("machine")  # reports written before entries carried their machine
        for e in report["notebooks"].values():
            if legacy and not e.get("machine") and e.get("status") == "ok":
                e["machine"] = legacy
        report.update(profile=profile, kernel=kernel_name(kernel), runner_versions=_versions())
        for name, entry in results.items():
            entry = {**entry, "machine": entry.get("machine") or machine_description()}
            if entry["status"] == "ok":
                report["notebooks"][name] = entry
            else:
                report["notebooks"].setdefault(name, {"status": "never succeeded"})["last_failure"] = entry
        order = {n: i for i, n in enumerate(book_order())}
        report["notebooks"] = dict(sorted(report["notebooks"].items(), key=lambda kv: order.get(kv[0], len(order))))
        ok = [e for e in report["notebooks"].values() if e.get("status") == "ok"]
        report["machine"] = _machines(ok)  # summary for readers of the whole report; entries carry their own
        report["total_seconds"] = round(sum(e["seconds"] for e in ok), 1)
        _write_atomic(path, json.dumps(report, indent=1) + "\n")
    return report


def _report_table(rows: dict[str, dict]) -> list[str]:
    lines = ["| chapter | seconds | device | threads | peak memory (MB) | torch | keras | finished (UTC) |",
             "|---|---:|---|---:|---:|---|---|---|"]
    for name, e in rows.items():
        dev = e["device"] + (f" ({e['gpu']})" if e.get("gpu") else "")
        lines.append(
            f"| {name} | {e['seconds']:.1f} | {dev} | {e['threads']} | {e['peak_memory_mb']} "
            f"| {e['versions']['torch']} | {e['versions']['keras']} | {e['finished'][:16].replace('T', ' ')} |"
        )
    return lines + [""]


def _report_section(r: dict) -> list[str]:
    """One report's section: only chapters that succeeded, one table per machine when they differ."""
    ok = {n: e for n, e in r["notebooks"].items() if e.get("status") == "ok"}
    if not ok:
        return []
    groups: dict[str, dict] = {}
    for name, e in ok.items():
        groups.setdefault(e.get("machine") or r.get("machine", "unknown machine"), {})[name] = e
    total = sum(e["seconds"] for e in ok.values())
    lines = [f"## Profile `{r['profile']}`, kernel `{r['kernel']}`", ""]
    if len(groups) == 1:
        return lines + [f"Machine: {next(iter(groups))}. Total: {total:.0f} s.", ""] + _report_table(ok)
    lines += [f"Total: {total:.0f} s, measured on {len(groups)} machines (times compare only within one).", ""]
    for machine, rows in groups.items():
        secs = sum(e["seconds"] for e in rows.values())
        lines += [f"Machine: {machine} ({len(rows)} chapter{'s' if len(rows) != 1 else ''}, {secs:.0f} s).", ""] + _report_table(rows)
    return lines


def render_report_page(reports_dir: Path = REPORTS, page: Path = REPORT_PAGE) -> str:
    """Write the book's execution-report page from every JSON report in ``reports_dir``.

    A failed attempt is never published: chapters that never succeeded have no row, and a report
    without any success has no section.
    """
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
    sections = [_report_section(json.loads(f.read_text())) for f in sorted(reports_dir.glob("*.json"))]
    sections = [s for s in sections if s]
    if not sections:
        lines.append("No run has been recorded yet.")
    for s in sections:
        lines += s
    lines += cost_summary(reports_dir)
    text = "\n".join(lines)
    _write_atomic(page, text)
    return text


def cost_summary(reports_dir: Path = REPORTS) -> list[str]:
    """Markdown lines: each chapter's cost per profile, the GPU speedup where a GPU run exists, and
    the chapters over the time budgets (4 min full, 30 s smoke; the budgets count compute, these
    times also include kernel start-up, so a chapter near the line is worth a second look)."""
    runs, setups = {}, {}
    for f in sorted(reports_dir.glob("*.json")):
        r = json.loads(f.read_text())
        gpu = "gpu" in r["kernel"]
        ok = {n: e for n, e in r["notebooks"].items() if e.get("status") == "ok"}
        runs[(r["profile"], gpu)] = {n: e["seconds"] for n, e in ok.items()}
        if r["profile"] == "full":
            labels = list(dict.fromkeys(e.get("machine") or r.get("machine", "unknown machine") for e in ok.values()))
            setups[gpu] = (" and ".join(labels) or "unknown machine", r.get("runner_versions", {}).get("torch", "unknown"))
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


# --- incremental execution -----------------------------------------------------------------------

def _injected(cell) -> bool:
    return "injected-parameters" in cell.metadata.get("tags", [])


def _book_files(*names: str) -> bytes:
    return b"".join((ROOT / "book" / n).read_bytes() for n in names if (ROOT / "book" / n).is_file())


def _book_corpus() -> bytes:
    from .assistant import book_passages

    return "\n".join(f"{p.id}\t{p.title}\t{p.text}" for p in book_passages(ROOT / "book")).encode()


#: Chapters whose code reads the book's prose: that prose is one of their inputs, so an edit to it
#: re-executes them (the language chapter searches the FAQ and glossary; the assistant the whole book).
PROSE_INPUTS = {
    "app_language": lambda: _book_files("faq.md", "glossary.md"),
    "llm_assistant": _book_corpus,
}


def fingerprint(src: Path, *, profile: str, seed: int, kernel: str) -> str:
    """SHA-256 of everything an execution depends on: code cells and their tags, parameters, kernel,
    thread count, the support package and the pinned requirements. Prose is left out on purpose, except
    the book pages that a chapter's code reads (:data:`PROSE_INPUTS`)."""
    import nbformat

    h = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        h.update(f"{label}\0{len(data)}\0".encode() + data)

    for c in nbformat.read(src, 4).cells:
        if c.cell_type == "code" and not _injected(c):
            add("cell", json.dumps([c.source, c.metadata.get("tags", [])]).encode())
    add("parameters", json.dumps({"profile": profile, "seed": seed}).encode())
    add("kernel", kernel_name(kernel).encode())
    add("threads", os.environ.get(THREADS_ENV, "").encode())
    for f in sorted((ROOT / "bigmodel_utils").glob("*.py")):
        add(f"bigmodel_utils/{f.name}", f.read_bytes())
    lock = ROOT / "requirements.lock"
    add("requirements.lock", lock.read_bytes() if lock.is_file() else b"")
    if src.stem in PROSE_INPUTS:
        add("prose read by the chapter", PROSE_INPUTS[src.stem]())
    return h.hexdigest()


def _read_state(path: Path) -> dict[str, str]:
    """Fingerprints by destination; an unreadable state file only means everything runs again."""
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return state if isinstance(state, dict) else {}


def record_state(path: Path, dest: Path, fp: str) -> None:
    """Remember the fingerprint of a successful execution into ``dest`` (forgetting destinations that are gone)."""
    with _locked(path):
        state = {k: v for k, v in _read_state(path).items() if Path(k).exists()}
        state[str(dest)] = fp
        _write_atomic(path, json.dumps(state, indent=1, sort_keys=True) + "\n")


def _merged(src: Path, dest: Path):
    """The executed copy with the source's markdown and raw cells (links rewritten for the copy's
    folder), its code cells and outputs kept.

    Code cells pair up in order (the fingerprint proved them identical; the copy's parameters cell
    holds the values it ran with). Returns the notebook, or None if the cells do not pair up.
    """
    import nbformat

    new, old = nbformat.read(src, 4), nbformat.read(dest, 4)
    if any(_injected(c) for c in old.cells):  # written before the runner folded the injected cell
        fold_parameters(old)
    relink(new, src.parent, dest.parent)
    code = [c for c in old.cells if c.cell_type == "code"]
    if len(code) != sum(c.cell_type == "code" and not _injected(c) for c in new.cells):
        return None
    prose = [c for c in old.cells if c.cell_type != "code"]
    by_id = {c.get("id"): c for c in prose if c.get("id")}
    code_iter, prose_iter, cells = iter(code), iter(prose), []
    for c in new.cells:
        if c.cell_type != "code":
            at_position = next(prose_iter, None)
            cells.append(_carried(c, by_id.get(c.get("id"), at_position)))
        elif not _injected(c):
            cells.append(next(code_iter))
    old.cells = cells
    return old


def _carried(new, old):
    """The source's prose cell with what papermill added to the executed one (its timing, empty tags)."""
    cell = deepcopy(new)
    if old is not None and old.cell_type == new.cell_type:
        if "papermill" in old.metadata:
            cell.metadata["papermill"] = old.metadata["papermill"]
        if "tags" not in cell.metadata and old.metadata.get("tags") == []:
            cell.metadata["tags"] = []
    return cell


def up_to_date(src: Path, dest: Path, fp: str | None, state: dict[str, str]) -> str | None:
    """``"skipped"`` or ``"skipped (markdown updated)"`` when ``dest`` may be kept, else None (execute).

    A missing or unreadable destination is executed again whatever the state says.
    """
    import nbformat

    if fp is None or state.get(str(dest)) != fp or not dest.is_file():
        return None
    try:
        old_cells = nbformat.read(dest, 4).cells
        merged = None if src.resolve() == dest.resolve() else _merged(src, dest)
    except Exception:  # noqa: BLE001 - a destination that does not parse is simply executed again
        return None
    if merged is None:
        return "skipped" if src.resolve() == dest.resolve() else None
    if merged.cells == old_cells:
        return "skipped"
    tmp = _temp_path(dest, "markdown.ipynb")
    try:
        nbformat.write(merged, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return "skipped (markdown updated)"


# --- the run as a whole --------------------------------------------------------------------------

def lock_output_dir(out_dir: Path):
    """Take the output folder for this run (non-blocking): two runs into one folder would overwrite
    each other's notebooks. Returns the open lock file (keep it open); refuses naming the other pid."""
    RUNNING.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(str(out_dir.resolve()).encode()).hexdigest()[:16]
    fh = open(RUNNING / f"outdir-{key}.lock", "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        other = (fh.read().split() or ["unknown"])[0]
        fh.close()
        raise RunRefused(f"another run (pid {other}) is writing to {out_dir}; wait for it to finish, "
                         "or pass another --output-dir") from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()} {out_dir}\n")
    fh.flush()
    return fh


def _gpu_available() -> bool:
    """Whether torch sees CUDA with the GPU kernel's environment (checked once, in a subprocess, so
    the runner does not import torch and a missing GPU is not found again in every chapter)."""
    env = {**os.environ, **KERNELS["gpu"]["env"]}
    code = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    try:
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=300).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _install_signal_handlers(stop: dict) -> dict:
    """SIGINT and SIGTERM raise :class:`Interrupted` once (a second signal while stopping is ignored).

    Only the main thread can own signal handlers; called elsewhere, the defaults stay."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum, frame):
        if "signum" in stop:
            return
        stop["signum"] = signum
        raise Interrupted(signum)

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def _parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bigmodel_utils.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="chapter names or paths (default: all, in book order); "
                        "a path outside notebooks/ needs --output-dir")
    parser.add_argument("--profile", default="smoke", help="execution profile: smoke (default) or full")
    parser.add_argument("--kernel", default="cpu", help=f"Jupyter kernel: {' or '.join(KERNELS)} (or its kernelspec name)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, help="where executed notebooks go (default: by profile)")
    parser.add_argument("--force", action="store_true", help="re-execute chapters whose inputs are unchanged")
    parser.add_argument("--cell-timeout", type=float, metavar="S",
                        help=f"seconds one cell may run (default: {CELL_TIMEOUT_FACTOR} x the chapter budget of the "
                             f"profile: {', '.join(f'{p} {CELL_TIMEOUT_FACTOR * b:.0f} s' for p, b in BUDGET_SECONDS.items())}; 0: no limit)")
    parser.add_argument("--no-progress", action="store_true", help="hide papermill's per-cell progress bar")
    args = parser.parse_args(argv)
    try:
        args.profile = get_profile(args.profile).name
        args.kind = kernel_kind(args.kernel)
    except ValueError as err:
        parser.error(str(err))
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the chapters; 0 all ok, 1 some failed, 2 refused up front, 130/143 interrupted."""
    args = _parse_args(argv)
    stop: dict = {}
    previous = _install_signal_handlers(stop)
    try:
        return _run(args, stop)
    except RunRefused as err:
        print(f"bigmodel_utils.run: {err}", file=sys.stderr, flush=True)
        return 2
    except Interrupted as sig:
        print(f"interrupted in {stop.get('chapter', 'start-up')}; committed outputs untouched", file=sys.stderr, flush=True)
        return 128 + sig.signum
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _prepare(args):
    """Everything checked before the first chapter: output place, report, GPU, the folder lock."""
    out_dir = (args.output_dir or DEFAULT_OUTPUT.get(args.profile) or ROOT / "_build" / args.profile).resolve()
    remove_stale_temporaries(out_dir)
    default_place = args.output_dir is None
    report_path = REPORTS / f"{args.profile}-{args.kind}.json" if default_place else out_dir / "execution_report.json"
    notebooks = resolve_notebooks(args.notebooks, outside_ok=not default_place)
    if args.kind == "gpu" and not _gpu_available():
        raise RunRefused("--kernel gpu: torch sees no CUDA GPU on this machine; run with the CPU kernel: --kernel cpu")
    read_report(report_path)
    return out_dir, default_place, report_path, notebooks, lock_output_dir(out_dir)


def _run(args, stop: dict) -> int:
    out_dir, default_place, report_path, notebooks, lock = _prepare(args)
    with lock:  # held until the run ends; the OS releases it if the process dies
        return _run_chapters(args, stop, out_dir, default_place, report_path, notebooks)


def _run_chapters(args, stop: dict, out_dir: Path, default_place: bool, report_path: Path, notebooks: list[Path]) -> int:
    """The chapters one by one: skip unchanged ones, record each result at once."""
    cell_timeout = args.cell_timeout if args.cell_timeout is not None else default_cell_timeout(args.profile)
    state_path = STATE_DIR / f"{args.profile}-{args.kind}.json"
    state = {} if args.force else _read_state(state_path)
    n = len(notebooks)
    print(f"Running {n} notebook(s), profile {args.profile!r}, kernel {kernel_name(args.kernel)!r} -> {out_dir}",
          flush=True)
    results: dict[str, dict] = {}
    for i, src in enumerate(notebooks, 1):
        stop["chapter"] = src.stem
        dest = out_dir / src.name
        try:
            fp = fingerprint(src, profile=args.profile, seed=args.seed, kernel=args.kernel)
        except Exception:  # noqa: BLE001 - an unreadable source is reported by the execution
            fp = None
        skipped = up_to_date(src, dest, fp, state)
        if skipped:
            print(f"[{i}/{n}] {src.stem}: unchanged, {skipped}", flush=True)
            continue
        results[src.stem] = entry = _execute(args, src, dest, f"[{i}/{n}]", cell_timeout)
        if entry["status"] == "ok" and fp:
            record_state(state_path, dest, fp)
        update_report(report_path, args.profile, args.kernel, {src.stem: entry})
        if default_place:
            render_report_page(REPORTS, REPORT_PAGE)
    stop["chapter"] = "the final summary"
    return _summary(results, report_path, n)


def _execute(args, src: Path, dest: Path, tag: str, cell_timeout: float | None) -> dict:
    """Execute one chapter and print its line; a failure becomes a failed entry (the run goes on)."""
    print(f"{tag} {src.stem} ...", flush=True)
    try:
        entry = execute_one(src, dest, profile=args.profile, kernel=args.kernel, seed=args.seed,
                            progress=not args.no_progress, cell_timeout=cell_timeout)
    except NotebookFailed as err:
        print(f"{tag} FAILED {err}", file=sys.stderr, flush=True)
        return {"status": "failed", "error": str(err).splitlines()[0], "machine": machine_description(),
                "finished": _now()}
    print(f"{tag} {src.stem}: ok in {entry['seconds']:.1f} s on {entry['device']}, "
          f"peak memory {entry['peak_memory_mb']} MB", flush=True)
    return entry


def slowest_table(results: dict[str, dict], k: int = 10) -> list[str]:
    """The ``k`` slowest chapters executed in this run, for deciding where time goes."""
    ok = sorted(((e["seconds"], n) for n, e in results.items() if e["status"] == "ok"), reverse=True)[:k]
    if not ok:
        return []
    return ["Slowest chapters of this run:", f"  {'seconds':>8}  chapter"] + [f"  {s:8.1f}  {n}" for s, n in ok]


def _summary(results: dict[str, dict], report_path: Path, n: int) -> int:
    """Print the slowest chapters and the totals; 1 if a chapter failed."""
    for line in slowest_table(results):
        print(line)
    failed = [name for name, e in results.items() if e["status"] != "ok"]
    ran = sum(e["seconds"] for e in results.values() if e["status"] == "ok")
    total = read_report(report_path).get("total_seconds", 0.0)
    print(f"Done: {len(results) - len(failed)} ok, {len(failed)} failed, {n - len(results)} unchanged, {ran:.1f} s; "
          f"report {report_path} (all chapters of this profile: {total:.1f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
