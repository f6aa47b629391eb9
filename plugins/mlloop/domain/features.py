"""Point-in-time feature extraction for the ML loop (the seed's FeatureExtractor).

This module owns:

* the market snapshot shape (`MarketSnapshot`) and an append-only, time-ordered
  `MarketHistory` of them;
* `extract_market_features(context)` -- computed once per market context id and cached in
  a bounded `MarketContextCache` -- and the cheap per-idea `extract_idea_features`;
* the ordering helper `to_vector` / `to_matrix` used to feed a model.

Point-in-time rule: a feature computed "as of" time t uses only snapshots whose time is
<= t. Later snapshots in the history are ignored (never raise), so a history that already
holds the future (a replay, the simulator) yields exactly the features that were knowable
at decision time.

Values are quantised to the scale of their `ml_feature_snapshots` column at extraction, so
what a model sees in memory is exactly what the stored snapshot row says.
"""
from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping, Sequence

from optionsmath.decimals import quantize

from plugins.mlloop.domain.calendar import (
    days_to_monthly_opex, epoch_ms, is_opex_week, session_date, session_open_utc, utc_ms,
)

FEATURE_SET_VERSION = "v1.0"
FEATURE_EXTRACTOR_VERSION = "fx-1.0.0"
GEX_CALC_VERSION = "gex-1"
VIX_REGIME_CLASSIFIER_VERSION = "vixreg-1"

VERSIONS = {
    "feature_set_version": FEATURE_SET_VERSION,
    "feature_extractor_version": FEATURE_EXTRACTOR_VERSION,
    "gex_calc_version": GEX_CALC_VERSION,
    "vix_regime_classifier_version": VIX_REGIME_CLASSIFIER_VERSION,
}

# The seed's six groups, verbatim.
FEATURE_GROUPS: dict[str, list[str]] = {
    "price_action": [
        "spot_5m_return", "spot_15m_return", "spot_1h_return",
        "spot_1d_return", "range_position",
    ],
    "volatility": [
        "vix_level", "vix_regime", "vix_term_slope",
        "iv_rank_30d", "iv_percentile_30d",
    ],
    "gex_structure": [
        "gex_total", "spot_vs_call_wall", "spot_vs_put_wall",
        "spot_vs_gamma_flip",
    ],
    "market_mode": ["market_mode", "bias_lfi", "bias_direction"],
    "time": [
        "minutes_since_open", "day_of_week",
        "is_opex_week", "days_to_monthly_opex",
    ],
    "strategy": [
        "strategy_type", "side", "dte", "width",
        "strike_vs_spot", "original_score",
    ],
}

# Ours, beyond the seed's groups: the seed's table stores cross-asset columns that no group
# names, and its strategy group cannot tell a debit vertical from a credit one.
EXTRA_FEATURE_GROUPS: dict[str, list[str]] = {
    "cross_asset": ["es_futures_premium", "tnx_level", "dxy_level"],
    "structure": ["direction"],
}

# The model's default input, in a fixed order: the seed's six groups plus `direction`.
# Cross-asset levels are stored but left out: random-walk levels identify the day more
# than they predict it, and a model overfits on them.
DEFAULT_FEATURE_LIST: list[str] = [
    name for names in FEATURE_GROUPS.values() for name in names
] + EXTRA_FEATURE_GROUPS["structure"]

CATEGORICAL_FEATURES: frozenset[str] = frozenset({
    "vix_regime", "market_mode", "bias_direction", "strategy_type", "side", "direction",
})

VIX_REGIMES = ("chaos", "goldilocks_1", "goldilocks_2", "zombieland")
# Lower bounds (inclusive) of each regime, highest first.
VIX_REGIME_THRESHOLDS = (("chaos", 30.0), ("goldilocks_2", 20.0), ("goldilocks_1", 15.0))

BIAS_NEUTRAL_BAND = 0.2  # |bias_lfi| <= band -> 'neutral'

