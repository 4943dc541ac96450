"""Every example of docs/api.md runs: its ``python`` blocks executed in order in one namespace,
in a temporary working directory, at the page's own (tiny) sizes."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def code_blocks(text: str) -> list[str]:
    """The ``python`` fenced blocks of a Markdown page, in order."""
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def test_the_page_has_examples_of_every_step():
    blocks = code_blocks(DOC.read_text())
    calls = "".join(blocks)
    for function in ("build_model", "load_model", "train_digits", "prune", "export", "predict",
                     "generate", "replay", "read_replay_report"):
        assert f".{function}(" in calls, function
    assert len(blocks) == 7


@pytest.mark.sim
def test_every_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "docs_api"}
    for number, block in enumerate(code_blocks(DOC.read_text())):
        exec(compile(block, f"docs/api.md block {number}", "exec"), namespace)
    out = capsys.readouterr().out
    report = namespace["report"]
    assert report.exact and [layer.index for layer in report.layers] == [0, 1]
    assert all(layer.cycles == layer.model_cycles for layer in report.layers)
    assert namespace["exported"].verification["differences"] == 0
    assert namespace["logits"].shape == (4, 10)
    assert (tmp_path / "image" / "replay" / "replay.json").is_file()
    assert (tmp_path / "rtl" / "layer_engine.v").is_file()
    assert out.splitlines()[-1] == "True"          # the report read back is the same
