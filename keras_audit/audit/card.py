"""Reading the model card (intended use, limitations, risks) the report shows."""

from __future__ import annotations

import os
from pathlib import Path

from keras_audit.audit.catalog import AuditInputError


def load_card(card: dict | str | os.PathLike | None) -> dict:
    """A model card as a plain dict.

    Args:
        card: ``None`` (empty card), a dict, or the path of a YAML file (a mapping).
            Recognised keys (all optional): ``owners``, ``version``, ``licence`` (or
            ``license``), ``citation``, ``description``, ``intended_use``,
            ``out_of_scope_uses``, ``limitations``, ``risks``, ``ethical_considerations``;
            any other key is shown as given.

    Returns:
        The card with JSON-able values.

    Raises:
        AuditInputError (a ValueError): a missing or unreadable file, invalid YAML, or a card
            that is not a mapping.
    """
    from keras_audit.audit.serialize import jsonable

    if card is None:
        return {}
    if isinstance(card, str | os.PathLike):
        import yaml

        path = Path(card)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise AuditInputError(f"card file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise AuditInputError(f"card {path} could not be read: {_one_line(exc)}") from None
        except yaml.YAMLError as exc:
            raise AuditInputError(f"card {path} is not valid YAML: {_one_line(exc)}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise AuditInputError(f"card {path} must be a YAML mapping (key: value lines); got "
                                  f"{type(loaded).__name__}")
        card = {} if loaded is None else loaded
    if not isinstance(card, dict):
        raise AuditInputError(f"card must be a dict, a YAML file path or None; got "
                              f"{type(card).__name__}")
    return jsonable(card)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())
