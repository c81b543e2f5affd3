"""Using a trained run: evaluate, predict and export, from its run directory alone.

Three tiny runs are trained once for the module (a CSV with text labels, generated linear
data, digits with a CNN); every command then reads only what the run left on disk.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dlbasics.cli import commands
from dlbasics.config.tree import CONFIG_DIR
from dlbasics.using import evaluate, export, predict

SPECIES = ["Adelie", "Chinstrap", "Gentoo"]


def penguin_like(rows: int, seed: int) -> pd.DataFrame:
    """Three species told apart by features on very different scales (mm and grams)."""
    rng = np.random.default_rng(seed)
    kind = np.arange(rows) % 3
    return pd.DataFrame(
        {
            "id": [f"{i:05d}" for i in range(rows)],  # leading zeros: text, carried through
            "bill_mm": np.round(38 + 6 * kind + rng.normal(0, 1.0, rows), 1),
            "mass_g": np.round(
                3500 + 700 * (kind == 2) - 300 * (kind == 1) + rng.normal(0, 120, rows)
            ),
            "species": np.array(SPECIES)[kind],
        }
    )


def train_run(directory, *overrides):
    """Train as ``python -m dlbasics.train`` would, leaving the run's .hydra/config.yaml."""
    from dlbasics.training.train import train

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"paths.output_dir={directory}",
                "callbacks.progress_bar=null",
                "callbacks.model_summary=null",
                "trainer.enable_progress_bar=false",
                "logger=none",
                "figures=none",
                *overrides,
            ],
        )
    (directory / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, directory / ".hydra" / "config.yaml")
    train(cfg)
    return directory


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    penguin_like(300, seed=0).to_csv(root / "penguins.csv", index=False)
    return {
        "mlp": train_run(
            root / "mlp", "data=csv", f"data.path={root / 'penguins.csv'}",
            "data.target=species", "data.drop=[id]", "trainer.max_epochs=15",
        ),
        "linreg": train_run(
            root / "linreg", "data=linear", "model=linreg", "data.n_samples=400",
            "data.standardize_target=true", "optimizer=sgd", "optimizer.lr=0.05",
            "trainer.max_epochs=20",
        ),
        "cnn": train_run(
            root / "cnn", "data=digits", "model=cnn", "trainer.max_epochs=2",
        ),
    }  # fmt: skip


def command(module, *argv, capsys):
    """Run a command as its ``python -m`` entry point does; (exit code, stdout, stderr)."""
    try:
        commands.run(module.main, module.__doc__, list(argv))
        code = 0
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def raw_test_split(run):
    """The run's test split as raw rows, by rebuilding its data from the saved config."""
    from hydra.utils import instantiate

    datamodule = instantiate(OmegaConf.load(run / ".hydra" / "config.yaml").data)
    datamodule.setup()
    x, y = datamodule.original_split("test")
    return x.reshape(len(x), -1), y, datamodule


def evaluate_run(run, *argv, capsys) -> tuple[int, str, str, dict | None]:
    """Run evaluate; (exit code, stdout, stderr, the metrics.json it wrote or None)."""
    folders = set((run / "eval").glob("*")) if (run / "eval").exists() else set()
    code, out, err = command(evaluate, f"run={run}", *argv, capsys=capsys)
    new = set((run / "eval").glob("*")) - folders if (run / "eval").exists() else set()
    assert len(new) <= 1
    written = json.loads((new.pop() / "metrics.json").read_text()) if new else None
    return code, out, err, written


# -- evaluate -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mlp", "linreg", "cnn"])
def test_evaluate_reproduces_the_test_metrics_the_run_logged(runs, kind, capsys):
    code, out, err, evaluated = evaluate_run(runs[kind], capsys=capsys)
    assert code == 0, err
    logged = json.loads((runs[kind] / "metrics.json").read_text())
    expected = {name: value for name, value in logged.items() if name.startswith("test/")}
    assert evaluated.keys() == expected.keys()
    for name, value in expected.items():
        assert evaluated[name] == pytest.approx(value, abs=1e-6), name
    assert "test split" in out and "best.ckpt" in out
    # And what they mean: scikit-learn's metrics of the best checkpoint's predictions on
    # the raw test rows, against the raw labels or targets. Tight: on the stratified digits
    # split, macro F1 is only 7e-5 from accuracy (micro F1).
    assert evaluated == pytest.approx(sklearn_test_metrics(runs[kind]), rel=1e-6, abs=1e-6)


