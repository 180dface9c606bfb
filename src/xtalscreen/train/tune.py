"""Hyperparameter and topology search with Optuna and Hyperband pruning.

Paper 002 searched DeepFreak's topology and learning hyperparameters with BOHB (Bayesian
optimisation + Hyperband). Here: Optuna's TPE sampler with :class:`optuna.pruners.HyperbandPruner`,
each trial reporting its validation accuracy after every epoch (the budget is epochs), so poor
configurations stop early. With ``storage`` (e.g. ``sqlite:///tune.db``) the study is saved as
it goes and a repeated call resumes it, running only the trials still missing.

Search space (:func:`suggest`): learning rate (log, 1e-4 .. 1), momentum (0.5 .. 0.99), weight
decay (log, 1e-5 .. 5e-5; paper 002 Table 10), batch size {8, 16, 32, 64}, optimizer schedule
kept from the base config, and the topology of the model: DeepFreak's variants 0-13 (Table 9),
ke2018's channel widths and first kernel, li2018's filters and hidden units, spotcount's channel
widths and number of detector maps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from xtalscreen.errors import ParameterError
from xtalscreen.train.datasets import LabelledSet
from xtalscreen.train.loop import TrainConfig, train

__all__ = ["suggest", "tune", "results_table"]

_WIDTHS = {"4-8-16-32": (4, 8, 16, 32), "8-16-32-64": (8, 16, 32, 64), "16-32-64-128": (16, 32, 64, 128)}
_SPOTCOUNT_WIDTHS = {"8-16-32-32": (8, 16, 32, 32), "8-16-32-64": (8, 16, 32, 64),
                     "16-32-48-48": (16, 32, 48, 48)}


def suggest(trial, base: TrainConfig) -> TrainConfig:
    """A training config for one Optuna trial (the search space of the module docstring)."""
    kw = dict(base.model_kwargs)
    if base.model == "deepfreak":
        kw["topology"] = trial.suggest_int("topology", 0, 13)
    elif base.model == "ke2018":
        kw["widths"] = _WIDTHS[trial.suggest_categorical("widths", list(_WIDTHS))]
        kw["first_kernel"] = trial.suggest_categorical("first_kernel", [5, 7, 9])
    elif base.model == "spotcount":
        kw["widths"] = _SPOTCOUNT_WIDTHS[trial.suggest_categorical("sc_widths", list(_SPOTCOUNT_WIDTHS))]
        kw["detectors"] = trial.suggest_categorical("detectors", [16, 32, 64])
    elif base.model == "li2018":
        kw["filters"] = trial.suggest_categorical("filters", [4, 8])
        kw["hidden"] = trial.suggest_categorical("hidden", [16, 32])
    return base.replace(
        model_kwargs=kw,
        lr=trial.suggest_float("lr", 1e-4, 1.0, log=True),
        momentum=trial.suggest_float("momentum", 0.5, 0.99),
        weight_decay=trial.suggest_float("weight_decay", 1e-5, 5e-5, log=True),
        batch_size=trial.suggest_categorical("batch_size", [8, 16, 32, 64]),
        lr_end=min(base.lr_end, 1e-3),
    )


def tune(data: LabelledSet, val: LabelledSet, *, base: TrainConfig, out_dir, n_trials: int = 20,
         storage: str | None = None, study_name: str = "xtalscreen-tune", seed: int = 0,
         echo: Callable[[str], None] | None = None):
    """Run (or resume) an Optuna study; every trial trains ``base.epochs`` epochs at most.

    Parameters
    ----------
    data, val : LabelledSet
        Training and validation items (the objective is the best validation accuracy).
    base : TrainConfig, keyword-only
        Fixed settings; :func:`suggest` varies the rest.
    out_dir : path, keyword-only
        ``trials/<number>/`` checkpoints, ``results.md`` and ``results.json``.
    n_trials : int, keyword-only
        Total trials wanted in the study (finished ones from an earlier run count).
    storage : str, keyword-only
        Optuna storage URL (``sqlite:///path.db``) to make the study resumable.

    Returns
    -------
    (optuna.Study, str)
        The study and the Markdown results table.
    """
    import optuna

    if int(n_trials) != n_trials or n_trials < 1:
        raise ParameterError(f"n_trials must be an integer >= 1, got {n_trials!r}")
    if val is None or not len(val):
        raise ParameterError("tuning needs a validation split (rows with split=val)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=study_name, storage=storage, load_if_exists=True, direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=base.epochs, reduction_factor=3))
    done = sum(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
               for t in study.trials)

    def objective(trial):
        cfg = suggest(trial, base)

        def report(epoch, metrics):
            trial.report(metrics.get("val_accuracy", 0.0), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        res = train(cfg, data, val=val, out_dir=out / "trials" / f"{trial.number:04d}", on_epoch=report,
                    progress=False)
        trial.set_user_attr("epochs", res.epochs_run)
        return res.best["val_accuracy"]

    def after(study_, trial):
        if echo is not None:
            v = "pruned" if trial.value is None else f"{trial.value:.4f}"
            echo(f"trial {trial.number}: {v}  {trial.params}")

    if n_trials - done > 0:
        study.optimize(objective, n_trials=n_trials - done, callbacks=[after],
                       catch=())
    table = results_table(study)
    (out / "results.md").write_text(table + "\n")
    rows = [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
             "epochs": len(t.intermediate_values)} for t in study.trials]
    best = None
    try:
        best = {"number": study.best_trial.number, "value": study.best_value, "params": study.best_params}
    except ValueError:
        pass
    (out / "results.json").write_text(json.dumps({"best": best, "trials": rows}, indent=1, default=str))
    return study, table


def results_table(study) -> str:
    """Markdown table of a study's trials, best first (pruned/failed after)."""
    trials = sorted(study.trials, key=lambda t: (t.value is None, -(t.value or 0.0), t.number))
    keys = sorted({k for t in trials for k in t.params})
    lines = ["| trial | state | val accuracy | epochs | " + " | ".join(keys) + " |",
             "|" + "---|" * (4 + len(keys))]
    for t in trials:
        vals = []
        for k in keys:
            v = t.params.get(k, "")
            vals.append(f"{v:.4g}" if isinstance(v, float) else str(v))
        acc = "–" if t.value is None else f"{t.value:.4f}"
        lines.append(f"| {t.number} | {t.state.name.lower()} | {acc} | {len(t.intermediate_values)} | "
                     + " | ".join(vals) + " |")
    return "\n".join(lines)
