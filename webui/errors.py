"""User mistakes in the web UI and the HTTP APIs: the error class, which exceptions are the
user's (answered with one line and a 4xx, never a traceback), the one-line messages, and the
servers' flag checks (exit 2 before anything is loaded)."""

from __future__ import annotations

from webui import paths


class ServiceError(ValueError):
    """A user mistake (bad file, wrong speaker, no model loaded ...): one readable line."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that carry a message for the user rather than a bug."""
    from common.audio import AudioError
    from common.checkpoint import CheckpointError
    from common.errors import UserError
    from inference.infer_tool import F0FilterException

    return (ServiceError, AudioError, CheckpointError, UserError, F0FilterException,
            paths.PathError, FileNotFoundError, KeyError, ValueError)  # fmt: skip


def message(e: BaseException) -> str:
    """One line for an exception (KeyError's repr quotes are dropped; a pydantic validation error
    becomes :func:`validation_message`, not pydantic's multi-line text with its web link)."""
    from pydantic import ValidationError

    if isinstance(e, ValidationError):
        return validation_message(e)
    text = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    return " ".join(str(text).split()) or type(e).__name__


def validation_message(e, prefix: str = "", flags: bool = True) -> str:
    """The first problem of a pydantic ``ValidationError`` as one line: ``<prefix><field> (<CLI
    flag>): <problem>, got <value>``, e.g. ``trans (-t): input should be less than or equal to 48,
    got 60``. ``flags=False`` (HTTP callers, who send field names) leaves the CLI flag out."""
    import re

    from webui.service import ConvertOptions

    first = e.errors(include_url=False)[0]
    loc = ".".join(str(x) for x in first.get("loc", ()))
    if not loc:  # the whole value (e.g. not JSON): the prefix names it
        prefix, loc = "", prefix.rstrip(": ") or "options"
    field = ConvertOptions.model_fields.get(str(first.get("loc", ("",))[0])) if flags else None
    flag = re.search(r"\((-[\w-]+)", field.description or "") if field else None
    where = f"{prefix}{loc}" + (f" ({flag.group(1)})" if flag else "")
    msg = str(first.get("msg", "not valid"))
    got = first.get("input")
    got = "" if got is None or isinstance(got, (dict, list)) else f", got {str(got)[:40]!s}"
    return f"{where}: {msg[:1].lower()}{msg[1:]}{got}"


def check_server_flags(port: int, max_seconds: float, max_upload_mb: float | None = None,
                       max_file_size: str | None = None) -> None:  # fmt: skip
    """The servers' flags, refused with one line (exit 2) before anything is loaded or bound."""
    import re

    from common.errors import UsageError

    if not 1 <= port <= 65535:
        raise UsageError(f"--port {port}: out of range; a TCP port is 1..65535 (e.g. 7860)")
    if not 0 < max_seconds <= 24 * 3600:  # also NaN
        raise UsageError(f"--max_seconds {max_seconds}: out of range; give seconds in (0, 86400]")
    if max_upload_mb is not None and not 0 < max_upload_mb <= 100_000:
        raise UsageError(
            f"--max_upload_mb {max_upload_mb}: out of range; give megabytes in (0, 100000]"
        )
    if max_file_size is not None and not re.fullmatch(
        r"\d+\s*(b|kb|mb|gb|tb)", max_file_size.strip().lower()
    ):
        raise UsageError(f"--max_file_size {max_file_size}: not a size (e.g. 200mb, 1gb)")
