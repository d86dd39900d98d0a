"""Random override strings: each one composes and passes the checks, or fails with a message.

The CLI reports any error raised while composing as `error_message` formats it: Hydra's own
message for its composition errors, otherwise one line, never a traceback. So every failure must
be an ordinary Exception whose message `error_message` turns into that.
"""

from __future__ import annotations

import string

import pytest
from hydra.errors import CompactHydraException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlrun.checks import validate
from dlrun.cli import error_message
from dlrun.errors import ConfigError

KEYS = [
    "seed",
    "resume",
    "optimizer.lr",
    "optimizer.momentum",
    "optimizer.nesterov",
    "optimizer.beta1",
    "model.hidden_sizes",
    "model.activation",
    "model.cell",
    "model.variant",
    "model.hidden_size",
    "regularization.dropout",
    "regularization.l2",
    "regularization.l1",
    "regularization.batchnorm",
    "trainer.epochs",
    "trainer.batch_size",
    "trainer.loss",
    "trainer.precision",
    "dataset.val_fraction",
    "dataset.test_fraction",
    "dataset.root",
    "device.name",
    "trainer.limit_train_batches",
    "model",
    "optimizer",
    "dataset",
    "regularization",
    "device",
    "experiment",
    "debug",
    "trainer",
    "optimizer.lrr",
    "nonsense",
]

values = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        [
            "true",
            "false",
            "null",
            "[]",
            "[l2,dropout]",
            "[1,2]",
            "[0]",
            "{}",
            "mlp",
            "cnn",
            "rnn",
            "adam",
            "none",
            "'quoted'",
            "inf",
            "-inf",
            "nan",
            "1e-3",
            "0",
            "-1",
            "glob(*)",
            "range(1,3)",
            "${seed}",
            "${nope}",
        ]
    ),
    st.text(alphabet=string.ascii_letters + string.digits + "._-[],{}'\"=:$ ", max_size=12),
)
override = st.builds(
    lambda prefix, key, value: f"{prefix}{key}={value}", st.sampled_from(["", "", "", "+", "++", "~"]), st.sampled_from(KEYS), values
)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(override, min_size=1, max_size=3))
def test_random_overrides_compose_or_fail_with_a_message(compose_cfg, overrides):
    try:
        cfg = compose_cfg(*overrides)
    except Exception as err:  # noqa: BLE001  any composition error is reported, as below
        message = error_message(err)
        assert message.strip()
        if not isinstance(err, CompactHydraException):
            assert message.startswith("dlrun: error: ") and "\n" not in message
        return
    try:
        validate(cfg)
    except ConfigError as err:
        assert str(err).strip() and "\n" not in str(err)
