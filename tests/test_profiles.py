import pytest

from bigmodel_utils.profiles import PROFILES, Profile, UnknownProfileError, get_profile


def test_smoke_and_full_exist_and_cover_the_same_chapters():
    assert {"smoke", "full"} <= set(PROFILES)
    assert set(PROFILES["smoke"].chapters) == set(PROFILES["full"].chapters)


def test_get_profile_returns_profile_and_accepts_profile():
    p = get_profile("full")
    assert isinstance(p, Profile) and p.name == "full"
    assert get_profile(p) is p


def test_unknown_profile_lists_valid_ones():
    with pytest.raises(UnknownProfileError) as err:
        get_profile("fast")
    assert "'smoke'" in str(err.value) and "'full'" in str(err.value) and "'fast'" in str(err.value)


def test_settings_are_copies_and_unknown_chapter_is_explained():
    s = get_profile("smoke").settings("mnist_cnn")
    s["epochs"] = 99
    assert get_profile("smoke").settings("mnist_cnn")["epochs"] == 1
    with pytest.raises(KeyError, match="no settings for chapter 'nope'"):
        get_profile("smoke").settings("nope")


def test_full_profile_uses_the_articles_settings():
    s = get_profile("full").settings("mnist_cnn")
    assert (s["epochs"], s["batch_size"], s["min_test_accuracy"]) == (5, 64, 0.99)
