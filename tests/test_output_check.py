"""The portable comparison of fresh outputs with committed ones: exact text, numbers within tolerance."""
import math

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from bigmodel_utils import output_check as oc


def nb_with(*cells):
    """cells: (id, source, stdout text, [tags])"""
    nb = new_notebook()
    for cid, src, text, *tags in cells:
        c = new_code_cell(src, id=cid)
        c.metadata["tags"] = tags[0] if tags else []
        c.outputs = [new_output("stream", name="stdout", text=text)] if text is not None else []
        nb.cells.append(c)
    return nb


def test_split_numbers_keeps_identifiers_as_text():
    texts, nums = oc.split_numbers("article_cnn_e5 on x86: acc 0.9835, loss -1.2e-05  (93,322 params)")
    assert nums == ["0.9835", "-1.2e-05", "93", "322"]
    assert texts[0] == "article_cnn_e5 on x86: acc" and texts[-1] == "params)"


def test_last_digit_unit():
    assert oc.last_digit_unit("0.9835") == pytest.approx(1e-4)
    assert oc.last_digit_unit("3.6e-15") == pytest.approx(1e-16)
    assert oc.last_digit_unit("42") == 0.0
    assert oc.last_digit_unit("1e-09") == pytest.approx(1e-9)


def test_numbers_agree_default_rule():
    assert oc.numbers_agree("0.9835", "0.9836")          # round-off across a rounding boundary
    assert not oc.numbers_agree("0.9835", "0.9838")      # a real change
    assert not oc.numbers_agree("93322", "93323")        # integers are exact
    assert oc.numbers_agree("3.6e-15", "5.3e-15")        # round-off values themselves
    assert not oc.numbers_agree("3.6e-07", "5.3e-07")


def test_numbers_agree_with_a_tolerance():
    tol = oc.Tolerance(atol=0.01, rtol=0.05)
    assert oc.numbers_agree("0.6767", "0.6727", tol)
    assert not oc.numbers_agree("0.6767", "0.5", tol)
    assert oc.numbers_agree("4873", "4700", tol) and not oc.numbers_agree("4873", "4000", tol)


def test_tolerance_rejects_bad_values():
    for bad in (-1, math.nan, math.inf, "x"):
        with pytest.raises(ValueError, match="finite number"):
            oc.Tolerance(atol=bad)


def test_terminal_text_keeps_the_last_state_of_a_progress_bar():
    assert oc.terminal_text("10%|#  \r50%|#####\r100%|##########\nnext") == "100%|##########\nnext"


def test_compare_notebooks_passes_for_round_off_and_whitespace(tmp_path):
    ref = nb_with(("a", "print(x)", "acc 0.9835 | table:  1.5   2\n"))
    new = nb_with(("a", "print(x)", "acc 0.9836 | table: 1.5 2\n"))
    assert oc.compare_notebooks(ref, new, {}, []) == []


def test_compare_notebooks_reports_the_cell_number_and_values():
    ref = nb_with(("a", "setup()", "ok\n"), ("b", "train()", "accuracy 0.6767\n"))
    new = nb_with(("a", "setup()", "ok\n"), ("b", "train()", "accuracy 0.6727\n"))
    [m] = oc.compare_notebooks(ref, new, {}, [])
    assert m.cell_id == "b" and not m.structural and "0.6767 (committed) vs 0.6727 (fresh)" in m.reason
    assert m.deviations == [(0.6767, 0.6727)]
    assert oc.compare_notebooks(ref, new, {"b": oc.Tolerance(atol=0.02)}, []) == []
    assert "cell 1 (id b" in oc.render_mismatches("demo", [m])


def test_text_changes_are_never_tolerated():
    ref = nb_with(("b", "train()", "predicted: cat\n"))
    new = nb_with(("b", "train()", "predicted: dog\n"))
    [m] = oc.compare_notebooks(ref, new, {"b": oc.Tolerance(atol=1e9, rtol=1e9)}, [])
    assert m.structural and "text differs" in m.reason
    assert oc.compare_notebooks(ref, new, {"b": oc.Tolerance(checks_only=True)}, []) == []


