"""Config objects with attribute access, as in so-vits-svc (``hps.train.batch_size``).

``HParams`` raises on a missing key; ``InferHParams`` returns ``None`` instead, which is how the
reference reads configs at inference so that older configs (4.0) without newer keys still load.
"""

from __future__ import annotations

import json
import os
from typing import Any


class HParams:
    """Nested dict with attribute and item access. Nested dicts become ``HParams`` too."""

    def __init__(self, **kwargs: Any):
        for k, v in kwargs.items():
            self[k] = v

    def _wrap(self, v: Any) -> Any:
        return type(self)(**v) if isinstance(v, dict) else v

    def __setitem__(self, key: str, value: Any) -> None:
        self.__dict__[key] = self._wrap(value)

    def __getitem__(self, key: str) -> Any:
        return self.__dict__[key]

    def __contains__(self, key: str) -> bool:
        return key in self.__dict__

    def __len__(self) -> int:
        return len(self.__dict__)

    def __iter__(self):
        return iter(self.__dict__)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__dict__!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HParams) and self.to_dict() == other.to_dict()

    def keys(self):
        return self.__dict__.keys()

    def items(self):
        return self.__dict__.items()

    def values(self):
        return self.__dict__.values()

    def get(self, key: str, default: Any = None) -> Any:
        return self.__dict__.get(key, default)

    def to_dict(self) -> dict:
        return {k: v.to_dict() if isinstance(v, HParams) else v for k, v in self.items()}


class InferHParams(HParams):
    """Like ``HParams`` but a missing attribute reads as ``None`` (reference ``InferHParams``)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return None


def load_config(path: str | os.PathLike, infer: bool = False) -> HParams:
    """Read a JSON config (``configs/config.json``) into ``HParams`` (or ``InferHParams``)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: config file not found") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config must be a JSON object")
    return (InferHParams if infer else HParams)(**data)


def save_config(config: HParams | dict, path: str | os.PathLike) -> None:
    from common.atomic import write_text

    data = config.to_dict() if isinstance(config, HParams) else config
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
