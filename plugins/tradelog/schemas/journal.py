"""Journal entries: the body, list arguments and representations."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app import fields as tf
from plugins.tradelog.schemas.common import PHASES, Id, Tags


class JournalIn(Schema):
    position_id = Id(required=True)
    object_of_reflection = fields.String(required=True, validate=[validate.Length(min=1, max=10_000),
                                                                  validate.Regexp(r"\S", error="must not be blank")])
    bias_flags = Tags()
    notes = fields.String(allow_none=True, validate=validate.Length(max=20_000))
    phase = fields.String(required=True, validate=validate.OneOf(PHASES))
    risk_artifact_id = fields.String(allow_none=True, load_default=None, validate=validate.Length(min=1, max=64),
                                     metadata={"description": "the riskgraph artifact looked at (default: the "
                                                              "latest linked to the position)"})
    risk_strategy_id = fields.String(allow_none=True, load_default=None, validate=validate.Length(min=1, max=64),
                                     metadata={"description": "a riskgraph strategy looked at"})
    risk_strategy_version = fields.Integer(allow_none=True, load_default=None,
                                           validate=validate.Range(min=1, max=2_000_000_000))

    @validates_schema
    def _strategy(self, data, **kwargs):
        if (data.get("risk_strategy_id") is None) != (data.get("risk_strategy_version") is None):
            raise ValidationError({"risk_strategy_version": ["give risk_strategy_id and risk_strategy_version "
                                                             "together"]})


class JournalListArgs(Schema):
    position_id = Id(required=True)


class JournalEntry(Schema):
    id = fields.String(required=True)
    position_id = fields.String(required=True)
    object_of_reflection = fields.String(required=True)
    bias_flags = fields.List(fields.String(), allow_none=True)
    notes = fields.String(allow_none=True)
    phase = fields.String(required=True, validate=validate.OneOf(PHASES))
    created_at = tf.UtcDateTime(required=True)
    position_version = fields.Integer(allow_none=True, metadata={"description": "the position's version when "
                                                                               "the entry was written"})
    risk_artifact_id = fields.String(allow_none=True)
    risk_strategy_id = fields.String(allow_none=True)
    risk_strategy_version = fields.Integer(allow_none=True)


class JournalLinks(Schema):
    position = fields.String(required=True, metadata={"description": "the position at the entry's version"})
    snapshot = fields.String(required=True, metadata={"description": "its snapshot at that version"})
    risk_artifact = fields.String(allow_none=True, metadata={"description": "riskgraph's artifact (its curves)"})
    risk_strategy_versions = fields.String(allow_none=True)


class JournalEntryLinked(JournalEntry):
    links = fields.Nested(JournalLinks, required=True)