def sklearn_test_metrics(run) -> dict[str, float]:
    """The test split's metrics computed with scikit-learn, not with dlbasics' own code."""
    import torch
    from sklearn import metrics

    x, y, _ = raw_test_split(run)
    trained = evaluate.open_run(run).load("best")
    with torch.no_grad():
        output = trained.raw_feature_model()(torch.from_numpy(x.astype(np.float32)))
    output = output.numpy().astype(np.float64)
    if trained.task == "classification":  # probabilities of each class
        predicted, output = output.argmax(axis=1), output / output.sum(axis=1, keepdims=True)
        return {
            "test/loss": metrics.log_loss(y, output, labels=range(output.shape[1])),
            "test/acc": metrics.accuracy_score(y, predicted),
            "test/f1": metrics.f1_score(y, predicted, average="macro"),
        }
    std = np.asarray(trained.module.hparams.data["target_scaling"]["std"])  # linreg's
    return {
        "test/loss": metrics.mean_squared_error(y / std, output / std),  # standard units
        "test/mse": metrics.mean_squared_error(y, output),
        "test/mae": metrics.mean_absolute_error(y, output),
        "test/r2": metrics.r2_score(y, output),
    }


def test_evaluate_on_new_csv_rows_uses_the_runs_training_scaling(runs, tmp_path, capsys):
    new = penguin_like(90, seed=7)[["species", "mass_g", "bill_mm"]]  # other column order
    new.to_csv(tmp_path / "new.csv", index=False)
    code, out, err, metrics = evaluate_run(
        runs["mlp"], f"data.path={tmp_path / 'new.csv'}", capsys=capsys
    )
    assert code == 0, err
    assert "all 90 rows" in out and "training statistics" in out
    assert metrics["eval/acc"] > 0.9


def test_evaluate_on_noisier_generated_data_sees_the_noise(runs, capsys):
    # y = x.[2, -3.5] + 5 + noise: a model that learned the line has an error of about noise².
    code, out, err, metrics = evaluate_run(runs["linreg"], "data.noise=3", capsys=capsys)
    assert code == 0, err
    assert 9 * 0.7 < metrics["eval/mse"] < 9 * 1.3


def test_evaluate_scores_a_few_rows_of_one_class(runs, tmp_path, capsys):
    # Fresh labelled rows are scored as they are: no training split is tried on them.
    new = penguin_like(12, seed=5)
    new[new.species == "Gentoo"].to_csv(tmp_path / "gentoo.csv", index=False)
    code, out, err, metrics = evaluate_run(
        runs["mlp"], f"data.path={tmp_path / 'gentoo.csv'}", capsys=capsys
    )
    assert code == 0, err
    assert "all 4 rows" in out
    assert metrics["eval/acc"] == 1.0


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (lambda f: f.drop(columns="mass_g"), "mass_g"),
        (lambda f: f.assign(species=f.species.replace("Gentoo", "Emperor")), "'Emperor'"),
        (lambda f: f.assign(species=f.species.mask(f.index == 4, "Emperor")), "'Emperor'"),
    ],
    ids=["missing-feature", "unknown-class", "one-unknown-row"],
)
def test_evaluate_refuses_mismatched_data_in_one_line(runs, tmp_path, frame, message, capsys):
    frame(penguin_like(30, seed=3)).to_csv(tmp_path / "other.csv", index=False)
    code, out, err, written = evaluate_run(
        runs["mlp"], f"data.path={tmp_path / 'other.csv'}", capsys=capsys
    )
    assert code == 2
    assert err.startswith("Error: ") and err.count("\n") == 1 and message in err
    assert written is None  # nothing written


# -- predict ------------------------------------------------------------------------------


