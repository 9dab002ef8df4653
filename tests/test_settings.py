"""The one settings object: grouped by component, limits declared once, one validated way to change a setting."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from rag.settings import (
    PROJECT_ROOT,
    AgentSettings,
    LLMSettings,
    PathSettings,
    RetrievalSettings,
    Settings,
    bounds,
)


def test_every_setting_belongs_to_exactly_one_component_group() -> None:
    groups = [base for base in Settings.__mro__[1:] if base.__name__.endswith("Settings") and
              base.__module__ == "rag.settings"]
    owners: dict[str, list[str]] = {}
    for group in groups:
        for name in group.__annotations__:
            owners.setdefault(name, []).append(group.__name__)
    assert set(owners) == set(Settings.model_fields), "a setting outside every group"
    assert all(len(o) == 1 for o in owners.values()), {k: v for k, v in owners.items() if len(v) > 1}
    settings = Settings()
    assert isinstance(settings, RetrievalSettings) and isinstance(settings, AgentSettings)
    assert isinstance(settings, LLMSettings) and isinstance(settings, PathSettings)


def test_a_changed_setting_is_validated_against_the_declared_limits() -> None:
    base = Settings()
    assert base.changed(top_k=7).top_k == 7 and base.top_k == 5, "a copy; the original is untouched"
    low, high = bounds("top_k")
    assert (low, high) == (1, 500)
    with pytest.raises(ValidationError):
        base.changed(top_k=int(high) + 1)
    with pytest.raises(ValidationError):
        base.changed(retrieval_mode="fuzzy")


def test_a_changed_setting_keeps_the_others_and_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """``changed`` gives every field, so a variable set since the settings were read changes nothing (the page's
    settings come from the environment once a run, then change several times: 5 ms each when the environment was
    read again)."""
    base = Settings(temperature=0.4)
    monkeypatch.setenv("RAG_TOP_K", "9")
    changed = base.changed(retrieval_mode="keyword")
    assert (changed.top_k, changed.temperature, changed.retrieval_mode) == (base.top_k, 0.4, "keyword")
    assert type(changed) is Settings and changed == base.changed(retrieval_mode="keyword")


@pytest.mark.parametrize("command", [["rag.search", "tea"], ["rag.eval", str(PROJECT_ROOT / "tests")],
                                     ["rag.ask", "tea?"]])
def test_every_command_refuses_a_k_over_the_one_declared_bound(command: list[str], tmp_path: Path) -> None:
    over = int(bounds("top_k")[1]) + 1  # type: ignore[arg-type]
    done = subprocess.run([sys.executable, "-m", *command, "-k", str(over), "--index", str(tmp_path / "none")],
                          capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "top_k" in done.stderr or "-k" in done.stderr, done.stderr
    assert not (tmp_path / "none").exists(), "a refused command writes nothing"


def test_streamlit_upload_limit_is_the_settings_limit() -> None:
    """Streamlit refuses files over server.maxUploadSize before the app sees them: .streamlit/config.toml's value
    is the default of RAG_MAX_UPLOAD_MB, and `make run` passes the setting as it is in the environment."""
    config = tomllib.loads((PROJECT_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == Settings.model_fields["max_upload_mb"].default
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    assert re.search(r"streamlit run app\.py .*\\\n\s+--server\.maxUploadSize \$\$\(\$\(BIN\)/python -m rag\.settings "
                     r"max_upload_mb\)", makefile), "make run hands the setting to Streamlit"
    shown = subprocess.run([sys.executable, "-m", "rag.settings", "max_upload_mb"], capture_output=True, text=True,
                           env={**os.environ, "RAG_MAX_UPLOAD_MB": "7"}, cwd=PROJECT_ROOT, timeout=60)
    assert shown.stdout.strip() == "7"
