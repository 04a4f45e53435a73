"""Every classification probe passes scikit-learn's estimator checks (``parametrize_with_checks``).

Checks a probe legitimately does not pass are listed with the reason (and run as expected failures):

- ``check_classifiers_train`` for the attention head and DifFormer: on the checks' two-feature blobs a
  vector is one 1×1 token, and the tokenizer's LayerNorm over (C, H, W) keeps only its direction,
  so training accuracy stays below the 0.83 the check asks; on maps (what these heads are for) they
  learn (tests/probes/test_estimators.py).
"""

from __future__ import annotations

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from diffprobe.probes import AttentionProbe, DifFormerProbe, KNNProbe, LinearProbe, LogisticProbe

_TOKEN = "a vector is one 1×1 token whose LayerNorm keeps only its direction: two-feature blobs stay below 0.83 training accuracy"
SMALL = dict(dim=8, heads=2, depth=1, epochs=5, batch_size=16, lr=0.1, device="cpu")
ESTIMATORS = [
    LogisticProbe(),
    LinearProbe(epochs=30, batch_size=16, lr=0.1),
    KNNProbe(k=3),
    AttentionProbe(**SMALL),
    DifFormerProbe(**SMALL),
]
EXPECTED = {"AttentionProbe": {"check_classifiers_train": _TOKEN}, "DifFormerProbe": {"check_classifiers_train": _TOKEN}}


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")
@parametrize_with_checks(ESTIMATORS, expected_failed_checks=lambda est: EXPECTED.get(type(est).__name__, {}))
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)