def test_predict_names_classes_and_carries_other_columns_through(runs, tmp_path, capsys):
    rows = penguin_like(120, seed=11)
    rows.drop(columns="species").to_csv(tmp_path / "unlabelled.csv", index=False)
    output = tmp_path / "predictions.csv"
    code, out, err = command(
        predict, f"run={runs['mlp']}", f"input={tmp_path / 'unlabelled.csv'}",
        f"output={output}", capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    result = pd.read_csv(output, dtype={"id": str})
    assert len(result) == 120 and list(result["id"]) == list(rows["id"])  # "00007" stays
    assert set(result["predicted_species"]) <= set(SPECIES)
    probabilities = result[[f"probability_{name}" for name in SPECIES]].to_numpy()
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert (result["predicted_species"] == rows["species"]).mean() > 0.9
    assert "Predicted 120 rows" in out


def test_predict_regression_in_the_targets_own_units(runs, tmp_path, capsys):
    x, y, _ = raw_test_split(runs["linreg"])
    pd.DataFrame(x, columns=["x1", "x2"]).to_csv(tmp_path / "in.csv", index=False)
    code, _, err = command(
        predict, f"run={runs['linreg']}", f"input={tmp_path / 'in.csv'}",
        f"output={tmp_path / 'out.csv'}", capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    predicted = pd.read_csv(tmp_path / "out.csv")["predicted_y"].to_numpy()
    # The true line, in the data's units: the target was standardised for training (mean 5,
    # spread about 4), so predictions left in standard units would be several units off.
    assert np.abs(predicted - (x @ [2.0, -3.5] + 5.0)).max() < 1.0


def test_predict_reads_and_writes_in_chunks(runs, tmp_path, monkeypatch, capsys):
    penguin_like(1000, seed=5).to_csv(tmp_path / "big.csv", index=False)
    whole = tmp_path / "whole.csv"
    command(predict, f"run={runs['mlp']}", f"input={tmp_path / 'big.csv'}",
            f"output={whole}", capsys=capsys)  # fmt: skip
    sizes = []
    original = predict.features_of
    monkeypatch.setattr(predict, "CHUNK_ROWS", 128)
    monkeypatch.setattr(
        predict, "features_of", lambda frame, *a: sizes.append(len(frame)) or original(frame, *a)
    )
    chunked = tmp_path / "chunked.csv"
    code, _, err = command(predict, f"run={runs['mlp']}", f"input={tmp_path / 'big.csv'}",
                           f"output={chunked}", capsys=capsys)  # fmt: skip
    assert code == 0, err
    assert max(sizes) == 128 and sum(sizes) == 1000
    assert chunked.read_text() == whole.read_text()  # one header, same rows


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda f: f.drop(columns="bill_mm"), "missing feature column(s) 'bill_mm'"),
        (lambda f: f.assign(mass_g=f.mass_g.astype(object).where(f.index != 700, "heavy")),
         "row 701 (line 702), column 'mass_g' holds 'heavy'"),
        (lambda f: f.assign(bill_mm=f.bill_mm.where(f.index != 650)),
         "row 651 (line 652), column 'bill_mm' is empty"),
    ],
    ids=["missing-column", "non-numeric", "nan"],
)  # fmt: skip
def test_predict_stops_at_a_bad_row_and_leaves_nothing(runs, tmp_path, spoil, message,
                                                      monkeypatch, capsys):  # fmt: skip
    monkeypatch.setattr(predict, "CHUNK_ROWS", 256)  # the bad row is in a later chunk
    spoil(penguin_like(800, seed=2)).to_csv(tmp_path / "bad.csv", index=False)
    output = tmp_path / "out" / "predictions.csv"
    code, _, err = command(predict, f"run={runs['mlp']}", f"input={tmp_path / 'bad.csv'}",
                           f"output={output}", capsys=capsys)  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not output.exists()
    assert not any(output.parent.glob("*")) if output.parent.exists() else True


# -- export -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mlp", "linreg", "cnn"])
@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_export_agrees_with_the_checkpoint_on_raw_features(runs, kind, fmt, capsys):
    code, out, err = command(export, f"run={runs[kind]}", f"format={fmt}", capsys=capsys)
    assert code == 0, err
    file = runs[kind] / "export" / f"best.{fmt}"
    about = json.loads(file.with_name(f"best.{fmt}.json").read_text())
    assert not list(file.parent.glob("*.data"))  # one self-contained file
    if fmt == "onnx":  # what made and checked it
        import onnxruntime
        import onnxscript

        assert about["versions"]["onnxruntime"] == onnxruntime.__version__
        assert about["versions"]["onnxscript"] == onnxscript.__version__
    assert "largest difference" in out and "absolute" in out and "relative" in out

    x, _, datamodule = raw_test_split(runs[kind])
    assert about["feature_names"] == (datamodule.feature_names or ["x1", "x2"])
    assert about["class_names"] == datamodule.class_names
    shipped = export.load_exported(file)
    trained = evaluate.open_run(runs[kind]).load()
    import torch

    with torch.no_grad():
        expected = trained.raw_feature_model()(torch.from_numpy(x.astype(np.float32))).numpy()
    for rows in (x[:1], x[:7], x):  # any batch size
        assert np.abs(shipped(rows.astype(np.float32)) - expected[: len(rows)]).max() <= 1e-5
    # The same predictions as the checkpoint's own raw-row path (used by the figures).
    own = trained.module.predict_raw(x).numpy()
    if trained.task == "classification":  # probabilities, whose argmax is the class
        assert np.allclose(expected.sum(axis=1), 1, atol=1e-5)
        assert np.array_equal(expected.argmax(1), own)
    else:  # values in the target's own units
        assert np.abs(expected - own).max() <= 1e-5


