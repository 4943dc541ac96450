"""Export a pruned DeiT / ViT for the accelerator, or inspect an exported weight image.

    python sw/export_sparse.py --model DIR --config PRESET|JSON --out DIR [--verify]
                               [--calibration DIR|digits] [--calibration-images N]
    python sw/export_sparse.py --inspect DIR/weights.bin

``--model`` is a ``sw/prune.py`` output directory (``pruned/`` + ``pruning_report.json``) or a
plain ``save_pretrained`` directory (every head and neuron kept). ``--out`` receives
``weights.bin`` (docs/image-format.md), ``params.json`` (the accelerator config sized from the
pruned model: ``make verilog CONFIG=DIR/params.json``) and ``manifest.json`` (which records the
calibration data). The integer model is calibrated on ``--calibration``: an image folder (one
sub-folder per class) or ``digits``, preprocessed at the model's image size; by default the
data recorded with the model (``prune.py --data``; a ``train_digits.py`` teacher's digits), and
a model with none recorded needs the flag. ``--inspect`` takes
the image file or a directory holding ``weights.bin``. Bad input ends with one ``error:`` line
and exit status 2; ``--verify`` differences with status 1; Ctrl-C with one line and status 130
(the previous ``--out`` left as it was); a closed standard output (``| head -1``) silently with
status 141, as a tool killed by SIGPIPE. ``note:`` lines go to standard error.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script path, the repository root is not on sys.path; make `sw` importable anyway.
_REPO_ROOT = Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(_REPO_ROOT))

import argparse  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402

from sw.cli import BAD_INPUT, INTERRUPTED  # noqa: E402
from sw.config import ConfigError  # noqa: E402
from sw.image.export import (DEFAULT_CALIBRATION_IMAGES, ExportError, ExportRequest,  # noqa: E402
                             export, verify, write)
from sw.image.format import ImageError  # noqa: E402
from sw.image.loader import load_image  # noqa: E402
from sw.image.summary import summary_table  # noqa: E402

__all__ = ["main"]

#: Exit status when --verify finds the image's golden model differs from the torch model's.
VERIFY_FAILED = 1
#: Exit status when standard output is closed early (128 + SIGPIPE, as for ``cat | head -1``).
BROKEN_PIPE = 128 + signal.SIGPIPE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python sw/export_sparse.py", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="pruning output or save_pretrained directory")
    parser.add_argument("--config", help="hardware: a preset name (tiny, deit_b16, ...) or a "
                                         "config JSON path")
    parser.add_argument("--out", type=Path, help="output directory (replaced whole)")
    parser.add_argument("--name", help="name of the generated config (default: --out's name)")
    parser.add_argument("--calibration", metavar="DIR|digits",
                        help="calibration data: an image folder (one sub-folder per class) or "
                             "'digits' (default: the data recorded with the model)")
    parser.add_argument("--calibration-images", type=int, default=None,
                        dest="calibration_images",
                        help=f"calibrate on N training images of that data (default "
                             f"{DEFAULT_CALIBRATION_IMAGES})")
    parser.add_argument("--verify", action="store_true",
                        help="compare the golden model from the image with the one from torch")
    parser.add_argument("--inspect", type=Path, metavar="FILE",
                        help="print the summary of an existing weights.bin (or of DIR/weights.bin)"
                             " and exit")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def _inspect(path: Path) -> int:
    if path.is_dir():
        if not (path / "weights.bin").is_file():
            raise ImageError(f"{path}: a directory without weights.bin")
        path = path / "weights.bin"
    image = load_image(path)
    print(summary_table(image, source=str(path)))
    return 0


def _export(options) -> int:
    started = time.monotonic()
    request = ExportRequest(
        model_dir=options.model, config=options.config, out=options.out, name=options.name,
        calibration_images=(options.calibration_images if options.calibration_images is not None
                            else DEFAULT_CALIBRATION_IMAGES),
        progress=not options.no_progress, calibration=options.calibration)
    state = export(request, on_step=lambda name: print(f"- {name}", flush=True))
    for note in state.notes:
        print(f"note: {note}", file=sys.stderr)
    status = 0
    if options.verify:
        print("- verify: golden model from the image vs from the torch model", flush=True)
        result = verify(state)
        for layer in result["layers"]:
            print(f"  layer {layer['index']} output: {layer['differences']} of "
                  f"{layer['values']} values differ")
        print(f"  final LayerNorm: {result['final']['differences']} of "
              f"{result['final']['values']} values differ ({result['images']} images); float "
              f"vs integer top-1 agreement {result['float_vs_integer_top1_agreement']:.3f}")
        print(f"  whole model (image in, int8 logits out): {result['logits']['differences']} "
              f"of {result['logits']['values']} logits differ; float vs whole integer model "
              f"top-1 agreement {result['float_vs_whole_integer_top1_agreement']:.3f}")
        if result["differences"]:
            status = VERIFY_FAILED
    write(state, options.out)
    options.written = True
    print(summary_table(state.image, source=str(options.out / "weights.bin")))
    print(f"wrote {options.out}/weights.bin, params.json, manifest.json "
          f"({time.monotonic() - started:.1f} s)")
    if status:
        print("error: the golden model from the image differs from the torch model's",
              file=sys.stderr)
    return status


def _run(parser: argparse.ArgumentParser, options) -> int:
    try:
        if options.inspect is not None:
            if (options.model or options.config or options.out or options.verify
                    or options.calibration):
                parser.error("--inspect takes only the image file")
            return _inspect(options.inspect)
        missing = [flag for flag, value in (("--model", options.model),
                                            ("--config", options.config),
                                            ("--out", options.out)) if value is None]
        if missing:
            parser.error(f"missing {', '.join(missing)} (or use --inspect FILE)")
        return _export(options)
    except (ImageError, ConfigError, ExportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return BAD_INPUT


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    options = parser.parse_args(argv)
    try:
        status = _run(parser, options)
        sys.stdout.flush()           # a closed pipe shows here, not at interpreter exit
        return status
    except KeyboardInterrupt:
        if options.out is None or options.inspect is not None:
            print("error: interrupted", file=sys.stderr)
        elif getattr(options, "written", False):
            print(f"error: interrupted after writing {options.out}", file=sys.stderr)
        else:
            print(f"error: interrupted; nothing written, {options.out} is as it was",
                  file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # Nothing more can be written; point stdout at /dev/null so that the interpreter's
        # final flush does not report the broken pipe either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
