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
                        n_train=6_000, n_val=1_000, epochs=1, batch_size=64, min_test_accuracy=0.90,
                        n_train_final=7_000,
                    ),
                    "scaling_out": dict(n_train=2_048, epochs=1, global_batch=128, max_accuracy_gap=0.01,
                                        max_relative_weight_distance=0.01),
                    "performance": dict(),
                    "mathematics": dict(tolerance=1e-9, mc_samples=200_000),
                    "concepts": dict(n_trials=4, max_iter=60, min_accuracy=0.85),
                    "app_images": dict(n_train=4_000, n_val=1_000, epochs=1, batch_size=64, min_test_accuracy=0.65,
                                       mnist_epochs=1, mnist_n_train=7_000),
                    "app_health": dict(n_bootstrap=200),
                    "app_speech": dict(accents=("en", "en-us", "en-gb-x-rp"), variants=("m1", "m2", "m3", "f1", "f2", "f3"),
                                       styles=((165, 50),), held_out=("m3", "f3"), n_augment=1, epochs=12,
                                       batch_size=32, learning_rate=1e-2, min_heldout_accuracy=0.5),
                    "app_language": dict(batch_size=32, min_score=0.2, min_top1=0.7, n_examples=4),
                    "app_recsys_outlook": dict(n_users=600, n_items=400, true_factors=8, mean_items=25,
                                               factor_grid=(8,), als_iterations=6, k=10, min_als_gain=0.05,
                                               horizon=60, sarima=False),
                    "tools": dict(),
                    "cnn": dict(n_train=3_000, n_val=1_000, epochs=1, batch_size=32, min_test_accuracy=0.80,
                                n_probe=16, n_shift=200, max_shift=6, cnn_beats_dense=False),
                    "rnn_lstm": dict(adding_length=50, adding_n_train=20_000, adding_epochs=2, hidden=32,
                                     learning_rate=1e-2, max_lstm_mse=0.05, lengths=(10, 25, 50, 100, 200),
                                     mnist_n_train=10_000, mnist_epochs=1, mnist_hidden=64, min_mnist_accuracy=0.70),
                    "transformer": dict(d_model=64, heads=4, layers=2, context=32, batch_size=32, steps=60,
                                        learning_rate=3e-3, warmup=10, eval_every=10, sample_chars=120,
                                        must_beat="unigram"),
                    "llm_prompting": dict(n_per_label=2, wordings=(0,), answer_tokens=3, n_facts_per_kind=3,
                                          fact_tokens=24, min_unparsed_share=0.05, min_text_low=0.0,
                                          min_tfidf_low=0.0, max_general_correct=0.75, min_wrong_kept=0.1),
                    "llm_assistant": dict(n_answerable=8, n_unanswerable=3, max_new_tokens=32, closed_tokens=24, k=2,
                                          min_citation=0.5, min_declines=0.3, min_retrieved=0.5,
                                          max_rag_correct=0.5, min_alone_correct=0.3),
                    "llm_basics": dict(layer=3, sample_tokens=16, speed_tokens=16, lengths=(16, 64, 256), rounds=3,
                                       ppl_chars=1_500, ppl_window=512, char_d_model=64, char_heads=4, char_layers=2,
                                       char_context=32, char_steps=60, char_batch_size=32, char_learning_rate=3e-3,
                                       char_warmup=10),
                    "efficiency": dict(model_epochs=1, model_n_train=5_000, n_test=2_000, n_tune=5_000, tune_steps=15,
                                       sparsities=(0.0, 0.5, 0.9), repeats=50, rounds=1,
                                       min_accuracy=0.90, max_int8_drop=0.02, min_tuned_accuracy=0.85),
                    "interpretability": dict(model_epochs=1, model_n_train=5_000, n_test=2_000, n_examples=4,
                                             ig_steps=32, n_sanity=8, n_deletion=32, min_accuracy=0.90),
                    "privacy": dict(n_train=5_000, epochs=1, batch_size=256, delta=1e-5, epsilons=(0.5, 1.0, 3.0, 8.0),
                                    n_probe=500, min_nonprivate_accuracy=0.5, min_eps1_accuracy=0.2),
                    "fairness": dict(n=12_000, label_bias=0.5, proxy_strength=2.0, target_tprs=(0.5, 0.6, 0.7, 0.8, 0.9),
                                     min_baseline_gap=0.05, max_mitigated_gap=0.1),
                    "scaling_laws": dict(widths=(16, 32, 64), layers=2, heads=4, context=64, batch_size=32, steps=40,
                                         learning_rate=3e-3, warmup=10, eval_every=10, test_chars=20_000,
                                         must_beat="uniform", min_r2=0.8, alpha_range=(0.01, 1.0)),
                    "gan": dict(n_train=2_560, epochs=2, batch_size=64, latent_dim=32, width=16, lr=5e-4, n_fixed=500,
                                d_lr_factor=10, unstable_epochs=1, clf_n_train=3_500, clf_epochs=1,
                                min_classifier_accuracy=0.80, min_entropy_bits=1.0, min_score=1.02, min_noise_ratio=0.9,
                                max_broken_d_fake=0.5, max_d_loss_ratio=2.0, min_score_gain=-10.0, min_d_loss=0.1),
                    "vae": dict(n_train=2_000, n_val=500, latent_dim=8, hidden=128, epochs=2, epochs_2d=1,
                                epochs_no_kl=1, batch_size=128, lr=1e-3, mc_samples=20_000, iw_k=10, n_iw=200,
                                clf_n_train=5_000, clf_epochs=1, n_stats=1_000, min_test_elbo=-260.0,
                                min_iw_gain=0.0, min_score_ratio=None, max_aggregate_kl_2d=100.0,
                                max_sq_norm_2d=100.0, no_kl_factor=1.0),
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
                                       mnist_epochs=2, mnist_n_train=55_000),
                    "app_health": dict(n_bootstrap=2_000),
                    "app_speech": dict(accents=("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
                                                "en-gb-x-gbcwmd", "en-029"),
                                       variants=("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5"),
                                       styles=((130, 35), (165, 50), (200, 65)), held_out=("m3", "f3"), n_augment=1,
                                       epochs=10, batch_size=64, learning_rate=5e-3, min_heldout_accuracy=0.9),
                    "app_language": dict(batch_size=32, min_score=0.2, min_top1=0.7, n_examples=6),
                    "app_recsys_outlook": dict(n_users=3_000, n_items=1_500, true_factors=8, mean_items=25,
                                               factor_grid=(4, 8, 16), als_iterations=8, k=10, min_als_gain=0.05,
                                               horizon=60, sarima=True),
                    "tools": dict(),
                    "cnn": dict(n_train=None, n_val=5_000, epochs=2, batch_size=64, min_test_accuracy=0.98,
                                n_probe=64, n_shift=2_000, max_shift=6, cnn_beats_dense=True),
                    "rnn_lstm": dict(adding_length=50, adding_n_train=20_000, adding_epochs=4, hidden=32,
                                     learning_rate=1e-2, max_lstm_mse=0.01, lengths=(10, 25, 50, 100, 200, 400),
                                     mnist_n_train=None, mnist_epochs=4, mnist_hidden=64, min_mnist_accuracy=0.97),
                    "transformer": dict(d_model=128, heads=4, layers=3, context=64, batch_size=32, steps=600,
                                        learning_rate=3e-3, warmup=40, eval_every=25, sample_chars=300,
                                        must_beat="bigram"),
                    "llm_prompting": dict(n_per_label=None, wordings=(0, 1, 2), answer_tokens=3, n_facts_per_kind=20,
                                          fact_tokens=24, min_unparsed_share=0.2, min_text_low=1 / 6,
                                          min_tfidf_low=1 / 6, max_general_correct=0.5, min_wrong_kept=0.25),
                    "llm_assistant": dict(n_answerable=None, n_unanswerable=None, max_new_tokens=40, closed_tokens=32, k=2,
                                          min_citation=0.7, min_declines=0.6, min_retrieved=0.8,
                                          max_rag_correct=0.1, min_alone_correct=0.4),
                    "llm_basics": dict(layer=3, sample_tokens=48, speed_tokens=64, lengths=(16, 64, 256, 1024, 2048),
                                       rounds=2, ppl_chars=10_000, ppl_window=1024, char_d_model=128, char_heads=4,
                                       char_layers=3, char_context=64, char_steps=300, char_batch_size=32,
                                       char_learning_rate=3e-3, char_warmup=30),
                    "efficiency": dict(model_epochs=2, model_n_train=None, n_test=None, n_tune=20_000, tune_steps=100,
                                       sparsities=(0.0, 0.5, 0.8, 0.9, 0.95), repeats=300, rounds=3,
                                       min_accuracy=0.985, max_int8_drop=0.005, min_tuned_accuracy=0.85),
                    "interpretability": dict(model_epochs=2, model_n_train=None, n_test=None, n_examples=4,
                                             ig_steps=64, n_sanity=32, n_deletion=200, min_accuracy=0.985),
                    "privacy": dict(n_train=None, epochs=2, batch_size=256, delta=1e-5, epsilons=(0.5, 1.0, 3.0, 8.0),
                                    n_probe=2_000, min_nonprivate_accuracy=0.92, min_eps1_accuracy=0.80),
                    "fairness": dict(n=60_000, label_bias=0.5, proxy_strength=2.0,
                                     target_tprs=(0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9),
                                     min_baseline_gap=0.08, max_mitigated_gap=0.06),
                    "scaling_laws": dict(widths=(16, 24, 32, 48, 64, 96), layers=2, heads=4, context=64, batch_size=32,
                                         steps=350, learning_rate=3e-3, warmup=30, eval_every=25, test_chars=None,
                                         must_beat="unigram", min_r2=0.85, alpha_range=(0.01, 1.0)),
                    "gan": dict(n_train=16_000, epochs=3, batch_size=64, latent_dim=32, width=16, lr=5e-4, n_fixed=1_000,
                                d_lr_factor=10, unstable_epochs=1, clf_n_train=20_000, clf_epochs=2,
                                min_classifier_accuracy=0.97, min_entropy_bits=2.8, min_score=3.5, min_noise_ratio=2.0,
                                max_broken_d_fake=0.05, max_d_loss_ratio=0.5, min_score_gain=0.5, min_d_loss=0.1),
                    "vae": dict(n_train=None, n_val=5_000, latent_dim=16, hidden=512, epochs=6, epochs_2d=5,
                                epochs_no_kl=5, batch_size=128, lr=1e-3, mc_samples=100_000, iw_k=100, n_iw=1_000,
                                clf_n_train=None, clf_epochs=2, n_stats=10_000, min_test_elbo=-110.0,
                                min_iw_gain=1.0, min_score_ratio=1.5, max_aggregate_kl_2d=1.0,
                                max_sq_norm_2d=8.0, no_kl_factor=3.0),
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
