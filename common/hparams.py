"""Config objects with attribute access, as in so-vits-svc (``hps.train.batch_size``).

``HParams`` raises on a missing key; ``InferHParams`` returns ``None`` instead, which is how the
reference reads configs at inference so that older configs (4.0) without newer keys still load.
"""

from __future__ import annotations

import json
import os
from typing import Any

from common.errors import ConfigError


class ConfigNotFound(ConfigError, FileNotFoundError):
    """The config file does not exist."""


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


def load_config(
    path: str | os.PathLike, infer: bool = False, purpose: str | None = None
) -> HParams:
    """Read a JSON config (``configs/config.json``) into ``HParams`` (or ``InferHParams``).

    ``purpose`` (``"train"``, ``"infer"``, ``"features"``) also validates it
    (:func:`common.config_check.validate_config`); every problem is a one-line
    :class:`~common.errors.ConfigError` naming the file and the key.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ConfigNotFound(
            f"{path}: config file not found",
            "run preprocess_flist_config.py, or give the path with -c",
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            f"{path}: is a folder, not a config file", "give the config.json"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"{path}: not valid JSON ({e})", "fix the file or make it again"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a JSON object", "fix the file")
    if purpose is not None:
        from common.config_check import validate_config

        validate_config(data, path, purpose)
    return (InferHParams if infer else HParams)(**data)


def save_config(config: HParams | dict, path: str | os.PathLike) -> None:
    from common.atomic import write_text

    data = config.to_dict() if isinstance(config, HParams) else config
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
