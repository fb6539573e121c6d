//! Integration tests: a real PostgreSQL (a fresh database per test), a real Herald, and
//! wiremock receivers.

mod api_basics;
mod api_endpoints;
mod api_ingest;
mod api_messages;
mod delivery;
mod destinations;
mod fairness;
mod openapi;
mod outbox;
mod sdk;
mod supervision;
mod support;
