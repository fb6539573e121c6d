//! Inbound webhooks: providers (Stripe, GitHub, Shopify, Slack, Svix, Circle, …) call a
//! source's secret URL; Herald verifies the request by the source's scheme, writes it
//! durably before answering 2xx, drops duplicates of the provider's event id within a
//! window, and forwards what it accepts to the source's endpoints through the delivery
//! engine (signed with Standard Webhooks, the provider's body unchanged).
//!
//! * [`source`]: source types and their settings.
//! * [`request`]: a received request, and why one is refused.
//! * [`verify`]: one module per scheme, plain functions tested against each provider's
//!   documented scheme.
//! * [`forward`]: what a forwarded message carries besides the body.
//!
//! The HTTP side is `api::ingest` (Svix's Ingest API, and the receiving route); the write
//! is one statement per batch of requests, `store::ingest` (`herald.receive_events`).

pub mod forward;
pub mod request;
pub mod source;
pub mod verify;