# Columns of the seed's ml_feature_snapshots table (beyond id / tracked_idea_id), each with
# its DECIMAL scale (None: not a decimal).
SNAPSHOT_COLUMNS: dict[str, int | None] = {
    "snapshot_time": None,
    "feature_set_version": None,
    "feature_extractor_version": None,
    "gex_calc_version": None,
    "vix_regime_classifier_version": None,
    "spot_price": 2,
    "spot_5m_return": 6,
    "spot_15m_return": 6,
    "spot_1h_return": 6,
    "spot_1d_return": 6,
    "intraday_high": 2,
    "intraday_low": 2,
    "range_position": 4,
    "vix_level": 2,
    "vix_regime": None,
    "vix_term_slope": 4,
    "iv_rank_30d": 4,
    "iv_percentile_30d": 4,
    "gex_total": 2,
    "gex_call_wall": 2,
    "gex_put_wall": 2,
    "gex_gamma_flip": 2,
    "spot_vs_call_wall": 4,
    "spot_vs_put_wall": 4,
    "spot_vs_gamma_flip": 4,
    "market_mode": None,
    "bias_lfi": 4,
    "bias_direction": None,
    "minutes_since_open": None,
    "day_of_week": None,
    "is_opex_week": None,
    "days_to_monthly_opex": None,
    "es_futures_premium": 4,
    "tnx_level": 3,
    "dxy_level": 2,
}

# ---------------------------------------------------------------------------------------
# Market snapshots and history
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """What the market looked like at one instant (all levels as published)."""

    time: datetime            # aware UTC, millisecond precision
    spot: float
    vix: float
    vix3m: float
    gex_total: float          # dollar gamma per 1% move, signed
    gex_call_wall: float | None   # GEX structure, market mode and bias: None = unknown (a
    gex_put_wall: float | None    # user's stream may not have them); features derived from
    gex_gamma_flip: float | None  # them are missing values then
    market_mode: str | None   # 'pin' | 'trend' | 'chop' (simulator vocabulary)
    bias_lfi: float | None    # -1 .. +1
    es_futures_premium: float | None = None
    tnx_level: float | None = None
    dxy_level: float | None = None
    symbol: str = "SPX"


def classify_vix_regime(vix: float | Decimal | None) -> str | None:
    """'chaos' (>= 30), 'goldilocks_2' [20, 30), 'goldilocks_1' [15, 20), 'zombieland' (< 15)."""
    if vix is None:
        return None
    v = float(vix)
    if math.isnan(v):
        return None
    for name, lower in VIX_REGIME_THRESHOLDS:
        if v >= lower:
            return name
    return "zombieland"


def classify_bias_direction(bias_lfi: float | None) -> str | None:
    if bias_lfi is None:
        return None
    if bias_lfi > BIAS_NEUTRAL_BAND:
        return "bullish"
    if bias_lfi < -BIAS_NEUTRAL_BAND:
        return "bearish"
    return "neutral"


class MarketHistory:
    """Time-ordered market snapshots with O(log n) point-in-time lookups.

    Built from any iterable (sorted on construction); `append` must keep time strictly
    increasing. Readers always pass an `as_of` and see nothing after it.
    """

    __slots__ = ("_snaps", "_ms", "_session", "_session_first", "_session_last", "_sessions")

    def __init__(self, snapshots: Iterable[MarketSnapshot] = ()):
        self._snaps: list[MarketSnapshot] = []
        self._ms: list[int] = []
        self._session: list[int] = []          # NY date ordinal per snapshot
        self._sessions: list[int] = []         # distinct session ordinals, increasing
        self._session_first: dict[int, int] = {}
        self._session_last: dict[int, int] = {}
        self.extend(sorted(snapshots, key=lambda s: s.time))

    def __len__(self) -> int:
        return len(self._snaps)

    def __iter__(self):
        return iter(self._snaps)

    def append(self, snap: MarketSnapshot) -> None:
        ms = epoch_ms(snap.time)
        if self._ms and ms <= self._ms[-1]:
            raise ValueError(f"snapshot at {snap.time.isoformat()} is not after the last one")
        i = len(self._snaps)
        self._snaps.append(snap)
        self._ms.append(ms)
        s = session_date(snap.time).toordinal()
        self._session.append(s)
        if s not in self._session_first:
            self._session_first[s] = i
            self._sessions.append(s)
        self._session_last[s] = i

    def extend(self, snaps: Iterable[MarketSnapshot]) -> None:
        for s in snaps:
            self.append(s)

    def index_at(self, as_of: datetime) -> int:
        """Index of the last snapshot with time <= as_of, or -1."""
        return bisect.bisect_right(self._ms, epoch_ms(as_of)) - 1

    def at(self, as_of: datetime) -> MarketSnapshot | None:
        i = self.index_at(as_of)
        return self._snaps[i] if i >= 0 else None

    def snapshots_until(self, as_of: datetime) -> list[MarketSnapshot]:
        return self._snaps[: self.index_at(as_of) + 1]

    # internal, index-based helpers used by extraction -------------------------------
    def _index_at_ms(self, ms: int, hi: int) -> int:
        return bisect.bisect_right(self._ms, ms, 0, hi + 1) - 1


