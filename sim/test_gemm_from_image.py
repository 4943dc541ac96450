"""Co-simulation from the weight image: export a small pruned DeiT, then replay every linear of
every layer through the GEMM RTL with weights loaded from the image's bytes. Bit-exact to the
golden model (GEMM and layer), cycle-exact to the cycle model."""

import pytest

from sim.harness import build
from sim.image_gemm import image_gemm_jobs, run_image_gemms
from sw.image.export import ExportRequest, export, write
from sw.image.format import TENSOR_ROLES
from sw.image.loader import load_image
from sw.synthetic_deit import save_pruned_deit

pytestmark = pytest.mark.sim


def test_every_linear_of_a_pruned_deit_from_the_image(tmp_path):
    model_dir = save_pruned_deit(tmp_path / "run", removed_heads={0: [1], 1: [0, 3]},
                                 removed_neurons={0: list(range(37)), 1: list(range(0, 80, 2))},
                                 block_density=0.5, image_size=16)
    state = export(ExportRequest(model_dir=model_dir, config="tiny", name="tiny_deit_image",
                                 calibration_images=8))
    write(state, tmp_path / "image")
    image = load_image(tmp_path / "image" / "weights.bin")       # everything from the bytes
    assert image.config.hardware.array_rows == 4 and image.config.hardware.block_rows == 8

    x = state.integer_model.embed(state.calibration[:1])[0]
    jobs = image_gemm_jobs(image, x)
    assert [job.name for job in jobs] == [f"layer{i}.{role}" for i in range(2)
                                          for role in TENSOR_ROLES]
    # pruning shows in the shapes the engine runs: removed heads and neurons are absent
    shapes = {job.name: job.operands.shape for job in jobs}
    assert shapes["layer0.q"] == (18, 64, 48) and shapes["layer1.o"] == (18, 32, 64)
    assert shapes["layer0.fc1"] == (18, 64, 96) and shapes["layer1.fc2"] == (18, 88, 64)
    assert any(job.operands.weights.block_density < 1 for job in jobs)

    results = run_image_gemms(build(image.config), tmp_path / "image" / "weights.bin", jobs,
                              tmp_path / "sim")
    for result in results:
        assert result["bit_exact"] and result["matches_layer"], result["name"]
        assert result["cycles"] == result["model_cycles"] == result["edge_cycles"], result["name"]
        assert result["busy"] == result["model_busy"] and result["stall"] == result["model_stall"]
