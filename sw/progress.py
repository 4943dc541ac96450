"""Progress bars only where someone watches them: on a terminal, and not after ``--no-progress``.

Redirected to a file, a tqdm bar is a stream of carriage returns (issue 15 measured a 128 KB
log); there the commands print their plain per-epoch and per-step lines only. The bars of
transformers and huggingface_hub (``from_pretrained``'s "Loading weights") obey the same rule
through :func:`limit_library_bars`.
"""

from __future__ import annotations

import sys

from tqdm import tqdm

__all__ = ["bars_wanted", "limit_library_bars", "progress_bar", "silence_library_bars"]


def bars_wanted(requested: bool = True, stream=None) -> bool:
    """Whether to draw bars: ``requested`` (no ``--no-progress``) and ``stream`` (default
    ``sys.stderr``, where tqdm draws) is a terminal."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(requested and callable(isatty) and isatty())


def progress_bar(iterable=None, *, enabled: bool = True, **options) -> tqdm:
    """``tqdm(iterable, **options)``, drawn only when :func:`bars_wanted` (``enabled`` and
    stderr a terminal); ``tqdm.write`` lines still print either way."""
    return tqdm(iterable, disable=not bars_wanted(enabled), **options)


def silence_library_bars() -> None:
    """Turn off the progress bars of transformers and huggingface_hub (process-wide)."""
    import huggingface_hub.utils
    import transformers.utils.logging
    transformers.utils.logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()


def limit_library_bars(requested: bool = True) -> None:
    """Silence the libraries' bars unless :func:`bars_wanted` (``requested`` and stderr a
    terminal); call it before ``from_pretrained``. Nothing turns them back on: a process that
    once ran without bars stays without them."""
    if not bars_wanted(requested):
        silence_library_bars()
