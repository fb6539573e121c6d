#!/usr/bin/env python3
"""Writes openapi.json: the OpenAPI document of the API Herald serves.

Herald implements a subset of the Svix API, so its document is the Svix server's own
(MIT licence, see the notice in the output's info.description), restricted to the routes
Herald serves, patched where the current official SDK and the older document disagree, and
extended with Herald's own routes.

    python3 scripts/gen-openapi.py path/to/svix-openapi.json > openapi.json

tests/integration/openapi.rs checks the result against the router.
"""
import json
import re
import sys

SVIX_ROUTES = {
    "/api/v1/app": ["get", "post"],
    "/api/v1/app/{app_id}": ["get", "put", "patch", "delete"],
    "/api/v1/app/{app_id}/attempt/endpoint/{endpoint_id}": ["get"],
    "/api/v1/app/{app_id}/attempt/msg/{msg_id}": ["get"],
    "/api/v1/app/{app_id}/endpoint": ["get", "post"],
    "/api/v1/app/{app_id}/endpoint/{endpoint_id}": ["get", "put", "patch", "delete"],
    "/api/v1/app/{app_id}/endpoint/{endpoint_id}/headers": ["get", "put", "patch"],
    "/api/v1/app/{app_id}/endpoint/{endpoint_id}/msg": ["get"],
    "/api/v1/app/{app_id}/endpoint/{endpoint_id}/recover": ["post"],
    "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret": ["get"],
    "/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret/rotate": ["post"],
    "/api/v1/app/{app_id}/endpoint/{endpoint_id}/send-example": ["post"],
    "/api/v1/app/{app_id}/endpoint/{endpoint_id}/stats": ["get"],
    "/api/v1/app/{app_id}/msg": ["get", "post"],
    "/api/v1/app/{app_id}/msg/{msg_id}": ["get"],
    "/api/v1/app/{app_id}/msg/{msg_id}/content": ["delete"],
    "/api/v1/app/{app_id}/msg/{msg_id}/attempt/{attempt_id}": ["get"],
    "/api/v1/app/{app_id}/msg/{msg_id}/endpoint": ["get"],
    "/api/v1/app/{app_id}/msg/{msg_id}/endpoint/{endpoint_id}/resend": ["post"],
    "/api/v1/event-type": ["get", "post"],
    "/api/v1/event-type/{event_type_name}": ["get", "put", "patch", "delete"],
    "/api/v1/health": ["get", "head"],
    "/api/v1/health/ping": ["get", "head"],
}

