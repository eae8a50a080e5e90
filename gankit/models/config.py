"""The JSON form shared by the small models' configs (classifier, encoder)."""
from __future__ import annotations

from dataclasses import asdict


class WidthsConfig:
    """to_dict / from_dict for a dataclass config with a `widths` tuple (a list in JSON)."""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict):
        d = dict(d)
        d["widths"] = tuple(d.get("widths", cls.widths))
        return cls(**d)
