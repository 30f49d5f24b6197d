"""A metering point's role, apart from the reading's pydantic models.

The configuration needs the role but not the reading document: `check-config` then does
not build the reading's models.
"""

from __future__ import annotations

from typing import Literal

Role = Literal["primary", "secondary"]
