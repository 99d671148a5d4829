import pytest

from bigmodel_utils import resources


def test_locked_versions_parses_pins(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("# comment\nScikit_Learn==1.2.3\ntorch==2.13.0  # cpu\n\n")
    assert resources.locked_versions(lock) == {"scikit-learn": "1.2.3", "torch": "2.13.0"}
    with pytest.raises(FileNotFoundError, match="make lock"):
        resources.locked_versions(tmp_path / "missing.txt")


def test_installed_version():
    assert resources.installed_version("numpy")
    assert resources.installed_version("no-such-distribution-xyz") is None


def test_tools_table_matches_the_lock():
    table = resources.tools_table()
    assert list(table.index) == [t.name for t in resources.TOOLS]
    assert resources.version_mismatches(table) == []


def test_version_mismatches_detects_difference(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("numpy==0.0.1\n")
    tools = (resources.Tool("NumPy", "numpy", "r", "u"), resources.Tool("Ghost", "no-such-dist-xyz", "r", "u"))
    table = resources.tools_table(tools, lock)
    assert resources.version_mismatches(table) == ["NumPy"]


def test_reading_table_and_bib_keys(root):
    table = resources.reading_table()
    assert set(table["verdict"]) <= {"correct", "wrong authors", "not found"}
    keys = resources.bib_keys(root / "book" / "references.bib")
    assert {r.bib_key for r in resources.ARTICLE_READING if r.bib_key} <= keys
    with pytest.raises(FileNotFoundError):
        resources.bib_keys(root / "nope.bib")
