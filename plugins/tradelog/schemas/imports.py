"""Broker-file imports: the upload form and the import record / report representations."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from app import fields as tf
from plugins.tradelog.imports.formats import FORMATS


IMPORT_FORMATS = FORMATS


class ImportForm(Schema):
    format = fields.String(required=True, validate=validate.OneOf(IMPORT_FORMATS),
                           metadata={"description": "generic (our CSV), ibkr_flex (Interactive Brokers Flex Query "
                                                    "trades, CSV), tastytrade (transaction history CSV)"})
    timezone = fields.String(load_default=None, validate=validate.Length(min=1, max=64),
                             metadata={"description": "IANA zone of times without an offset (default: the "
                                                      "exchange's, America/New_York)"})
    dry_run = fields.Boolean(load_default=False, metadata={"description": "answer the report, write nothing"})
    skip_bad_rows = fields.Boolean(load_default=False, metadata={"description": "import the good rows and list the "
                                                                               "bad ones (default: a bad row "
                                                                               "rejects the file)"})


class ImportFile(Schema):
    file = fields.Raw(required=True, metadata={"type": "string", "format": "binary",
                                               "description": "the CSV file (UTF-8, at most 20 MB / 20,000 rows)"})


class ReportRow(Schema):
    line = fields.Integer(required=True)
    column = fields.String()
    reason = fields.String()
    fingerprint = fields.String()


class ReportPosition(Schema):
    position_id = fields.String(required=True)
    symbol = fields.String()
    underlying = fields.String()
    legs = fields.Integer()
    opened_at = fields.String()
    rolled_from = fields.String(allow_none=True)
    line = fields.Integer()


class ReportFill(Schema):
    line = fields.Integer(required=True)
    position_id = fields.String(required=True)
    leg_id = fields.String(required=True)
    quantity = fields.Integer(required=True)
    price = fields.String(required=True)


class ReportSettlement(Schema):
    line = fields.Integer(required=True)
    position_id = fields.String(required=True)
    leg_id = fields.String(required=True)
    kind = fields.String(required=True)
    quantity = fields.Integer()
    price = fields.String()
    delivered_quantity = fields.Integer(allow_none=True)
    delivery_line = fields.Integer(allow_none=True)


class ReportClosed(Schema):
    position_id = fields.String(required=True)
    closed_at = fields.String()
    realized_pnl = fields.String(allow_none=True)


class ImportReport(Schema):
    format = fields.String(required=True)
    timezone = fields.String(required=True)
    dry_run = fields.Boolean(required=True)
    rows = fields.Integer(required=True, metadata={"description": "data rows read (executions and bad rows)"})
    executions = fields.Integer(required=True)
    positions_created = fields.List(fields.Nested(ReportPosition), required=True)
    fills_matched = fields.List(fields.Nested(ReportFill), required=True,
                                metadata={"description": "fills recorded into positions that existed before"})
    fills_recorded = fields.Integer(required=True)
    settlements = fields.List(fields.Nested(ReportSettlement), required=True)
    positions_closed = fields.List(fields.Nested(ReportClosed), required=True)
    duplicates = fields.List(fields.Nested(ReportRow), required=True,
                             metadata={"description": "rows skipped: already imported (same fingerprint)"})
    rejected = fields.List(fields.Nested(ReportRow), required=True,
                           metadata={"description": "bad rows with line, column and reason (skip_bad_rows)"})
    warnings = fields.List(fields.Nested(ReportRow), required=True)
    realized_pnl = fields.String(required=True, metadata={"description": "realized by the imported closing fills"})


class ImportFailure(Schema):
    status = fields.Integer()
    code = fields.String(required=True, metadata={"description": "import_rejected (bad rows) or import_failed"})
    message = fields.String(required=True)
    errors = fields.Dict()
    rejected = fields.List(fields.Nested(ReportRow), metadata={"description": "the bad rows: line, column, reason"})


class ImportRecord(Schema):
    id = fields.String(required=True)
    format = fields.String(required=True, validate=validate.OneOf(IMPORT_FORMATS))
    filename = fields.String(allow_none=True)
    timezone = fields.String(required=True)
    dry_run = fields.Boolean(required=True)
    skip_bad_rows = fields.Boolean(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["queued", "succeeded", "rejected", "failed"]),
                           metadata={"description": "queued (its job has not run), succeeded, rejected (bad rows: "
                                                    "nothing imported), failed"})
    rows = fields.Integer(required=True)
    sha256 = fields.String(required=True)
    created_at = tf.UtcDateTime(required=True)
    finished_at = tf.UtcDateTime(allow_none=True)
    job_id = fields.String(allow_none=True, metadata={"description": "the job that runs it: /api/jobs/{job_id}"})
    report = fields.Nested(ImportReport, allow_none=True, metadata={"description": "once succeeded"})
    error = fields.Nested(ImportFailure, allow_none=True, metadata={"description": "once rejected or failed"})
