"""Tests of block movement pruning."""
