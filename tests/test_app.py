"""Dashboard pages render headlessly (Streamlit AppTest)."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]


def test_home_lists_installed_models(meso_weights, monkeypatch):
    monkeypatch.setenv("TBD_WEIGHTS", str(meso_weights))
    at = AppTest.from_file(str(REPO / "Home.py"), default_timeout=60).run()
    assert not at.exception
    assert "Truth Behind DeepFakes" in at.title[0].value
    table = at.dataframe[0].value
    assert set(table["model"]) == {"meso4-df", "mesoinception4-df"}
    assert not at.warning  # models are installed, so no "no models" warning


def test_home_says_when_no_models_are_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("TBD_WEIGHTS", str(tmp_path))
    at = AppTest.from_file(str(REPO / "Home.py"), default_timeout=60).run()
    assert not at.exception
    assert any("No detector models are installed" in w.value for w in at.warning)
