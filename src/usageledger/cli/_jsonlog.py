"""Machine-readable log lines for ``--log-format json``."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from usageledger._secrets import mask_keys


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, any ``extra=`` fields, the traceback and stack.

    The line is masked once more as a whole (:func:`~usageledger._secrets.mask_keys`): an extra that is not a
    string becomes text only here, after the handler's filter has run."""

    _RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in self._RESERVED and not key.startswith("_"):
                payload[key] = value if isinstance(value, str | int | float | bool | None) else str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exc"] = record.exc_text
        if record.stack_info:
            payload["stack"] = record.stack_info
        return mask_keys(json.dumps(payload))
