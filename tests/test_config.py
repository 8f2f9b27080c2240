"""Configuration as data: every default written once (in the section models), one seed, one offer catalogue, the
CLV model apart from the benchmarks, and unknown keys refused by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from patron.config import (
    CONFIG_DIR,
    DEFAULT_CONFIG,
    REPO_ROOT,
    RetentionConfig,
    SeededSection,
    Settings,
    load_settings,
)


def _leaves(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths of the non-mapping values of a nested mapping."""
    out: list[tuple[str, ...]] = []
    for key, value in data.items():
        out += _leaves(value, (*prefix, key)) if isinstance(value, dict) and value else [(*prefix, key)]
    return out


def _without(data: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """A copy of the mapping without the value at `path`."""
    head, *rest = path
    if not rest:
        return {k: v for k, v in data.items() if k != head}
    return {**data, head: _without(data[head], tuple(rest))}


def _sections() -> dict[str, type[BaseModel]]:
    return {
        name: f.annotation
        for name, f in Settings.model_fields.items()
        if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)
    }


def test_the_default_profile_sets_no_value_the_models_already_hold(tmp_path: Path) -> None:
    profile = yaml.safe_load(DEFAULT_CONFIG.read_text()) or {}
    assert "extends" not in profile
    full = load_settings(DEFAULT_CONFIG).model_dump()
    for path in _leaves(profile):
        reduced = tmp_path / f"{'.'.join(path)}.yaml"
        reduced.write_text(yaml.safe_dump(_without(profile, path)))
        assert load_settings(reduced).model_dump() != full, f"{'.'.join(path)} repeats the model default"


def test_the_production_profile_still_extends_the_default() -> None:
    production = load_settings(CONFIG_DIR / "production.yaml")
    default = load_settings()
    assert production.online.backend == "redis" and production.online.redis_require_fsync
    assert production.tracking.uri == "http://127.0.0.1:5000" and production.serving.workers == 4
    assert production.features == default.features and production.churn == default.churn


def test_one_seed_set_at_the_top_reaches_every_section_that_fits_a_model() -> None:
    profile = yaml.safe_load(DEFAULT_CONFIG.read_text()) or {}
    assert not [p for p in _leaves(profile) if p[-1] == "seed" and len(p) > 1]
    assert load_settings().seed == Settings().seed == 42
    settings = load_settings(seed=7)
    seeded = {
        name: getattr(settings, name).seed
        for name in Settings.model_fields
        if isinstance(getattr(settings, name), SeededSection)
    }
    assert seeded and set(seeded.values()) == {7}, seeded
    unseeded = [name for name, cls in _sections().items() if not issubclass(cls, SeededSection)]
    assert all("seed" not in _sections()[name].model_fields for name in unseeded)
    assert Settings.model_validate(settings.model_dump()) == settings  # a dump (MLflow's settings.yaml) loads back


@pytest.mark.parametrize("section", ["churn", "synth", "two_stage"])
def test_a_seed_inside_a_section_is_refused_by_name(section: str) -> None:
    with pytest.raises(ValidationError, match=rf"{section}\.seed"):
        load_settings(**{section: {"seed": 1}})
    with pytest.raises(ValidationError, match=rf"{section}\.seed"):
        load_settings(seed=7, **{section: {"seed": 42}})


def test_one_offer_catalogue() -> None:
    offer_fields = [
        f"{name}.{field}"
        for name, cls in _sections().items()
        for field in cls.model_fields
        if "offer" in field and isinstance(cls.model_fields[field].get_default(), dict)
    ]
    assert offer_fields == ["retention.offers"]
    assert RetentionConfig().offers == {
        "discount_voucher": 5.0,
        "free_delivery": 3.0,
        "double_points": 2.0,
        "personal_call": 8.0,
    }


def test_the_clv_model_reads_its_own_section_not_the_benchmarks() -> None:
    source = (REPO_ROOT / "training" / "value" / "clv.py").read_text()
    assert "settings.bench" not in source
    changed = load_settings(
        bench={
            "folds": 3,
            "inner_valid_share": 0.5,
            "refit_rounds_factor": 2.0,
            "btyd_freq": "D",
            "btyd_penalizer": 0.1,
        }
    )
    assert changed.clv == load_settings().clv


def test_a_mapping_in_a_profile_updates_the_default_mapping() -> None:
    settings = load_settings(churn={"params": {"num_leaves": 31}}, retention={"offers": {"sms": 1.0}})
    assert settings.churn.params["num_leaves"] == 31 and settings.churn.params["objective"] == "binary"
    assert settings.retention.offers["sms"] == 1.0 and settings.retention.offers["personal_call"] == 8.0


def test_an_unknown_key_is_refused_by_name(tmp_path: Path) -> None:
    config = tmp_path / "typo.yaml"
    config.write_text(yaml.safe_dump({"extends": str(DEFAULT_CONFIG), "churn": {"num_boost_rounds": 5}}))
    with pytest.raises(ValidationError, match=r"churn\.num_boost_rounds"):
        load_settings(config)
    with pytest.raises(ValidationError, match=r"retentoin"):
        load_settings(retentoin={"offers": {}})
