"""`diffprobe probe` as a new user meets it (issue 12, items 5, 6, 7a and 7c), through click's CliRunner.

Each test reproduces one problem of the issue on the real test store and shows it fixed: outputs are
never replaced silently (5); the CLI and the Python estimators give the same number (6); training
shows epoch, loss and accuracy on a terminal and nothing elsewhere (7a); a store with one key needs
no --t/--blocks/--pool (7c).
"""

from __future__ import annotations

import csv
import json
from typing import Any

import click.testing
import pytest
from click.testing import CliRunner, Result

from diffprobe.cli import main
from diffprobe.probes import create_probe
from tests.helpers import FMNIST_CKPT, make_manifest
from tests.probes.support import GOOD_KEY, raw_arrays, real_store, workdir

KEY = ("--t", "90", "--blocks", "13", "--pool", "2")  # GOOD_KEY


@pytest.fixture(scope="module")
def store() -> str:
    return str(real_store())


@pytest.fixture(scope="module")
def one_key_store() -> str:
    """A store holding a single extracted array, t0090_b13_p2 (80 images: a few seconds)."""
    import diffprobe

    out = workdir() / "one_key.zarr"
    if not out.exists():
        manifest = make_manifest(workdir() / "one_key.csv", 5, 3)
        diffprobe.extract_features(
            diffprobe.ExtractConfig(
                data=str(manifest), model="adm-32-fmnist", checkpoint=str(FMNIST_CKPT),
                timesteps=(90,), blocks=(13,), pools=(2,), out=str(out), forward_batch=80,
            ),
            progress=False,
        )  # fmt: skip
    return str(out)


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside CliRunner, stderr says it is a terminal (what tqdm's ``disable=None`` asks)."""
    monkeypatch.setattr(click.testing._NamedTextIOWrapper, "isatty", lambda self: self.name == "<stderr>")


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, ["-q", *args])


def ok(*args: str) -> Result:
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    return res


def refused(res: Result, option: str) -> None:
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "already exists; pass --overwrite to replace it, or choose another " + option in res.output


