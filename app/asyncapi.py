"""/asyncapi.json: the topic catalogue for downstream analytics consumers."""
from __future__ import annotations

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from bus.consumer import stream_of
from bus.envelope import EventSchema

CE_HEADERS = {
    "type": "object",
    "description": "CloudEvents 1.0 Kafka binary-mode headers",
    "properties": {h: {"type": "string"} for h in
                   ("ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "ce_subject",
                    "content-type", "event_seq")},
}


def _json_schema(schema_cls) -> dict:
    spec = APISpec("x", "1", "3.0.3", plugins=[MarshmallowPlugin()])
    plugin = spec.plugins[0]
    return plugin.converter.schema2jsonschema(schema_cls)


def document(ext) -> dict:
    prefix = ext.config.get("KAFKA_TOPIC_PREFIX", "")
    groups: dict[str, list[str]] = {}
    for group, subs in ext.plugins.subscriptions().items():
        for key in subs:
            stream, qualified = stream_of(key)
            groups.setdefault(stream, [])
            if group not in groups[stream]:
                groups[stream].append(group)
    channels, messages = {}, {}
    envelope = _json_schema(EventSchema)
    for plugin, topic in ext.topics:
        refs = []
        for type_, schema in topic.events.items():
            name = f"{topic.name}.{type_}"
            payload = _json_schema(schema) if schema is not None else {"type": "object"}
            env = {**envelope, "properties": {**envelope["properties"], "payload": payload,
                                              "type": {"type": "string", "enum": [type_]}}}
            messages[name] = {
                "name": type_, "title": type_,
                "summary": (getattr(schema, "__doc__", None) or "").strip() or type_,
                "contentType": "application/json",
                "headers": CE_HEADERS,
                "payload": env,
                "bindings": {"kafka": {"key": {"type": "string", "description": topic.key}}},
                "x-cloudevents-type": f"tradeloop.{topic.name.split('.')[0]}.{type_}",
            }
            refs.append({"$ref": f"#/components/messages/{name}"})
        channels[prefix + topic.name] = {
            "description": topic.description,
            "x-owner": plugin,
            "x-consumer-groups": groups.get(topic.name, []),
            "subscribe": {"operationId": f"read_{topic.name.replace('.', '_')}",
                          "message": {"oneOf": refs} if refs else {}},
        }
    for group in ext.plugins.subscriptions():
        channels[f"{prefix}dlq.{group}"] = {
            "description": (f"Dead letters of consumer group {group!r}: envelopes its handlers kept "
                            "failing on (also in the bus_dead_letters table; `tradeloop deadletters list`). "
                            "Headers add `error`."),
            "x-owner": "host",
            "x-consumer-groups": [],
            "subscribe": {"operationId": f"read_dlq_{group}", "message": {
                "contentType": "application/json", "headers": CE_HEADERS, "payload": envelope}},
        }
    return {
        "asyncapi": "2.6.0",
        "info": {"title": "tradeloop events", "version": "1",
                 "description": ("Every message is an event envelope (JSON). Key = aggregate_id, so "
                                 "events of one aggregate are ordered. event_seq is gapless per topic. "
                                 "Delivery is at-least-once: deduplicate by event_id.")},
        "servers": {"kafka": {"url": ext.config.get("KAFKA_BOOTSTRAP_SERVERS") or "in-process",
                              "protocol": "kafka"}},
        "channels": channels,
        "components": {"messages": messages},
    }
