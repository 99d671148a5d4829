"""Named execution profiles.

A profile says how much work a notebook does. ``smoke`` is what CI runs (seconds
per notebook, small subsets); ``full`` is what the book publishes (the article's
settings). Chapter-specific knobs live in :attr:`Profile.chapters`, so adding a
chapter never changes another chapter's settings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping


class UnknownProfileError(ValueError):
    """Raised for a profile name that is not in :data:`PROFILES`."""


@dataclass(frozen=True)
class Profile:
    """A named bundle of settings; ``settings(chapter)`` gives one chapter's knobs."""

    name: str
    description: str
    chapters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def settings(self, chapter: str) -> dict[str, Any]:
        """Return a copy of the settings of ``chapter`` (KeyError names the known ones)."""
        try:
            return dict(self.chapters[chapter])
        except KeyError:
            known = ", ".join(sorted(self.chapters)) or "none"
            raise KeyError(
                f"profile {self.name!r} has no settings for chapter {chapter!r}; "
                f"chapters with settings: {known}. Add them in bigmodel_utils/profiles.py."
            ) from None


def _frozen(d: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Mapping[str, Any]]:
    return MappingProxyType({k: MappingProxyType(dict(v)) for k, v in d.items()})


PROFILES: Mapping[str, Profile] = MappingProxyType(
    {
        "smoke": Profile(
            name="smoke",
            description="CI check: small subsets, one short epoch, seconds per notebook",
            chapters=_frozen(
                {
                    "mnist_cnn": dict(
                        n_train=10_000, n_val=1_000, epochs=1, batch_size=64, min_test_accuracy=0.90,
                        n_train_final=11_000,
                    ),
                    "scaling_out": dict(n_train=2_048, epochs=1, global_batch=128, max_accuracy_gap=0.01,
                                        max_relative_weight_distance=0.01),
                    "performance": dict(),
                    "mathematics": dict(tolerance=1e-9, mc_samples=200_000),
                    "concepts": dict(n_trials=4, max_iter=60, min_accuracy=0.85),
                    "app_images": dict(n_train=6_000, n_val=1_000, epochs=1, batch_size=64, min_test_accuracy=0.70,
                                       mnist_epochs=1, mnist_n_train=11_000),
                    "app_health": dict(n_bootstrap=200),
                    "tools": dict(),
                    "cnn": dict(n_train=5_000, n_val=1_000, epochs=1, batch_size=32, min_test_accuracy=0.85,
                                n_probe=32, n_shift=500, max_shift=6, cnn_beats_dense=False),
                    "rnn_lstm": dict(adding_length=50, adding_n_train=20_000, adding_epochs=2, hidden=32,
                                     learning_rate=1e-2, max_lstm_mse=0.05, lengths=(10, 25, 50, 100, 200),
                                     mnist_n_train=20_000, mnist_epochs=1, mnist_hidden=64, min_mnist_accuracy=0.70),
                    "transformer": dict(d_model=64, heads=4, layers=2, context=32, batch_size=32, steps=60,
                                        learning_rate=3e-3, warmup=10, eval_every=10, sample_chars=120,
                                        must_beat="unigram"),
                    "scaling_laws": dict(widths=(16, 32, 64), layers=2, heads=4, context=64, batch_size=32, steps=40,
                                         learning_rate=3e-3, warmup=10, eval_every=10, test_chars=20_000,
                                         min_r2=0.8, alpha_range=(0.01, 1.0)),
                }
            ),
        ),
        "full": Profile(
            name="full",
            description="what the book publishes: the article's settings on the whole data set",
            chapters=_frozen(
                {
                    "mnist_cnn": dict(
                        n_train=None, n_val=5_000, epochs=5, batch_size=64, min_test_accuracy=0.99,
                        n_train_final=None,
                    ),
                    "scaling_out": dict(n_train=60_000, epochs=1, global_batch=128, max_accuracy_gap=0.005,
                                        max_relative_weight_distance=0.1),
                    "performance": dict(),
                    "mathematics": dict(tolerance=1e-9, mc_samples=200_000),
                    "concepts": dict(n_trials=40, max_iter=200, min_accuracy=0.93),
                    "app_images": dict(n_train=None, n_val=5_000, epochs=2, batch_size=64, min_test_accuracy=0.87,
                                       mnist_epochs=5, mnist_n_train=None),
                    "app_health": dict(n_bootstrap=2_000),
                    "tools": dict(),
                    "cnn": dict(n_train=None, n_val=5_000, epochs=2, batch_size=64, min_test_accuracy=0.98,
                                n_probe=64, n_shift=2_000, max_shift=6, cnn_beats_dense=True),
                    "rnn_lstm": dict(adding_length=50, adding_n_train=20_000, adding_epochs=4, hidden=32,
                                     learning_rate=1e-2, max_lstm_mse=0.01, lengths=(10, 25, 50, 100, 200, 400),
                                     mnist_n_train=None, mnist_epochs=4, mnist_hidden=64, min_mnist_accuracy=0.97),
                    "transformer": dict(d_model=128, heads=4, layers=3, context=64, batch_size=32, steps=600,
                                        learning_rate=3e-3, warmup=40, eval_every=25, sample_chars=300,
                                        must_beat="bigram"),
                    "scaling_laws": dict(widths=(16, 24, 32, 48, 64, 96), layers=2, heads=4, context=64, batch_size=32,
                                         steps=350, learning_rate=3e-3, warmup=30, eval_every=25, test_chars=None,
                                         min_r2=0.9, alpha_range=(0.01, 1.0)),
                }
            ),
        ),
    }
)


def get_profile(name: str) -> Profile:
    """Look up a profile by name; an unknown name is an error listing the valid ones."""
    if isinstance(name, Profile):
        return name
    try:
        return PROFILES[name]
    except (KeyError, TypeError):
        valid = ", ".join(repr(p) for p in PROFILES)
        raise UnknownProfileError(
            f"unknown profile {name!r}; valid profiles are {valid}"
        ) from None
