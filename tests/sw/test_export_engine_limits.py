"""An export for a config the layer engine cannot build fails at export time, with the config's
own message, not later at ``make verilog`` (issue 14, item 13)."""

import pytest

from sw.config import load_config
from sw.image.export import ExportError, ExportRequest, export


@pytest.mark.parametrize("hardware, limit", [
    ({"array_cols": 8, "block_rows": 8}, "array_rows (4) equal to array_cols (8)"),
    ({"gelu_lanes": 3}, "gelu_lanes (3) to divide array_cols (4)"),
])
def test_export_refuses_a_config_beyond_the_layer_engine(tmp_path, hardware, limit):
    path = tmp_path / "hardware.json"
    load_config("tiny").replace(name="beyond", hardware=hardware).save(path)
    with pytest.raises(ExportError) as error:
        # the model directory is never reached: the config is the first step
        export(ExportRequest(model_dir=tmp_path / "no_model", config=str(path)))
    assert str(error.value).startswith(f"--config: config 'beyond': the layer engine needs "
                                       f"{limit}")
