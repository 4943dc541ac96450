"""What the command-line tools share: exit statuses, escaping of text echoed from files, and
Ctrl-C ending in one line with status 130 instead of a traceback.

Use in a tool::

    if __name__ == "__main__":        # at the top, before importing torch
        exit_130_on_interrupt_during_imports("train_digits.py")
    ...
    @exit_130_on_interrupt("train_digits.py")
    def main(argv=None) -> int:
        ...

and print bad input as ``f"{prog}: error: {one_line(value)} ..."`` with status ``BAD_INPUT``.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import threading

from sw.printable import printable

__all__ = ["BAD_INPUT", "INTERRUPTED", "OneLineArgumentParser", "exit_130_on_interrupt",
           "exit_130_on_interrupt_during_imports", "one_line"]

#: Exit status for bad input (a usage error, like argparse's).
BAD_INPUT = 2
#: Exit status after Ctrl-C (128 + SIGINT, as a shell reports it).
INTERRUPTED = 130


def one_line(text: object) -> str:
    """``str(text)`` unchanged if it is already one line of printable characters, else with
    newlines, terminal escape sequences and every other non-printable character escaped by the
    project's one rule (:func:`sw.printable.printable`, not shortened), so text taken from a file
    or the command line cannot forge a second line or colour the output."""
    text = str(text)
    return text if text.isprintable() else printable(text, limit=len(text))


def exit_130_on_interrupt(prog: str):
    """Decorate a tool's ``main``: KeyboardInterrupt prints ``<prog>: interrupted`` on stderr and
    returns ``INTERRUPTED`` (130) instead of a traceback.

    Outputs written through :mod:`sw.atomic` are then either the previous ones or complete.
    """
    def decorate(main):
        @functools.wraps(main)
        def wrapped(*args, **kwargs) -> int:
            if (threading.current_thread() is threading.main_thread()
                    and getattr(signal.getsignal(signal.SIGINT), "during_imports", False)):
                signal.signal(signal.SIGINT, signal.default_int_handler)
            try:
                return main(*args, **kwargs)
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr, flush=True)
                return INTERRUPTED
        return wrapped
    return decorate


def exit_130_on_interrupt_during_imports(prog: str) -> None:
    """Until the decorated ``main`` starts, make Ctrl-C print ``<prog>: interrupted`` and exit
    with status 130 at once (nothing has been written yet), instead of a traceback from inside
    torch's or transformers' imports. Call it at the top of a script, before the heavy imports,
    when ``__name__ == "__main__"``; :func:`exit_130_on_interrupt` restores Python's handler."""
    def interrupted(signum, frame):
        os.write(2, f"{prog}: interrupted\n".encode())
        os._exit(INTERRUPTED)
    interrupted.during_imports = True
    signal.signal(signal.SIGINT, interrupted)


class OneLineArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line (``<prog>: error: <message> (see
    --help)``, status 2) instead of the whole usage text followed by the error."""

    def error(self, message: str):
        self.exit(BAD_INPUT, f"{self.prog}: error: {one_line(message)} (see --help)\n")