def test_missing_output_and_changed_cells_are_caught():
    ref = nb_with(("b", "train()", "accuracy 0.6767\n"))
    assert "differ in kind" in oc.compare_notebooks(ref, nb_with(("b", "train()", None)), {}, [])[0].reason
    assert "ids differ" in oc.compare_notebooks(ref, nb_with(("c", "train()", "accuracy 0.6767\n")), {}, [])[0].reason
    assert "source differs" in oc.compare_notebooks(ref, nb_with(("b", "fit()", "accuracy 0.6767\n")), {}, [])[0].reason
    assert "do not exist" in oc.compare_notebooks(ref, ref, {"zz": oc.Tolerance()}, [])[0].reason


def test_skipped_cells_and_images_are_not_compared():
    ref = nb_with(("t", "time()", "took 3.2 s\n", ["nbval-ignore-output"]))
    new = nb_with(("t", "time()", "took 9.9 s and more\n", ["nbval-ignore-output"]))
    assert oc.compare_notebooks(ref, new, {}, []) == []
    img_ref, img_new = nb_with(("p", "plot()", None)), nb_with(("p", "plot()", None))
    img_ref.cells[0].outputs = [new_output("display_data", data={"image/png": "AAAA", "text/plain": "<Figure>"})]
    img_new.cells[0].outputs = [new_output("display_data", data={"image/png": "BBBB", "text/plain": "<Figure>"})]
    assert oc.compare_notebooks(img_ref, img_new, {}, []) == []


def test_sanitizers_apply_the_nbval_file(root):
    rules = oc.load_sanitizers(root / "tests" / "nbval_sanitize.cfg")
    env = "Environment: Python 3.11.7 | device cpu | 1 CPU threads\n"
    assert oc.sanitize(env, rules) == oc.sanitize(env.replace("1 CPU", "2 CPU"), rules)
    with pytest.raises(FileNotFoundError):
        oc.load_sanitizers(root / "nope.cfg")


def test_load_tolerances_reads_and_validates(tmp_path):
    f = tmp_path / "t.yml"
    f.write_text("chapters:\n  gan:\n    abc: {atol: 0.1, rtol: 0.02}\n    def: {checks_only: true}\n")
    tol = oc.load_tolerances(f)
    assert tol["gan"]["abc"] == oc.Tolerance(0.1, 0.02) and tol["gan"]["def"].checks_only
    f.write_text("chapters:\n  gan:\n    abc: {atol: -1}\n")
    with pytest.raises(ValueError, match="gan, cell abc"):
        oc.load_tolerances(f)
    assert oc.load_tolerances(tmp_path / "missing.yml") == {}


def test_committed_tolerances_name_existing_cells_and_stay_meaningful(root):
    """Every tolerance in the committed file belongs to a cell that exists, and none is so wide that a
    wrong result would pass (a relative tolerance above 50 % or an absolute one above 0.5 would)."""
    for chapter, cells in oc.load_tolerances().items():
        ids = {c.get("id") for c in nbformat.read(root / "notebooks" / f"{chapter}.ipynb", 4).cells}
        for cid, tol in cells.items():
            assert cid in ids, f"{chapter}: tolerance for missing cell {cid}"
            assert tol.checks_only or (tol.rtol <= 0.5 and tol.atol <= 0.5), (chapter, cid, tol)


def test_cli(tmp_path, capsys):
    ref, new = tmp_path / "ref.ipynb", tmp_path / "new.ipynb"
    nbformat.write(nb_with(("a", "print(x)", "acc 0.9835\n")), ref)
    nbformat.write(nb_with(("a", "print(x)", "acc 0.5\n")), new)
    assert oc.main([str(ref), str(ref)]) == 0 and "all outputs agree" in capsys.readouterr().out
    assert oc.main([str(ref), str(new), "--chapter", "demo"]) == 1
    assert "0.9835 (committed) vs 0.5 (fresh)" in capsys.readouterr().out


def test_nbval_exact_check_runs_with_the_books_sanitizers(tmp_path, root):
    """The README's nbval command (exact comparison, for the machine that made the outputs) works with the
    project's settings: -n 0 turns off the parallel workers, the sanitize file normalises timings."""
    import subprocess
    import sys

    nb = nb_with(("a", "print('took 3.2 s')", "took 0.7 s\n"))
    nb.cells[0].execution_count = 1
    nb.metadata["kernelspec"] = {"name": "bigmodel-cpu", "display_name": "cpu", "language": "python"}
    path = tmp_path / "timing.ipynb"
    nbformat.write(nb, path)
    cmd = [sys.executable, "-m", "pytest", "-n", "0", "--nbval", "--nbval-sanitize-with", "tests/nbval_sanitize.cfg",
           str(path), "-p", "no:cacheprovider", "-q"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "1 passed" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
