//! Integration tests: a real PostgreSQL (a fresh database per test), a real Herald, and
//! wiremock receivers.

mod access;
mod api_basics;
mod api_endpoints;
mod api_ingest;
mod api_messages;
mod browser;
mod callback;
mod cli;
mod contract;
mod delivery;
mod destinations;
mod fairness;
mod ingest;
mod openapi;
mod operate;
mod operational;
mod ordered;
mod outbox;
mod partitions;
mod receiver_guide;
mod retention;
mod schemathesis;
mod sdk;
mod secrets;
mod supervision;
mod support;
mod traces;
mod ui;