@dataclass(frozen=True, slots=True)
class MarketContext:
    """A market context: an id (shared by every idea generated against it) and an as-of."""

    context_id: str
    as_of: datetime
    history: MarketHistory


def _r(x: float | None, scale: int) -> float | None:
    if x is None:
        return None
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None
    return round(float(x), scale)


def _rel(level: float | None, spot: float, sign: float) -> float | None:
    """sign x (level - spot) / spot, rounded like its column; None when the level is unknown."""
    if level is None:
        return None
    return _r(sign * (level - spot) / spot, 4)


def extract_market_features(context: MarketContext | tuple) -> dict[str, Any]:
    """Every market feature of the seed's table, as of `context.as_of`.

    Uses only snapshots with time <= as_of. Raises LookupError when there is none.
    Returns a dict: the SNAPSHOT_COLUMNS (except the version stamps and snapshot_time are
    included too) as floats / ints / str / bool, quantised to their column scale.
    """
    if not isinstance(context, MarketContext):
        context = MarketContext(*context)
    h = context.history
    as_of = context.as_of
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=timezone.utc)
    i = h.index_at(as_of)
    if i < 0:
        raise LookupError(f"no market snapshot at or before {as_of.isoformat()}")
    snap = h._snaps[i]
    spot = snap.spot
    ms_now = epoch_ms(as_of)

    def ret(minutes: int) -> float | None:
        j = h._index_at_ms(ms_now - minutes * 60_000, i)
        if j < 0:
            return None
        prev = h._snaps[j].spot
        return spot / prev - 1.0 if prev else None

    sess = session_date(as_of)
    sess_ord = sess.toordinal()
    # Previous session's close: last snapshot of the latest earlier session.
    k = bisect.bisect_left(h._sessions, sess_ord)
    prev_close = None
    if k > 0:
        prev_close = h._snaps[h._session_last[h._sessions[k - 1]]].spot
    spot_1d = spot / prev_close - 1.0 if prev_close else None

    first = h._session_first.get(sess_ord)
    if first is not None and first <= i:
        spots = [s.spot for s in h._snaps[first: i + 1]]
        hi, lo = max(spots), min(spots)
    else:  # as_of before today's first snapshot: only the current one is known today
        hi = lo = spot
    range_position = (spot - lo) / (hi - lo) if hi > lo else 0.5

    # IV rank / percentile over the previous 30 sessions' closing VIX (>= 5 needed).
    closes = [h._snaps[h._session_last[s]].vix for s in h._sessions[max(0, k - 30): k]]
    vix = snap.vix
    if len(closes) >= 5:
        lo_v, hi_v = min(closes), max(closes)
        iv_rank = (vix - lo_v) / (hi_v - lo_v) if hi_v > lo_v else 0.5
        iv_rank = min(1.0, max(0.0, iv_rank))
        iv_pct = sum(1 for c in closes if c < vix) / len(closes)
    else:
        iv_rank = iv_pct = None

    open_utc = session_open_utc(sess)
    minutes_since_open = int((as_of - open_utc).total_seconds() // 60)

    return {
        "snapshot_time": utc_ms(as_of),
        **VERSIONS,
        "spot_price": _r(spot, 2),
        "spot_5m_return": _r(ret(5), 6),
        "spot_15m_return": _r(ret(15), 6),
        "spot_1h_return": _r(ret(60), 6),
        "spot_1d_return": _r(spot_1d, 6),
        "intraday_high": _r(hi, 2),
        "intraday_low": _r(lo, 2),
        "range_position": _r(range_position, 4),
        "vix_level": _r(vix, 2),
        "vix_regime": classify_vix_regime(vix),
        "vix_term_slope": _r((snap.vix3m - vix) / vix if vix else None, 4),
        "iv_rank_30d": _r(iv_rank, 4),
        "iv_percentile_30d": _r(iv_pct, 4),
        "gex_total": _r(snap.gex_total, 2),
        "gex_call_wall": _r(snap.gex_call_wall, 2),
        "gex_put_wall": _r(snap.gex_put_wall, 2),
        "gex_gamma_flip": _r(snap.gex_gamma_flip, 2),
        "spot_vs_call_wall": _rel(snap.gex_call_wall, spot, 1.0),
        "spot_vs_put_wall": _rel(snap.gex_put_wall, spot, -1.0),
        "spot_vs_gamma_flip": _rel(snap.gex_gamma_flip, spot, -1.0),
        "market_mode": snap.market_mode,
        "bias_lfi": _r(snap.bias_lfi, 4),
        "bias_direction": classify_bias_direction(_r(snap.bias_lfi, 4)),
        "minutes_since_open": minutes_since_open,
        "day_of_week": sess.weekday(),  # 0 = Monday
        "is_opex_week": is_opex_week(sess),
        "days_to_monthly_opex": days_to_monthly_opex(sess),
        "es_futures_premium": _r(snap.es_futures_premium, 4),
        "tnx_level": _r(snap.tnx_level, 3),
        "dxy_level": _r(snap.dxy_level, 2),
    }


class MarketContextCache:
    """Market features per context id, computed once and reused by every idea (bounded LRU)."""

    def __init__(self, maxsize: int = 512):
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self._data: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, context_id: str) -> bool:
        return context_id in self._data

    def get(self, context_id: str) -> dict[str, Any] | None:
        feats = self._data.get(context_id)
        if feats is not None:
            self._data.move_to_end(context_id)
            self.hits += 1
        return feats

    def put(self, context_id: str, features: dict[str, Any]) -> None:
        self._data[context_id] = features
        self._data.move_to_end(context_id)
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def get_or_compute(
        self,
        context: MarketContext,
        compute: Callable[[MarketContext], dict[str, Any]] = extract_market_features,
    ) -> dict[str, Any]:
        feats = self.get(context.context_id)
        if feats is None:
            self.misses += 1
            feats = compute(context)
            self.put(context.context_id, feats)
        return feats


