"""Offer uplift: T-, offset T- and X-learners over LightGBM on the randomised campaign experiment; registry.

An offer's effect is the absolute reduction in P(churn over the horizon) when it is sent now (positive helps).
T-learner: one churn classifier per arm (control and each offer type); effect = P(churn | control) - P(churn | offer).
Offset T-learner: each offer's classifier is boosted from the control classifier's log-odds, so it learns only how
the offer shifts churn (little data per offer: the shift shrinks to none unless the data shows one).
X-learner (Kuenzel et al. 2019): imputed effects from the other arm's classifier, a regressor per arm on them, the
two blended by the share of the offer's arm. The learner is chosen by mean Qini coefficient on validation customers,
then its effects are shrunk toward each offer's randomised average by how much the validation customers' outcomes
bear them out (uplift_calibration.py), so the retention plan's expected value is not inflated by noise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from scipy.special import expit, logit

from features.tables.store import fingerprint
from patron.config import Settings, UpliftConfig
from training.mlops import registry, tracking
from training.value.uplift_calibration import EffectCalibration, fit_calibration, randomised_ate
from training.value.uplift_data import CONTROL, ID_COLUMNS, LABEL, TREATMENT, customer_split, experiment, offer_types
from training.value.uplift_eval import effect_metrics, qini_coefficient

MODEL = "uplift"
LEARNER_NAMES = {"t": "T-learner", "offset": "offset T-learner", "x": "X-learner"}
_META = "uplift.json"


def feature_matrix(frame: pd.DataFrame) -> pd.DataFrame:
    """The model inputs of an experiment frame (ids, treatment, label and split dropped)."""
    return frame.drop(columns=[c for c in (*ID_COLUMNS, TREATMENT, LABEL, "split") if c in frame])


@dataclass
class UpliftModel:
    """Per-offer effects on P(churn): boosters of the chosen meta-learner and what they need to predict."""

    learner: str
    offer_types: list[str]
    feature_names: list[str]
    categories: dict[str, list[str]]
    control: lgb.Booster
    treated: dict[str, lgb.Booster]
    effect_models: dict[str, tuple[lgb.Booster, lgb.Booster]] = field(default_factory=dict)  # X: (on control, on k)
    propensity: dict[str, float] = field(default_factory=dict)  # X: share of offer k among (k, control) rows
    calibration: EffectCalibration | None = None  # shrinkage of the effects (None: the learner's own)

    def _inputs(self, features: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.feature_names if c not in features]
        if missing:
            raise ValueError(f"features: missing column(s) {missing}")
        X = features[self.feature_names].copy()
        for col, levels in self.categories.items():  # JSON round trips lose the category dtype LightGBM needs
            X[col] = pd.Categorical(X[col].astype(object).where(X[col].notna(), None), categories=levels)
        return X

    def baseline(self, features: pd.DataFrame) -> pd.Series:
        """P(churn over the horizon) with no offer, indexed like `features`."""
        return pd.Series(self.control.predict(self._inputs(features)), index=features.index, name="p_churn")

    def effects(self, features: pd.DataFrame) -> pd.DataFrame:
        """Estimated absolute reduction in P(churn) per offer type (positive = the offer helps), indexed like input;
        calibrated when the model carries a calibration."""
        raw = self.raw_effects(features)
        return raw if self.calibration is None else self.calibration.apply(raw)

    def raw_effects(self, features: pd.DataFrame) -> pd.DataFrame:
        """The meta-learner's own effects, before calibration."""
        X = self._inputs(features)
        out = {}
        if self.learner == "t":
            p0 = self.control.predict(X)
            for k in self.offer_types:
                out[k] = p0 - self.treated[k].predict(X)
        elif self.learner == "offset":
            p0 = self.control.predict(X)
            for k in self.offer_types:
                out[k] = p0 - expit(logit(p0) + self.treated[k].predict(X, raw_score=True))
        else:
            for k in self.offer_types:
                on_control, on_treated = self.effect_models[k]
                g = self.propensity[k]
                out[k] = g * on_control.predict(X) + (1 - g) * on_treated.predict(X)
        return pd.DataFrame(out, index=features.index, columns=self.offer_types).astype(float)

    def save(self, folder: Path) -> Path:
        """Write the boosters as LightGBM model text plus a JSON description into `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        boosters = {"control": self.control, **{f"treated_{k}": b for k, b in self.treated.items()}}
        for k, (b0, b1) in self.effect_models.items():
            boosters[f"effect_control_{k}"], boosters[f"effect_treated_{k}"] = b0, b1
        for name, booster in boosters.items():
            booster.save_model(str(folder / f"{name}.txt"))
        meta = {
            "learner": self.learner,
            "offer_types": self.offer_types,
            "feature_names": self.feature_names,
            "categories": self.categories,
            "propensity": self.propensity,
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "boosters": sorted(boosters),
        }
        (folder / _META).write_text(json.dumps(meta, indent=1))
        return folder

    @classmethod
    def load(cls, folder: Path) -> UpliftModel:
        """The model written by `save`."""
        meta = json.loads((folder / _META).read_text())
        b = {name: lgb.Booster(model_file=str(folder / f"{name}.txt")) for name in meta["boosters"]}
        types = meta["offer_types"]
        effect = {k: (b[f"effect_control_{k}"], b[f"effect_treated_{k}"]) for k in types if f"effect_control_{k}" in b}
        return cls(
            meta["learner"],
            types,
            meta["feature_names"],
            meta["categories"],
            b["control"],
            {k: b[f"treated_{k}"] for k in types},
            effect,
            meta["propensity"],
            EffectCalibration.from_dict(meta["calibration"]) if meta.get("calibration") else None,
        )


def _train(
    params: dict,
    X: pd.DataFrame,
    y: np.ndarray,
    Xv: pd.DataFrame,
    yv: np.ndarray,
    cfg: UpliftConfig,
    offset: lgb.Booster | None = None,
) -> lgb.Booster:
    """LightGBM early-stopped on the validation customers' rows of the same arm (fixed rounds when there are none).

    With `offset`, boosting starts from that classifier's log-odds (the booster learns the shift from it).
    """
    params = {**params, "seed": cfg.seed, "deterministic": True, "force_row_wise": True}

    def init(data: pd.DataFrame) -> np.ndarray | None:
        return None if offset is None or len(data) == 0 else offset.predict(data, raw_score=True)

    dtrain = lgb.Dataset(X, y, init_score=init(X))
    if len(Xv) == 0:
        return lgb.train(params, dtrain, cfg.num_boost_round // 4)
    dvalid = lgb.Dataset(Xv, yv, reference=dtrain, init_score=init(Xv))
    return lgb.train(
        params,
        dtrain,
        cfg.num_boost_round,
        valid_sets=[dvalid],
        callbacks=[lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)],
    )


def fit_learners(train: pd.DataFrame, valid: pd.DataFrame, cfg: UpliftConfig) -> dict[str, UpliftModel]:
    """The configured meta-learners fitted on `train`, early-stopped on `valid` (rows of other customers)."""
    types = offer_types(train)
    X, Xv = feature_matrix(train), feature_matrix(valid)
    y, yv = train[LABEL].to_numpy(int), valid[LABEL].to_numpy(int)
    arm, arm_v = train[TREATMENT].to_numpy(), valid[TREATMENT].to_numpy()
    categories = {
        c: [str(v) for v in X[c].cat.categories] for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)
    }

    def classifier(a: str) -> lgb.Booster:
        return _train(cfg.classifier_params, X[arm == a], y[arm == a], Xv[arm_v == a], yv[arm_v == a], cfg)

    control = classifier(CONTROL)
    treated = {k: classifier(k) for k in types} if {"t", "x"} & set(cfg.learners) else {}
    base = dict(
        offer_types=types, feature_names=list(X.columns), categories=categories, control=control, treated=treated
    )
    models = {}
    if "t" in cfg.learners:
        models["t"] = UpliftModel("t", **base)
    if "offset" in cfg.learners:
        shifts = {
            k: _train(
                cfg.classifier_params, X[arm == k], y[arm == k], Xv[arm_v == k], yv[arm_v == k], cfg, offset=control
            )
            for k in types
        }
        models["offset"] = UpliftModel("offset", **{**base, "treated": shifts})
    if "x" in cfg.learners:
        effect, propensity = {}, {}
        c, cv = arm == CONTROL, arm_v == CONTROL
        for k in types:
            t, tv = arm == k, arm_v == k
            # Imputed reductions in churn: control rows y - mu_k(x); offer-k rows mu_0(x) - y.
            on_control = _train(
                cfg.regressor_params,
                X[c],
                y[c] - treated[k].predict(X[c]),
                Xv[cv],
                yv[cv] - treated[k].predict(Xv[cv]),
                cfg,
            )
            on_treated = _train(
                cfg.regressor_params, X[t], control.predict(X[t]) - y[t], Xv[tv], control.predict(Xv[tv]) - yv[tv], cfg
            )
            effect[k] = (on_control, on_treated)
            propensity[k] = float(t.sum() / (t.sum() + c.sum()))
        models["x"] = UpliftModel("x", **base, effect_models=effect, propensity=propensity)
    return models


def mean_qini(model: UpliftModel, rows: pd.DataFrame, bins: int) -> float:
    """Mean over offer types of the Qini coefficient on `rows` (each type's treated rows against control)."""
    est = model.effects(feature_matrix(rows))
    retained = 1 - rows[LABEL].to_numpy(int)
    scores = []
    for k in model.offer_types:
        keep = rows[TREATMENT].isin([k, CONTROL]).to_numpy()
        scores.append(
            qini_coefficient(est[k].to_numpy()[keep], (rows[TREATMENT] == k).to_numpy()[keep], retained[keep], bins)
        )
    return float(np.mean(scores))


@dataclass
class UpliftFit:
    """The split experiment, the chosen model and every candidate's validation Qini."""

    frame: pd.DataFrame
    model: UpliftModel
    valid_qini: dict[str, float]

    def rows(self, split: str) -> pd.DataFrame:
        """The experiment rows of one split (train, valid or test)."""
        return self.frame[self.frame["split"] == split]


def fit_uplift(settings: Settings, frame: pd.DataFrame | None = None) -> UpliftFit:
    """Build (or take) the experiment, split customers, fit the learners and choose one on validation customers."""
    cfg = settings.uplift
    frame = experiment(settings) if frame is None else frame
    frame = frame.assign(split=customer_split(frame["customer_id"], cfg))
    train, valid = frame[frame["split"] == "train"], frame[frame["split"] == "valid"]
    models = fit_learners(train, valid, cfg)
    scores = {name: mean_qini(m, valid, cfg.qini_bins) for name, m in models.items()}
    best = max(scores, key=lambda name: scores[name])
    model = models[best]
    if cfg.calibrate_effects:
        model.calibration = fit_calibration(
            model.raw_effects(feature_matrix(train)), model.raw_effects(feature_matrix(valid)), valid
        )
    return UpliftFit(frame, model, scores)


class UpliftPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc around an UpliftModel: customer feature rows -> one effect column per offer type."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.model = UpliftModel.load(Path(context.artifacts["uplift"]))

    def predict(self, context: object, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """Estimated reduction in P(churn) per offer type."""
        return self.model.effects(model_input)


def _log_model(model: UpliftModel) -> str:
    """Log the model as a pyfunc in the active run (not registered); its model URI."""
    with TemporaryDirectory() as tmp:
        folder = model.save(Path(tmp) / "uplift")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=UpliftPyfunc(),
            artifacts={"uplift": str(folder)},
            pip_requirements=[
                f"lightgbm=={lgb.__version__}",
                f"pandas=={pd.__version__}",
                f"mlflow=={mlflow.__version__}",
            ],
        )
    return info.model_uri


def train_uplift(settings: Settings, frame: pd.DataFrame | None = None) -> tracking.TrainResult:
    """Fit on training customers, choose the learner on validation customers, evaluate on test ones, register.

    The first registered version becomes champion (there is none to compare with); later ones are left for review.
    """

    cfg = settings.uplift
    with tracking.patron_run(settings, MODEL, cfg) as run:
        fit = fit_uplift(settings, frame)
        tracking.log_dataset_digest(fit.frame, "uplift_experiment", "training")
        test = fit.rows("test")
        metrics = effect_metrics(
            fit.model.effects(feature_matrix(test)),
            test[TREATMENT].to_numpy(),
            test[LABEL].to_numpy(int),
            cfg.qini_bins,
        )
        metrics.update({f"valid_qini_{name}": v for name, v in fit.valid_qini.items()})
        mlflow.log_params(
            {
                "learner": fit.model.learner,
                "offer_types": ",".join(fit.model.offer_types),
                "campaign_days": fit.frame["cutoff"].nunique(),
                "horizon_days": settings.features.horizon_days,
            }
        )
        if fit.model.calibration is not None:
            metrics.update({f"calibration_slope_{k}": v for k, v in fit.model.calibration.slope.items()})
        train_rows = fit.rows("train")
        metrics.update({f"randomised_ate_{k}": randomised_ate(train_rows, k) for k in fit.model.offer_types})
        mlflow.log_metrics(metrics)
        fp = fingerprint(test)
        mlflow.set_tag(tracking.FINGERPRINT_TAG, fp)
        model_uri = _log_model(fit.model)
        # Registered last, tags included: a run killed before this line leaves no version behind.
        version = registry.register_version(
            settings, MODEL, model_uri, fp, "qini_best_offer", metrics["qini_best_offer"]
        )
        client = tracking.configure(settings)
        name, alias = settings.tracking.uplift_model, settings.tracking.champion_alias
        try:
            client.get_model_version_by_alias(name, alias)
        except MlflowException:
            client.set_registered_model_alias(name, alias, str(version))
        return tracking.TrainResult(MODEL, run.info.run_id, version, metrics)