def _never(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("trained although the output was refused")


# -- 5: no silent overwrites ---------------------------------------------------------------------
def test_existing_out_json_is_refused_before_training_then_overwritten_on_request(store, tmp_path, monkeypatch):
    out = tmp_path / "r.json"
    ok("probe", "knn", store, *KEY, "--out", str(out))
    first = out.read_text()
    with monkeypatch.context() as m:
        m.setattr("diffprobe.probes.run.run_probe", _never)
        refused(invoke("probe", "knn", store, *KEY, "-p", "k=3", "--out", str(out)), "--out")
        refused(invoke("probe", "knn", store, *KEY, "--out", str(out), "--dry-run"), "--out")
    assert out.read_text() == first
    ok("probe", "knn", store, *KEY, "-p", "k=3", "--out", str(out), "--overwrite")
    assert json.loads(out.read_text())["config"]["params"] == {"k": 3, "device": "cpu"}


def test_existing_save_folder_is_refused_then_overwritten_on_request(store, tmp_path, monkeypatch):
    saved = tmp_path / "probe"
    ok("probe", "knn", store, *KEY, "--save", str(saved))
    first = (saved / "probe.json").read_text()
    with monkeypatch.context() as m:
        m.setattr("diffprobe.probes.run.run_probe", _never)
        refused(invoke("probe", "knn", store, *KEY, "-p", "k=3", "--save", str(saved)), "--save")
    assert (saved / "probe.json").read_text() == first
    ok("probe", "knn", store, *KEY, "-p", "k=3", "--save", str(saved), "--overwrite")
    assert json.loads((saved / "probe.json").read_text())["params"]["k"] == 3


def test_existing_predictions_are_refused_then_overwritten_on_request(store, tmp_path, monkeypatch):
    saved, preds = tmp_path / "probe", tmp_path / "preds.csv"
    ok("probe", "knn", store, *KEY, "--save", str(saved))
    preds.write_text("mine\n")
    with monkeypatch.context() as m:
        m.setattr("diffprobe.probes.io.load_probe", _never)
        refused(invoke("probe", "predict", str(saved), store, "--out", str(preds)), "--out")
    assert preds.read_text() == "mine\n"
    ok("probe", "predict", str(saved), store, "--out", str(preds), "--overwrite")
    assert preds.read_text().startswith("id,label,pred,p_")


def test_csv_keeps_appending(store, tmp_path):
    table = tmp_path / "runs.csv"
    for k in ("3", "5"):
        ok("probe", "knn", store, *KEY, "-p", f"k={k}", "--csv", str(table))
    rows = list(csv.DictReader(table.open()))
    assert [json.loads(r["params"]) for r in rows] == [{"k": 3, "device": "cpu"}, {"k": 5, "device": "cpu"}]


# -- 6: the estimators and the CLI agree ---------------------------------------------------------
@pytest.mark.parametrize("standardize", [True, False])
@pytest.mark.parametrize("name,params", [("logistic", {}), ("linear", {"epochs": 5}), ("knn", {})])
def test_cli_and_estimator_give_the_same_accuracy(store, name, params, standardize):
    """Issue: `LinearProbe().fit(X, y)` on raw features scored 51.6% where the CLI scored 85.6%."""
    flags = [a for k, v in params.items() for a in ("-p", f"{k}={v}")] + ([] if standardize else ["--no-standardize"])
    doc = json.loads(ok("probe", name, store, *KEY, *flags, "--json").stdout)
    Xtr, ytr, Xva, yva = raw_arrays(GOOD_KEY)  # the stored features, as a user reads them
    est = create_probe(name, **params, **({} if standardize else {"standardize": False})).fit(Xtr, ytr)
    n = len(yva)
    assert doc["n_eval"] == n and doc["n_train"] == len(ytr)
    assert round(est.score(Xva, yva) * n) == round(doc["metrics"]["top1"] * n)  # the same images right


def test_standardize_is_one_option(store):
    res = invoke("probe", "logistic", store, *KEY, "-p", "standardize=false")
    assert res.exit_code != 0 and "use --standardize/--no-standardize instead of -p standardize" in res.output


# -- 7a: progress on a terminal, quiet elsewhere ------------------------------------------------
TINY_HEAD = ("-p", "dim=8", "-p", "heads=2", "-p", "depth=1", "-p", "epochs=2", "-p", "batch_size=100", "--device", "cpu")


@pytest.mark.parametrize("name,args,shown", [
    ("linear", ("-p", "epochs=3"), ("linear probe", "3/3", "epoch", "loss=", "acc=")),
    ("attention", TINY_HEAD, ("AttentionProbe", "2/2", "epoch", "loss=", "acc=")),
    ("logistic", (), ("logistic C sweep", "C=", "val_loss=", "val_acc=", "logistic C=", "it", "loss=")),
    ("logistic", ("-p", "C=0.1"), ("logistic C=0.1", "loss=")),
])  # fmt: skip
def test_training_shows_a_progress_bar_on_a_terminal(store, terminal, name, args, shown):
    res = ok("probe", name, store, *KEY[:4], "--pool", "4" if name == "attention" else "2", *args)
    for text in shown:
        assert text in res.stderr, (text, res.stderr[-500:])
    assert "loss=" not in res.stdout and "top-1" in res.stdout


@pytest.mark.parametrize("name,args", [("linear", ("-p", "epochs=3")), ("logistic", ())])
def test_progress_is_quiet_when_not_a_terminal(store, name, args):
    res = ok("probe", name, store, *KEY, *args)
    assert "loss=" not in res.output and "%|" not in res.output


# -- 7c: a store with one key needs no selection ------------------------------------------------
def test_a_store_with_one_key_needs_no_t_blocks_or_pool(one_key_store):
    """Issue: "expected at least one key: give t, block and pool", although the README says any may be left out."""
    res = ok("probe", "logistic", one_key_store)
    assert "logistic probe on t0090_b13_p2: train train (50) → eval val (30)" in res.stdout
    assert json.loads(ok("probe", "knn", one_key_store, "--dry-run").stdout)["keys"] == ["t0090_b13_p2"]


@pytest.mark.parametrize("args,message", [
    ((), "expected a block and a pool (the store has several: block: 10, 13; pool: 1, 2, 4); pass --blocks and --pool"),
    (("--blocks", "13"), "expected a pool (the store has several: 1, 2, 4); pass --pool"),
])  # fmt: skip
def test_several_values_still_name_the_choices(store, args, message):
    res = invoke("probe", "logistic", store, *args)
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert message in res.output