# ---------------------------------------------------------------------------------------
# Per-idea features
# ---------------------------------------------------------------------------------------

def _field(idea: Any, name: str, default: Any = None) -> Any:
    if isinstance(idea, Mapping):
        return idea.get(name, default)
    return getattr(idea, name, default)


def extract_idea_features(idea: Any, market_features: Mapping[str, Any]) -> dict[str, Any]:
    """The full feature dict for one idea: the (cached) market features + the strategy group.

    `idea` is any object or mapping with strategy, side, direction, strike, width, dte and
    score (the rule score, reported as `original_score`).
    """
    if isinstance(idea, Mapping):
        g = idea.get
        strategy, side, direction = g("strategy"), g("side"), g("direction", "long")
        strike, width, dte, score = g("strike"), g("width"), g("dte"), g("score")
    else:
        strategy, side = idea.strategy, idea.side
        direction = getattr(idea, "direction", "long")
        strike, width, dte = idea.strike, idea.width, idea.dte
        score = getattr(idea, "score", None)
    spot = market_features["spot_price"]
    out = dict(market_features)
    out["strategy_type"] = strategy
    out["side"] = side
    out["direction"] = direction
    out["dte"] = dte
    out["width"] = width
    out["strike_vs_spot"] = round((float(strike) - spot) / spot, 6) if spot else None
    out["original_score"] = round(float(score), 2) if score is not None else None
    return out


def feature_snapshot_row(features: Mapping[str, Any]) -> dict[str, Any]:
    """The `ml_feature_snapshots` columns (except id and tracked_idea_id) from a feature
    dict: decimals as Decimal at their column's scale, the rest as is."""
    row: dict[str, Any] = {}
    for col, scale in SNAPSHOT_COLUMNS.items():
        v = features.get(col)
        if scale is not None and v is not None:
            v = quantize(float(v), scale)
        row[col] = v
    return row


MISSING_CATEGORY = "__missing__"


def _compile(feature_list: Sequence[str]):
    return tuple((name, name in CATEGORICAL_FEATURES) for name in feature_list)


_COMPILED: dict[tuple[str, ...], tuple] = {}


def to_vector(features: Mapping[str, Any], feature_list: Sequence[str]) -> list:
    """Values in `feature_list` order: categoricals as str (missing -> '__missing__'),
    the rest as float (bool -> 0/1, missing -> NaN)."""
    key = tuple(feature_list)
    spec = _COMPILED.get(key)
    if spec is None:
        spec = _COMPILED[key] = _compile(feature_list)
    nan = math.nan
    out = []
    append = out.append
    get = features.get
    for name, categorical in spec:
        v = get(name)
        if categorical:
            append(MISSING_CATEGORY if v is None else str(v))
        elif v is None:
            append(nan)
        else:
            append(float(v))
    return out


def to_matrix(rows: Iterable[Mapping[str, Any]], feature_list: Sequence[str]) -> list[list]:
    return [to_vector(r, feature_list) for r in rows]


def categorical_indices(feature_list: Sequence[str]) -> list[int]:
    """Positions of the categorical features in `feature_list` (CatBoost's cat_features)."""
    return [i for i, n in enumerate(feature_list) if n in CATEGORICAL_FEATURES]