ERRORS = {
    "401": {"description": "Missing or invalid token", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HttpErrorOut"}}}},
    "404": {"description": "Not found", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HttpErrorOut"}}}},
    "422": {"description": "Validation error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}}},
}


def json_response(description, schema):
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def herald_routes():
    dead_letter = {
        "type": "object",
        "required": ["id", "appId", "msgId", "endpointId", "eventType", "attempts", "createdAt", "deadAt"],
        "properties": {
            "id": {"type": "string", "description": "dlv_<n>: the delivery"},
            "appId": {"type": "string"},
            "msgId": {"type": "string"},
            "endpointId": {"type": "string"},
            "eventType": {"type": "string"},
            "attempts": {"type": "integer"},
            "lastStatusCode": {"type": "integer", "nullable": True},
            "lastError": {"type": "string", "nullable": True},
            "reason": {"type": "string", "nullable": True},
            "createdAt": {"type": "string", "format": "date-time"},
            "deadAt": {"type": "string", "format": "date-time"},
        },
    }
    replayed = json_response("Replayed", {"type": "object", "required": ["replayed"], "properties": {"replayed": {"type": "integer"}}})
    page = [
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 250}},
        {"name": "iterator", "in": "query", "schema": {"type": "string"}},
    ]
    window = [
        {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
        {"name": "until", "in": "query", "schema": {"type": "string", "format": "date-time"}},
    ]
    return {
        "/api/v1/dead-letter": {"get": {
            "operationId": "herald.dead-letter.list", "tags": ["Dead letters"],
            "summary": "List dead deliveries (out of attempts, or their endpoint was disabled)",
            "parameters": page + window + [
                {"name": "app_id", "in": "query", "schema": {"type": "string"}},
                {"name": "endpoint_id", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {"200": json_response("A page of dead letters", {
                "type": "object", "required": ["data", "done", "iterator"],
                "properties": {"data": {"type": "array", "items": dead_letter}, "done": {"type": "boolean"},
                               "iterator": {"type": "string", "nullable": True}, "prevIterator": {"type": "string", "nullable": True}}}), **ERRORS},
        }},
        "/api/v1/dead-letter/replay": {"post": {
            "operationId": "herald.dead-letter.replay-bulk", "tags": ["Dead letters"],
            "summary": "Replay every dead delivery that matches (all filters optional)",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object", "properties": {
                "appId": {"type": "string"}, "endpointId": {"type": "string"},
                "since": {"type": "string", "format": "date-time"}, "until": {"type": "string", "format": "date-time"}}}}}},
            "responses": {"202": replayed, **ERRORS},
        }},
        "/api/v1/dead-letter/{delivery_id}/replay": {"post": {
            "operationId": "herald.dead-letter.replay", "tags": ["Dead letters"],
            "summary": "Replay one dead delivery with a fresh retry schedule",
            "parameters": [{"name": "delivery_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"202": replayed, **ERRORS},
        }},
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/enable": {"post": {
            "operationId": "herald.endpoint.enable", "tags": ["Endpoint"],
            "summary": "Re-enable a disabled endpoint (its dead letters stay dead until replayed)",
            "parameters": [
                {"name": "app_id", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "endpoint_id", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "responses": {"200": json_response("The endpoint", {"$ref": "#/components/schemas/EndpointOut"}), **ERRORS},
        }},
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/circuit": {"get": {
            "operationId": "herald.endpoint.circuit", "tags": ["Endpoint"],
            "summary": "The endpoint's circuit breaker: overall state and per dispatcher instance",
            "parameters": [
                {"name": "app_id", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "endpoint_id", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "responses": {"200": json_response("Breaker state", {
                "type": "object", "required": ["endpointId", "state", "instances"],
                "properties": {
                    "endpointId": {"type": "string"},
                    "state": {"type": "string", "enum": ["closed", "open", "half-open"]},
                    "instances": {"type": "array", "items": {"type": "object", "properties": {
                        "instance": {"type": "string"}, "state": {"type": "string"}, "failures": {"type": "integer"},
                        "openUntil": {"type": "string", "format": "date-time", "nullable": True},
                        "updatedAt": {"type": "string", "format": "date-time"}}}}}}), **ERRORS},
        }},
        "/metrics": {"get": {
            "operationId": "herald.metrics", "tags": ["Health"],
            "summary": "Prometheus metrics (OpenMetrics text): deliveries, latency, queue depth, breakers, actors, pool",
            "security": [], "responses": {"200": {"description": "OpenMetrics text exposition",
                                                  "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}}},
        }},
        "/api/v1/openapi.json": {"get": {
            "operationId": "herald.openapi", "tags": ["Health"], "summary": "This document",
            "security": [], "responses": {"200": {"description": "OpenAPI 3 document"}},
        }},
    }


def main(reference):
    ref = json.load(open(reference))
    paths = {}
    for path, methods in SVIX_ROUTES.items():
        paths[path] = {m: ref["paths"][path][m] for m in methods}
    # Where SDK 2.x and the older document disagree, the SDK wins.
    paths["/api/v1/app/{app_id}/endpoint/{endpoint_id}/secret/rotate"]["post"]["responses"] = {
        "200": json_response("The new secret", {"$ref": "#/components/schemas/EndpointSecretOut"}), **ERRORS}
    paths["/api/v1/app/{app_id}/msg/{msg_id}/endpoint/{endpoint_id}/resend"]["post"]["responses"].setdefault(
        "202", json_response("Queued", {"type": "object"}))
    paths.update(herald_routes())
    # Herald's health is a readiness check that reports each component (svix-server's shape).
    status = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string", "enum": ["OK", "ERROR"]}}}
    health = {"type": "object", "required": ["database"], "properties": {
        "database": status, "queue": status,
        "actors": {"type": "object", "additionalProperties": {"type": "object", "properties": {
            "status": {"type": "string", "enum": ["OK", "ERROR"]}, "heartbeatAgeMs": {"type": "integer"},
            "restarts": {"type": "integer"}, "inFlight": {"type": "integer"}}}}}}
    for method in ("get", "head"):
        op = paths["/api/v1/health"][method]
        op["security"] = []
        op["description"] = ("Readiness: 200 when the database answers and every dispatcher actor has sent a "
                             "heartbeat recently; 503 otherwise. Each component is reported.")
        op["responses"] = {"200": json_response("Ready", health), "503": json_response("Not ready", health)}
    for method in ("get", "head"):
        paths["/api/v1/health/ping"][method]["security"] = []
        paths["/api/v1/health/ping"][method]["description"] = "Liveness: 204 whenever the process serves HTTP; never touches the database."

    schemas = ref["components"]["schemas"]
    schemas["EndpointOut"]["properties"]["disabledReason"] = {"type": "string", "nullable": True, "description": "Herald: why the endpoint was disabled"}
    schemas["EndpointOut"]["properties"]["disabledAt"] = {"type": "string", "format": "date-time", "nullable": True}
    schemas["MessageAttemptOut"]["properties"]["error"] = {"type": "string", "nullable": True, "description": "Herald: why there was no response"}

    used, todo = set(), set(re.findall(r"#/components/schemas/([A-Za-z0-9_]+)", json.dumps(paths)))
    while todo:
        name = todo.pop()
        if name in used:
            continue
        used.add(name)
        todo |= set(re.findall(r"#/components/schemas/([A-Za-z0-9_]+)", json.dumps(schemas[name])))
    doc = {
        "openapi": ref["openapi"],
        "info": {
            "title": "Herald API",
            "version": "1.0.0",
            "description": "Herald's HTTP API: the Svix API routes Herald implements (so the official Svix SDKs work "
                           "unchanged) plus Herald's own. Derived from the Svix server's OpenAPI document, "
                           "Copyright (c) Svix, MIT licence.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {k: schemas[k] for k in sorted(used)},
            "securitySchemes": ref["components"].get("securitySchemes", {}),
        },
        "security": ref.get("security", [{"HTTPBearer": []}]),
    }
    json.dump(doc, sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
