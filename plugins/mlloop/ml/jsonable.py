"""One conversion of results to plain JSON types, used by every mlloop report and blob."""
from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Mapping

import numpy as np


def jsonable(obj):
    """Plain JSON types: mappings (keys as str) and sequences recursively, numpy scalars and
    Decimals as Python numbers, NaN/inf as None, datetimes (and pandas Timestamps) as ISO 8601."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating, Decimal)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, dt.datetime):
        return obj.isoformat()
    return obj
