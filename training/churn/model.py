"""The churn model: LightGBM booster, probability calibrator and feature schema in one object, logged as an MLflow
pyfunc whose `predict` returns calibrated churn probabilities."""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import sklearn
from mlflow.models import infer_signature
from mlflow.types import ColSpec, Schema
from mlflow.types.schema import AnyType

from patron.config import Settings
from training.churn.calibration import calibrated

ARTIFACT = "churn_model"  # the folder under a logged model's artifacts/ that holds the saved ChurnModel
OUTPUT_PARAM = "output"  # pyfunc param: "calibrated" (default) or "raw", the booster's own probabilities
_BOOSTER, _CALIBRATOR, _META = "booster.txt", "calibrator.pkl", "churn_model.json"


def categorical_columns(X: pd.DataFrame) -> list[str]:
    """The pandas category columns of a feature frame, in order (the ones LightGBM treats as categorical)."""
    return [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]


@dataclass(eq=False)
class ChurnModel:
    """Everything churn scoring needs: the booster, its calibrator (None: none) and its categorical columns.

    It answers LightGBM's `feature_name()` and `predict(X, **kwargs)` (calibrated unless asked for contributions,
    raw scores or leaves), so code written against a booster scores calibrated probabilities with it.
    """

    booster: lgb.Booster
    calibrator: Any = None
    categorical: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        levels = self.booster.pandas_categorical or []
        if len(self.categorical) != len(levels):
            raise ValueError(
                f"categorical columns {self.categorical} do not match the booster's {len(levels)} "
                "categorical feature(s)"
            )

    def feature_name(self) -> list[str]:
        """The booster's feature names, in training order."""
        return self.booster.feature_name()

    def predict(self, X: pd.DataFrame | np.ndarray, **kwargs: Any) -> np.ndarray:
        """LightGBM's Booster.predict on the feature columns: calibrated probabilities; with pred_contrib,
        raw_score or pred_leaf, the booster's own output."""
        out = self.booster.predict(X, **kwargs)
        if any(kwargs.get(k) for k in ("pred_contrib", "raw_score", "pred_leaf")):
            return out
        return calibrated(self.calibrator, out)

    def inputs(self, features: pd.DataFrame) -> pd.DataFrame:
        """The feature columns of a frame, categoricals as the training categories (a JSON round trip loses them)."""
        X = features[self.feature_name()]
        recast = {}
        for column, levels in zip(self.categorical, self.booster.pandas_categorical or []):
            dtype = pd.CategoricalDtype(levels)
            if X[column].dtype != dtype:
                values = X[column].astype(object)
                recast[column] = pd.Categorical(values.where(values.notna(), None), dtype=dtype)
        return X.assign(**recast) if recast else X

    def matrix(self, features: pd.DataFrame) -> np.ndarray:
        """The feature columns as the float matrix LightGBM predicts from: categoricals as training codes, NaN if
        unseen (LightGBM's own rule), so one conversion serves probabilities and contributions alike."""
        X = features[self.feature_name()]
        if not self.categorical:
            return X.to_numpy(dtype=np.float64)
        X = X.copy(deep=False)
        for column, levels in zip(self.categorical, self.booster.pandas_categorical):
            codes = pd.Categorical(X[column].astype(object), categories=levels).codes.astype(np.float64)
            X[column] = np.where(codes < 0, np.nan, codes)
        return X.to_numpy(dtype=np.float64)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated churn probabilities of the rows of a frame holding (at least) the feature columns."""
        return np.asarray(self.predict(self.inputs(features)), dtype=float)

    def raw_proba(self, features: pd.DataFrame) -> np.ndarray:
        """The booster's own (uncalibrated) probabilities: what roc_auc is logged and promotion compared on."""
        return np.asarray(self.booster.predict(self.inputs(features)), dtype=float)

    def save(self, folder: Path) -> Path:
        """Write the booster as LightGBM model text, the calibrator as a pickle and a JSON description."""
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / _BOOSTER))
        if self.calibrator is not None:
            (folder / _CALIBRATOR).write_bytes(pickle.dumps(self.calibrator))
        meta = {
            "features": self.feature_name(),
            "categorical": self.categorical,
            "calibrated": self.calibrator is not None,
        }
        (folder / _META).write_text(json.dumps(meta, indent=1))
        return folder

    @classmethod
    def load(cls, folder: Path) -> ChurnModel:
        """The model written by `save`."""
        meta = json.loads((Path(folder) / _META).read_text())
        booster = lgb.Booster(model_file=str(Path(folder) / _BOOSTER))
        calibrator = pickle.loads((Path(folder) / _CALIBRATOR).read_bytes()) if meta["calibrated"] else None
        return cls(booster, calibrator, meta["categorical"])

    @classmethod
    def from_logged(cls, model_dir: Path) -> ChurnModel:
        """The model in a logged model's folder (downloaded or a local copy), read without the pyfunc wrapper."""
        folder = Path(model_dir) / "artifacts" / ARTIFACT
        if not folder.is_dir():
            raise ValueError(
                f"{model_dir} holds no {ARTIFACT}: a churn model logged before ChurnModel existed; "
                "retrain with `patron train churn`"
            )
        return cls.load(folder)

    @classmethod
    def from_uri(cls, model_uri: str, settings: Settings) -> ChurnModel:
        """The model logged at an MLflow model URI (runs:/, models:/...) of the settings' tracking store."""
        with TemporaryDirectory() as tmp:
            folder = mlflow.artifacts.download_artifacts(
                artifact_uri=model_uri,
                dst_path=tmp,
                tracking_uri=settings.tracking_uri,
                registry_uri=settings.tracking_uri,
            )
            return cls.from_logged(Path(folder))

    @classmethod
    def from_run(cls, settings: Settings, run_id: str) -> ChurnModel:
        """The model logged by a churn training run."""
        return cls.from_uri(f"runs:/{run_id}/model", settings)

    @classmethod
    def from_registry(cls, settings: Settings, version: str) -> ChurnModel:
        """A registered version of the churn model (`version`: a number, or "@alias" such as "@champion")."""
        name = settings.tracking.churn_model
        return cls.from_uri(
            f"models:/{name}{version}" if version.startswith("@") else f"models:/{name}/{version}", settings
        )

    def log(self, input_example: pd.DataFrame) -> str:
        """Log the model as a pyfunc named "model" in the active run and return its model URI (registered by the
        caller). `input_example`: a synthetic frame of the feature columns (it is stored with the model)."""
        signature = infer_signature(
            input_example, self.predict_proba(input_example), params={OUTPUT_PARAM: "calibrated"}
        )
        # MLflow refuses a category column where it infers "string"; AnyType passes values through to `inputs`,
        # which casts them back, so a parquet feature file (categories) and a JSON request (strings) both work.
        signature.inputs = Schema(
            [
                ColSpec(AnyType(), spec.name) if spec.name in self.categorical else spec
                for spec in signature.inputs.inputs
            ]
        )
        with TemporaryDirectory() as tmp:
            folder = self.save(Path(tmp) / ARTIFACT)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=ChurnPyfunc(),
                artifacts={ARTIFACT: str(folder)},
                signature=signature,
                input_example=input_example,
                pip_requirements=[
                    f"lightgbm=={lgb.__version__}",
                    f"scikit-learn=={sklearn.__version__}",
                    f"pandas=={pd.__version__}",
                    f"mlflow=={mlflow.__version__}",
                ],
            )
        return info.model_uri


class ChurnPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc around a ChurnModel: customer feature rows -> churn probabilities (calibrated by default)."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.model = ChurnModel.load(Path(context.artifacts[ARTIFACT]))

    def predict(self, context: object, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        """Calibrated churn probabilities; with params {"output": "raw"}, the booster's own."""
        output = (params or {}).get(OUTPUT_PARAM, "calibrated")
        if output not in ("calibrated", "raw"):
            raise ValueError(f"{OUTPUT_PARAM}: expected 'calibrated' or 'raw', got {output!r}")
        return self.model.raw_proba(model_input) if output == "raw" else self.model.predict_proba(model_input)
