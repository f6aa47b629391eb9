"""GET /asyncapi.json: the topic catalogue for downstream consumers."""
from __future__ import annotations


def test_catalogue_lists_topics_event_types_payload_schemas_and_consumer_groups(app_factory):
    app = app_factory(["tests.plugins.notes.plugin"])
    r = app.test_client().get("/asyncapi.json")  # public: analytics teams read it without a token
    assert r.status_code == 200
    doc = r.get_json()
    assert doc["asyncapi"].startswith("2.")
    ch = doc["channels"]["notes.events"]
    assert ch["x-owner"] == "notes"
    assert ch["x-consumer-groups"] == ["notes"]
    refs = {m["$ref"] for m in ch["subscribe"]["message"]["oneOf"]}
    assert refs == {"#/components/messages/notes.events.NoteCreated", "#/components/messages/notes.events.NoteUpdated"}
    msg = doc["components"]["messages"]["notes.events.NoteCreated"]
    env = msg["payload"]["properties"]
    assert set(env) >= {"event_id", "event_seq", "type", "aggregate_type", "aggregate_id", "aggregate_version",
                        "occurred_at", "recorded_at", "user_id", "schema_version", "payload"}
    assert env["type"]["enum"] == ["NoteCreated"]
    assert set(env["payload"]["properties"]) == {"id", "title"}      # NoteCreated's payload schema
    assert msg["x-cloudevents-type"] == "tradeloop.notes.NoteCreated"
    assert {"ce_id", "ce_type", "ce_source", "ce_specversion", "ce_time", "ce_subject"} <= set(msg["headers"]["properties"])
    assert msg["bindings"]["kafka"]["key"]["description"] == "aggregate_id"
    assert "dlq.notes" in doc["channels"]


def test_catalogue_only_has_enabled_plugins(app_factory):
    app = app_factory([])
    doc = app.test_client().get("/asyncapi.json").get_json()
    assert "notes.events" not in doc["channels"]
