"""Synthesis, place and route, and their reports: ``python -m hw.synth`` (``make synth``)."""

from hw.synth.flow import SynthError, report_path, synthesise
from hw.synth.tools import ToolFailed, ToolMissing

__all__ = ["SynthError", "ToolFailed", "ToolMissing", "report_path", "synthesise"]
