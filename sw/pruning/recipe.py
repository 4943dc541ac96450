"""The recipe of a fine-pruning run (``sw/prune.py --recipe``): its schema and its strict reader.

The schema is one table, :data:`RECIPE_SECTIONS`: each section of the JSON object is the
settings class that validates it (:class:`~sw.pruning.methods.PruningArgs`,
:class:`~sw.pruning.trainer.TrainingOptions`, :class:`~sw.pruning.tokens.TokenPruningArgs`;
their fields are the keys, their constructors check types and ranges), plus a free-text
``"description"``. :func:`resolve_recipe` validates the whole recipe, every section, before any
work starts; an error is one line naming the field path (``training.lr``), what was expected and
what was found.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from sw.settings import found, read_json

from .methods import PruningArgs
from .tokens import TokenPruningArgs
from .trainer import TrainingOptions

__all__ = ["RECIPE_SECTIONS", "Recipe", "RecipeError", "read_recipe", "resolve_recipe"]

#: Section name -> the settings class whose fields are its keys and which validates them.
RECIPE_SECTIONS: dict[str, type] = {
    "pruning": PruningArgs,
    "training": TrainingOptions,
    "tokens": TokenPruningArgs,
}
#: Sections holding free text, ignored by the run.
TEXT_SECTIONS = ("description",)


class RecipeError(ValueError):
    """A recipe that does not match the schema; the message names the field path."""


@dataclass(frozen=True)
class Recipe:
    """A validated recipe: the settings of each section (``tokens`` None without token
    pruning)."""

    pruning: PruningArgs
    training: TrainingOptions
    tokens: TokenPruningArgs | None


def read_recipe(path) -> dict:
    """The JSON document of the recipe file at ``path`` (not yet validated: see
    :func:`resolve_recipe`).

    Raises
    ------
    sw.settings.SettingsFileError
        If the file cannot be read, is not UTF-8, not JSON or nested too deeply; the message
        starts with the path.
    """
    return read_json(Path(path))


def _locate(section: str, settings: type, error: ValueError, overridden: dict) -> str:
    """``error`` from a section's settings class, with the field path in front."""
    message = str(error)
    if message.startswith(f"{section}."):
        located = message
    else:
        name = message.split(" ", 1)[0]
        located = (f"{section}.{message}" if name in {spec.name for spec in fields(settings)}
                   else f"{section}: {message}")
        if name in overridden:
            located += " (set on the command line)"
    return located


def resolve_recipe(document: object, *, pruning_overrides: dict | None = None,
                   training_overrides: dict | None = None,
                   token_overrides: dict | None = None) -> Recipe:
    """Validate a whole recipe document, with command-line overrides, against the schema.

    Without a ``"tokens"`` section and without ``token_overrides`` the recipe has no token
    pruning.

    Raises
    ------
    RecipeError
        If the document is not an object, a section is unknown or not an object, a key is
        unknown, or a value has the wrong type or range.
    """
    known = [*RECIPE_SECTIONS, *TEXT_SECTIONS]
    if not isinstance(document, dict):
        raise RecipeError(f"a recipe must be a JSON object with sections {', '.join(known)}; "
                          f"found {found(document)}")
    unknown = sorted(set(document) - set(known))
    if unknown:
        raise RecipeError(f"Unknown recipe sections {unknown}; known: {', '.join(known)}")
    for section in TEXT_SECTIONS:
        if section in document and not isinstance(document[section], str):
            raise RecipeError(f"{section} must be a string, not {found(document[section])}")
    overrides = {"pruning": pruning_overrides or {}, "training": training_overrides or {},
                 "tokens": token_overrides or {}}
    settings = {}
    for section, kind in RECIPE_SECTIONS.items():
        values = document.get(section, {})
        if not isinstance(values, dict):
            raise RecipeError(f"{section} must be an object of settings, not {found(values)}")
        if section == "tokens" and section not in document and not overrides[section]:
            settings[section] = None
            continue
        try:
            settings[section] = kind.from_dict({**values, **overrides[section]})
        except ValueError as error:
            raise RecipeError(_locate(section, kind, error, overrides[section])) from None
    return Recipe(**settings)
