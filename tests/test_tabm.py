"""The TabM trunk (trunk.kind: tabm): k members sharing the dense weights, averaged in the model."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_table
from helpers import prepared, split, train_once


def _parts():
    from automtl_classification import ClassificationTask
    from automtl_regression import RegressionTask
    from automtl_tabular import TabularInput

    encoders = [TabularInput("features", {"numeric": ["x0", "x1", "x2", "x3"], "categorical": ["city"]})]
    tasks = [RegressionTask("price", {"target": "price"}), ClassificationTask("kind", {"target": "kind"})]
    train_t, valid_t = split(make_table(240))
    train, valid = prepared(encoders, tasks, train_t, valid_t)
    return encoders, tasks, train, valid


TABM = {"trunk.kind": "tabm", "tabm.k": 4, "trunk.depth": 2, "trunk.units": 16}


def test_members_share_the_kernel_and_start_apart():
    import keras

    from automtl.model.tabm import EnsembleDense

    first = EnsembleDense(8, k=4, first=True, seed=1)
    out = first(keras.ops.ones((3, 5)))
    assert tuple(out.shape) == (3, 4, 8)
    assert tuple(first.kernel.shape) == (5, 8)  # one kernel for every member
    assert set(np.unique(first.r.numpy())) <= {-1.0, 1.0} and len(np.unique(first.r.numpy(), axis=0)) > 1
    later = EnsembleDense(8, k=4)
    later(out)
    assert np.all(later.r.numpy() == 1.0)  # only the first adapter starts at random signs


def test_the_model_serves_the_average_of_its_members_and_each_member_learns_from_its_own_loss():
    import keras
    import tensorflow as tf

    from automtl.model.assemble import build_model
    from automtl.core.trial_params import TrialParams
    from automtl.model.tabm import MEMBERS
    from automtl.training.losses import masked_mean, task_loss

    encoders, tasks, train, _ = _parts()
    keras.utils.set_random_seed(0)
    assembled = build_model(encoders, tasks, TrialParams({**TABM, "sharing": "hard"}))
    x = {k: tf.constant(v[:16].astype(str) if v.dtype == object else v[:16]) for k, v in train.x.items()}
    out = assembled.training_model(x, training=False)
    served = assembled.model(x, training=False)
    members = out[MEMBERS.format("kind")].numpy()  # [16, 4, 1]: binary logits per member
    assert members.shape == (16, 4, 1) and not np.allclose(members[:, 0], members[:, 1])
    p = 1 / (1 + np.exp(-members))
    np.testing.assert_allclose(1 / (1 + np.exp(-served["kind"].numpy())), p.mean(axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(served["price"].numpy(), out[MEMBERS.format("price")].numpy().mean(axis=1), rtol=1e-5,
                               atol=1e-6)
    kind = tasks[1]
    y, m = tf.constant(train.y["kind"][:16]), tf.constant(train.mask["kind"][:16])
    each = [masked_mean(kind.loss(y, out[MEMBERS.format("kind")][:, j]), m).numpy() for j in range(4)]
    assert task_loss(kind, y, out, m).numpy() == pytest.approx(np.mean(each), rel=1e-5)


@pytest.mark.e2e
@pytest.mark.parametrize("sharing", ["hard", "none", "branch", "soft", "cross_stitch", "mmoe", "ple"])
def test_tabm_trains_under_every_sharing_scheme(sharing):
    encoders, tasks, train, valid = _parts()
    assembled, _, fit = train_once(encoders, tasks, train, valid, {**TABM, "sharing": sharing}, epochs=3)
    assert np.isfinite(fit.objective) and set(assembled.members) == {"price", "kind"}


def test_a_task_that_cannot_average_members_fails_the_trial_with_the_reason():
    from automtl.core.trial_params import TrialParams
    from automtl.errors import TrialFailed
    from automtl.model.assemble import build_model

    encoders, tasks, _, _ = _parts()

    class Opaque(type(tasks[0])):  # as a third-party task that declares no average
        def member_average(self):
            return None

    tasks[0].__class__ = Opaque
    with pytest.raises(TrialFailed, match="declares no member_average"):
        build_model(encoders, tasks, TrialParams(TABM))


def test_auto_space_searches_the_trunk_kind_for_tabular_inputs():
    from automtl.autospace import build_auto_space

    encoders, tasks, _, _ = _parts()
    for plugin, name in zip((*encoders, *tasks), ("tabular", "regression", "classification")):
        plugin.type_name = name  # as automtl sets it from the experiment file
    space = build_auto_space(encoders, tasks, rows=240)
    assert space["parameters"]["trunk.kind"] == {"choice": ["mlp", "tabm"]}
    assert space["parameters"]["tabm.k"]["when"] == {"trunk.kind": "tabm"}
    assert all(point.get("trunk.kind") == "mlp" for point in space["start"])  # the plain MLP first


@pytest.mark.e2e
def test_tabm_search_exports_a_model_that_serves_without_automtl(cli, write_experiment, tiny_space, tmp_path):
    import json
    import subprocess
    import sys

    import yaml

    space = yaml.safe_load(tiny_space.read_text())
    space["parameters"].update({"trunk.kind": "tabm", "tabm.k": {"choice": [4, 8]}})
    tiny_space.write_text(yaml.safe_dump(space))
    result = cli("search", "--config", write_experiment(), "--trials", "2", "--epochs", "3")
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    manifest = json.loads((run / "best" / "automtl.json").read_text())
    assert manifest["trial"]["params"]["trunk.kind"] == "tabm"
    # the SavedModel serves one averaged prediction per task in a process without automtl
    code = ("import sys, json, tensorflow as tf; m = tf.saved_model.load(sys.argv[1]).signatures['serving_default'];"
            "o = m(features=tf.constant([[0.1, 0.2, 0.3, 0.4]] * 2, tf.float32), city=tf.constant(['north', 'east']));"
            "print(json.dumps({k: v.numpy().tolist() for k, v in o.items() if v.dtype != tf.string}))")
    served = subprocess.run([sys.executable, "-c", code, str(run / "best" / "saved_model")], capture_output=True,
                            text=True, check=True, env={"CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "3",
                                                        "PATH": "/usr/bin:/bin"})
    out = json.loads(served.stdout.strip().splitlines()[-1])
    assert np.array(out["kind.probabilities"]).shape == (2, 2)
    np.testing.assert_allclose(np.sum(out["kind.probabilities"], axis=1), 1.0, rtol=1e-5)
    assert np.array(out["price.value"]).shape == (2,)
