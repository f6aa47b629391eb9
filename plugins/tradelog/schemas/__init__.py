"""Marshmallow schemas: API bodies and query arguments, representations, event payloads.

Representations follow the seed's frontend types (``Position``, ``Leg``, ``Fill``,
``JournalEntry``, ``PendingOrder``, ``PositionMetadata``); money and prices are Decimal JSON
strings, times UTC ISO-8601 with milliseconds.

One module per topic; every public name is re-exported here, so
``from plugins.tradelog.schemas import X`` and ``schemas.X`` work as before.
"""
from __future__ import annotations

from plugins.tradelog.schemas.common import (STATUSES, INSTRUMENTS, RIGHTS, PHASES, SETTLEMENT_KINDS,
    SETTLEMENT_TIMES, SETTLEMENT_TYPES, FILL_KINDS, ORDER_STATUSES, ORDER_TYPES, STRATEGIES, GROUP_BYS,
    MAX_LEGS, MAX_QTY, MAX_PRICE, Id, Qty, MoneyIn, MoneyOut, Price, Tags, IsoDate, Time, Day)
from plugins.tradelog.schemas.positions import (LegIn, PositionIn, LegChange, PositionPatch,
    PositionListArgs, AsOfArgs, MarkIn, MarksIn, RiskArtifactIn, Leg, Position, MarkOut, Marks,
    RiskArtifactRef, EventOut)
from plugins.tradelog.schemas.fills import (FillIn, CloseIn, LegSettleIn, SettlementPriceIn, RollCloseIn,
    RollOpenIn, RollIn, Fill, FillResult, Settlement, SettleResult, SettlementPrice, Roll, RollResult,
    ChainPosition, Chain)
from plugins.tradelog.schemas.snapshots import (SnapshotLeg, Metadata, Snapshot)
from plugins.tradelog.schemas.orders import (OrderTemplateIn, OrderIn, ExecuteIn, OrderTemplateLeg,
    OrderTemplate, Order, ExecuteResult)
from plugins.tradelog.schemas.journal import (JournalIn, JournalListArgs, JournalEntry, JournalLinks,
    JournalEntryLinked)
from plugins.tradelog.schemas.stats import (DailyPnlArgs, DailyPnlDay, DailyPnlSummary, DailyPnl, Ratio,
    PerformanceBlock, StrategyPerformance, GroupPerformance, StatsArgs, Stats)
from plugins.tradelog.schemas.imports import (IMPORT_FORMATS, ImportForm, ImportFile, ReportRow,
    ReportPosition, ReportFill, ReportSettlement, ReportClosed, ImportReport, ImportFailure, ImportRecord)
from plugins.tradelog.schemas.events import (PositionCreated, LegState, FillRecorded, LegSettled,
    PositionRolled, LegsMarked, SettlementPriceRecorded, ExecutionsImported, JournalEntryCreated,
    PositionAdjusted, PositionClosed, OrderCreated, OrderCancelled, OrderFilled, RiskArtifactLinked,
    EVENTS, TOPIC)

__all__ = ['STATUSES', 'INSTRUMENTS', 'RIGHTS', 'PHASES', 'SETTLEMENT_KINDS', 'SETTLEMENT_TIMES',
           'SETTLEMENT_TYPES', 'FILL_KINDS', 'ORDER_STATUSES', 'ORDER_TYPES', 'STRATEGIES', 'GROUP_BYS',
           'MAX_LEGS', 'MAX_QTY', 'MAX_PRICE', 'Id', 'Qty', 'MoneyIn', 'MoneyOut', 'Price', 'Tags',
           'IsoDate', 'Time', 'Day', 'LegIn', 'PositionIn', 'LegChange', 'PositionPatch',
           'PositionListArgs', 'AsOfArgs', 'MarkIn', 'MarksIn', 'RiskArtifactIn', 'Leg', 'Position',
           'MarkOut', 'Marks', 'RiskArtifactRef', 'EventOut', 'FillIn', 'CloseIn', 'LegSettleIn',
           'SettlementPriceIn', 'RollCloseIn', 'RollOpenIn', 'RollIn', 'Fill', 'FillResult', 'Settlement',
           'SettleResult', 'SettlementPrice', 'Roll', 'RollResult', 'ChainPosition', 'Chain',
           'SnapshotLeg', 'Metadata', 'Snapshot', 'OrderTemplateIn', 'OrderIn', 'ExecuteIn',
           'OrderTemplateLeg', 'OrderTemplate', 'Order', 'ExecuteResult', 'JournalIn', 'JournalListArgs',
           'JournalEntry', 'JournalLinks', 'JournalEntryLinked', 'DailyPnlArgs', 'DailyPnlDay',
           'DailyPnlSummary', 'DailyPnl', 'Ratio', 'PerformanceBlock', 'StrategyPerformance',
           'GroupPerformance', 'StatsArgs', 'Stats', 'IMPORT_FORMATS', 'ImportForm', 'ImportFile',
           'ReportRow', 'ReportPosition', 'ReportFill', 'ReportSettlement', 'ReportClosed', 'ImportReport',
           'ImportFailure', 'ImportRecord', 'PositionCreated', 'LegState', 'FillRecorded', 'LegSettled',
           'PositionRolled', 'LegsMarked', 'SettlementPriceRecorded', 'ExecutionsImported',
           'JournalEntryCreated', 'PositionAdjusted', 'PositionClosed', 'OrderCreated', 'OrderCancelled',
           'OrderFilled', 'RiskArtifactLinked', 'EVENTS', 'TOPIC']