def test_predict_runs_an_exported_onnx_model_without_torch(runs, tmp_path, capsys):
    command(export, f"run={runs['mlp']}", "format=onnx", capsys=capsys)
    penguin_like(50, seed=4).to_csv(tmp_path / "in.csv", index=False)
    script = (
        "import sys; from dlbasics.cli import commands; from dlbasics.using import predict; "
        "commands.run(predict.main, '', sys.argv[1:]); print('torch' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, f"model={runs['mlp'] / 'export' / 'best.onnx'}",
         f"input={tmp_path / 'in.csv'}", f"output={tmp_path / 'onnx.csv'}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("False")  # onnxruntime alone
    command(predict, f"run={runs['mlp']}", f"input={tmp_path / 'in.csv'}",
            f"output={tmp_path / 'torch.csv'}", capsys=capsys)  # fmt: skip
    onnx, torch_ = pd.read_csv(tmp_path / "onnx.csv"), pd.read_csv(tmp_path / "torch.csv")
    assert list(onnx["predicted_species"]) == list(torch_["predicted_species"])
    columns = [f"probability_{name}" for name in SPECIES]
    assert np.abs(onnx[columns].to_numpy() - torch_[columns].to_numpy()).max() <= 1e-5


def test_export_without_the_extra_names_it(runs, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnxruntime" else real(name, *a),
    )
    code, _, err = command(export, f"run={runs['linreg']}", "format=onnx", capsys=capsys)
    assert code == 2 and "pip install 'dlbasics[export]'" in err and err.count("\n") == 1


# -- bad runs and checkpoints -------------------------------------------------------------


def test_bad_runs_and_checkpoints_are_one_line_each(runs, tmp_path, capsys):
    broken = tmp_path / "broken"
    (broken / ".hydra").mkdir(parents=True)
    (broken / ".hydra" / "config.yaml").write_text(
        (runs["mlp"] / ".hydra" / "config.yaml").read_text()
    )
    (broken / "data.json").write_text((runs["mlp"] / "data.json").read_text())
    (broken / "checkpoints").mkdir()
    whole = (runs["mlp"] / "checkpoints" / "best.ckpt").read_bytes()
    (broken / "checkpoints" / "best.ckpt").write_bytes(whole[: len(whole) // 2])
    penguin_like(10, seed=1).to_csv(tmp_path / "in.csv", index=False)
    empty = tmp_path / "empty"  # a run stopped before its first checkpoint
    shutil.copytree(broken, empty, ignore=shutil.ignore_patterns("*.ckpt"))
    cases = [
        (evaluate, [f"run={tmp_path / 'nowhere'}"], "no such directory"),
        (evaluate, [f"run={tmp_path}"], "not a run directory"),
        (evaluate, [f"run={runs['mlp']}", "ckpt=last"], None),  # fine: last exists
        (evaluate, [f"run={runs['mlp']}", f"ckpt={tmp_path / 'x.ckpt'}"], "no such file"),
        (evaluate, [f"run={runs['mlp']}", f"ckpt={runs['cnn'] / 'checkpoints' / 'best.ckpt'}"],
         "trained on other data than run="),
        (evaluate, [f"run={broken}"], "cannot be read as a checkpoint"),
        (evaluate, [f"run={empty}"], "no checkpoint in the run"),
        (predict, [f"run={empty}", f"input={tmp_path / 'in.csv'}"], "no checkpoint in the run"),
        (export, [f"run={empty}"], "no checkpoint in the run"),
        (predict, [f"run={broken}", f"input={tmp_path / 'in.csv'}"], "cannot be read"),
        (export, [f"run={broken}", "format=pt2"], "cannot be read as a checkpoint"),
        (export, [f"run={runs['mlp']}", "format=torchscript"], "choose one of onnx, pt2"),
        (predict, [f"run={runs['mlp']}", "input=missing.csv"], "no such file"),
        (evaluate, [f"run={runs['mlp']}", "model.hidden_sizes=[4]"], "unknown key 'model.hidden_sizes'"),
        (evaluate, [f"run={runs['mlp']}", "data.pth=x.csv"], "Did you mean data.path?"),
        (evaluate, [f"run={runs['mlp']}", "data.test_fraction=0.5"], "the run's own test split"),
        (predict, [f"input={tmp_path / 'in.csv'}"], "give run=<run dir>"),
        (predict, [f"model={tmp_path / 'in.csv'}", "ckpt=last", f"input={tmp_path / 'in.csv'}"],
         "ckpt= picks a checkpoint of run="),
    ]  # fmt: skip
    (broken / "checkpoints" / "last.ckpt").unlink(missing_ok=True)
    for module, argv, message in cases:
        code, _, err = command(module, *argv, capsys=capsys)
        if message is None:
            assert code == 0, err
            continue
        assert code == 2 and err.startswith("Error: ") and err.count("\n") == 1, (argv, err)
        assert message in err, (argv, err)
    assert sorted(p.name for p in broken.iterdir()) == [
        ".hydra",
        "checkpoints",
        "data.json",
    ]  # nothing added


@pytest.mark.parametrize("name", ["evaluate", "predict", "export"])
def test_help_answers_without_importing_torch(name):
    script = (
        f"import sys; from dlbasics.cli import commands; from dlbasics.using import {name} as m; "
        "commands.run(m.main, m.__doc__, ['--help']); print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0 and "run=" in done.stdout
    assert done.stdout.strip().endswith("False")


# -- the README's commands, as a user types them ----------------------------------------------


def readme_use_commands() -> list[str]:
    """The README's ``RUN=...`` line and its evaluate/predict/export commands, in order."""
    from conftest import ROOT

    lines = (ROOT / "README.md").read_text().splitlines()
    starts = ("RUN=", *(f"python -m dlbasics.{c} " for c in ("evaluate", "predict", "export")))
    return [line.split(" #")[0].strip() for line in lines if line.startswith(starts)]


@pytest.mark.slow
def test_the_readme_commands_use_a_run_end_to_end(fit, tmp_path, capsys):
    # Each README command runs in this process, as its `python -m` entry point runs it
    # (commands.run: its exit code); the processes themselves are tested above (--help,
    # onnx without torch). The fit fixture runs from tmp_path, where the README's relative
    # paths are.
    from test_runs_apart import write_houses

    entry_points = {"dlbasics.evaluate": evaluate, "dlbasics.predict": predict,
                    "dlbasics.export": export}  # fmt: skip
    commands_ = readme_use_commands()
    assert commands_[0].startswith("RUN=") and len(commands_) == 6
    write_houses(tmp_path)
    houses = pd.read_csv(tmp_path / "houses.csv")
    houses.sample(40, random_state=1).to_csv(tmp_path / "new_houses.csv", index=False)
    fit("data=csv", "data.path=houses.csv", "data.target=price", "model=linreg",
        "data.standardize_target=true", "optimizer.lr=0.05")  # fmt: skip
    (run,) = (tmp_path / "outputs" / "train" / "runs").iterdir()
    for line in commands_[1:]:
        argv = line.replace("$RUN", str(run)).split()
        assert argv[:2] == ["python", "-m"] and argv[2] in entry_points, line
        code, out, err = command(entry_points[argv[2]], *argv[3:], capsys=capsys)
        assert code == 0, (line, out[-1500:], err[-1500:])
    logged = json.loads((run / "metrics.json").read_text())
    first, other = sorted((run / "eval").iterdir())
    assert json.loads((first / "metrics.json").read_text())["test/r2"] == pytest.approx(
        logged["test/r2"], abs=1e-6
    )
    assert json.loads((other / "metrics.json").read_text())["eval/r2"] > 0.9
    torch_, onnx = pd.read_csv(tmp_path / "predictions.csv"), pd.read_csv(tmp_path / "onnx.csv")
    assert len(torch_) == 40 and list(torch_["price"]) == list(onnx["price"])
    assert np.allclose(torch_["predicted_price"], onnx["predicted_price"], rtol=1e-5)


def test_a_runs_relative_csv_path_is_found_from_another_folder(runs, tmp_path, monkeypatch):
    # Trained from `started/` with data.path=penguins.csv; used later from anywhere else.
    run = tmp_path / "run"
    shutil.copytree(runs["mlp"], run)
    config = OmegaConf.load(run / ".hydra" / "config.yaml")
    config.data.path = "penguins.csv"
    OmegaConf.save(config, run / ".hydra" / "config.yaml")
    (tmp_path / "started").mkdir()
    shutil.copy(runs["mlp"].parent / "penguins.csv", tmp_path / "started")
    OmegaConf.save({"hydra": {"runtime": {"cwd": str(tmp_path / "started")}}},
                   run / ".hydra" / "hydra.yaml")  # fmt: skip
    monkeypatch.chdir(tmp_path)
    assert evaluate.open_run(run).config.data.path == str(tmp_path / "started" / "penguins.csv")


@pytest.mark.parametrize("sep", [",", ";"])
def test_predict_keeps_each_input_line_as_it_was(runs, tmp_path, sep, capsys):
    lines = [
        sep.join(["id", "owner", "mass_g", "bill_mm"]),
        sep.join(["00012", '"Smith, J; Jr"', "3.75e3", "39.10"]),
        "",  # a blank line is skipped
        sep.join(["00013", "Lee", "5600", "50.2"]),
    ]
    (tmp_path / "in.csv").write_text("\r\n".join(lines) + "\r\n")
    output = tmp_path / "out.csv"
    code, _, err = command(predict, f"run={runs['mlp']}", f"input={tmp_path / 'in.csv'}",
                           f"output={output}", capsys=capsys)  # fmt: skip
    assert code == 0, err
    written = output.read_text().splitlines()
    assert len(written) == 3
    for original, line in zip([lines[0], lines[1], lines[3]], written, strict=True):
        assert line.startswith(original + sep)  # the input's bytes, then the predictions
    assert written[0].endswith(
        sep.join(["predicted_species"] + [f"probability_{s}" for s in SPECIES])
    )
    assert written[2].split(sep)[4] == "Gentoo"  # heavy, long bill

    bad = lines[:3] + [sep.join(["00014", "Kim", "", "41.0"])]
    (tmp_path / "bad.csv").write_text("\n".join(bad) + "\n")
    code, _, err = command(predict, f"run={runs['mlp']}", f"input={tmp_path / 'bad.csv'}",
                           f"output={output}", capsys=capsys)  # fmt: skip
    # The row after the blank line is row 2, on line 4.
    assert code == 2 and "row 2 (line 4), column 'mass_g' is empty" in err, err


def test_predict_refuses_a_value_spanning_lines(runs, tmp_path, capsys):
    (tmp_path / "in.csv").write_text('note,mass_g,bill_mm\n"two\nlines",3700,39.0\n')
    output = tmp_path / "out.csv"
    code, _, err = command(predict, f"run={runs['mlp']}", f"input={tmp_path / 'in.csv'}",
                           f"output={output}", capsys=capsys)  # fmt: skip
    assert code == 2 and "spans lines" in err and not output.exists()


def test_evaluate_refuses_data_with_another_feature_count(runs, capsys):
    code, _, err = command(evaluate, f"run={runs['linreg']}", "data.weights=[1,2,3]", capsys=capsys)
    assert code == 2 and "samples shaped (3,)" in err and "(2,)" in err, err


def test_an_export_that_disagrees_fails_and_keeps_nothing(runs, monkeypatch, capsys):
    monkeypatch.setattr(export, "TOLERANCE", -1.0)  # no difference can pass
    folder = runs["mlp"] / "export"
    before = sorted(folder.iterdir()) if folder.exists() else []
    code, _, err = command(export, f"run={runs['mlp']}", "format=pt2", capsys=capsys)
    assert code == 1 and "nothing was kept" in err, err
    assert (sorted(folder.iterdir()) if folder.exists() else []) == before


def test_evaluates_split_keys_are_the_datamodules_own():
    import inspect

    from dlbasics.data.base import InMemoryDataModule

    arguments = set(inspect.signature(InMemoryDataModule.__init__).parameters) - {"self", "task"}
    assert set(evaluate.SPLIT_KEYS) == arguments


def test_predict_numbers_rows_by_their_lines_across_chunks(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(predict, "CHUNK_ROWS", 4)
    lines = ["mass_g,bill_mm", "3700,39", "", "", "3400,45", "5000,50", "4000,41", "3600,40",
             "3650,39", "4100,oops"]  # fmt: skip
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    code, _, err = command(predict, f"run={runs['mlp']}", f"input={tmp_path / 'in.csv'}",
                           f"output={tmp_path / 'out.csv'}", capsys=capsys)  # fmt: skip
    # Two blank lines in the first chunk: the 7th row is on line 10.
    assert code == 2 and "row 7 (line 10), column 'bill_mm' holds 'oops'" in err, err


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["3700,39,1", "3400,45,2"], "row 1 (line 2) has 3 fields, but the header names 2"),
        (["3700,39", "3400,45,"], "row 2 (line 3) has 3 fields"),
        (["3700,39", "3400"], "row 2 (line 3) has 1 fields"),
        (["3700,39", '"3400,45', "3500,44"], "a quote is not closed, near row 1 (line 2)"),
    ],
    ids=["all-longer", "trailing-separator", "shorter", "open-quote"],
)
def test_predict_refuses_rows_that_do_not_match_the_header(runs, tmp_path, rows, message, capsys):
    (tmp_path / "in.csv").write_text("\n".join(["mass_g,bill_mm", *rows]) + "\n")
    code, _, err = command(predict, f"run={runs['mlp']}", f"input={tmp_path / 'in.csv'}",
                           f"output={tmp_path / 'out.csv'}", capsys=capsys)  # fmt: skip
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out.csv").exists()


def test_ctrl_c_while_predicting_leaves_nothing(runs, tmp_path, monkeypatch):
    monkeypatch.setattr(predict, "CHUNK_ROWS", 50)
    penguin_like(200, seed=9).to_csv(tmp_path / "in.csv", index=False)
    calls = []
    original = predict.features_of

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args)

    monkeypatch.setattr(predict, "features_of", interrupted)
    with pytest.raises(KeyboardInterrupt):
        predict.main([f"run={runs['mlp']}", f"input={tmp_path / 'in.csv'}",
                      f"output={tmp_path / 'out' / 'p.csv'}"])  # fmt: skip
    assert list((tmp_path / "out").iterdir()) == []  # neither the output nor a partial file


def test_predict_with_an_exported_regression_model(runs, tmp_path, capsys):
    command(export, f"run={runs['linreg']}", "format=onnx", capsys=capsys)
    x, _, _ = raw_test_split(runs["linreg"])
    pd.DataFrame(x, columns=["x1", "x2"]).to_csv(tmp_path / "in.csv", index=False)
    for source, name in ((f"run={runs['linreg']}", "torch"),
                         (f"model={runs['linreg'] / 'export' / 'best.onnx'}", "onnx")):  # fmt: skip
        code, _, err = command(predict, source, f"input={tmp_path / 'in.csv'}",
                               f"output={tmp_path / name}.csv", capsys=capsys)  # fmt: skip
        assert code == 0, err
    torch_, onnx = (pd.read_csv(tmp_path / f"{n}.csv") for n in ("torch", "onnx"))
    assert np.abs(torch_["predicted_y"] - onnx["predicted_y"]).max() <= 1e-5


@pytest.mark.parametrize("module", [evaluate, predict, export])
def test_a_truncated_checkpoint_points_to_the_runs_intact_one(runs, module, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs["mlp"], run, ignore=shutil.ignore_patterns("export", "eval"))
    best = run / "checkpoints" / "best.ckpt"
    best.write_bytes(best.read_bytes()[:100])
    penguin_like(10, seed=2).to_csv(tmp_path / "in.csv", index=False)
    argv = [f"run={run}", f"input={tmp_path / 'in.csv'}"] if module is predict else [f"run={run}"]
    code, _, err = command(module, *argv, capsys=capsys)
    assert code == 2 and err.count("\n") == 1, err
    # Not "ckpt=...": the user did not type it; the whole reason, then the way out.
    assert err.startswith(f"Error: run={run}: its checkpoints/best.ckpt cannot be read"), err
    assert err.rstrip().endswith("The run's last.ckpt is intact: use it with ckpt=last"), err
    code, _, err = command(module, *argv, "ckpt=last", capsys=capsys)
    assert code == 0, err
