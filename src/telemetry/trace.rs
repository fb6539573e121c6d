//! Herald's spans, and trace contexts as they travel: a message keeps the W3C
//! `traceparent` of the request that created it, a claimed delivery carries its claim's, and
//! each delivery attempt is a span whose parent is the claim and which links to the request,
//! however much later it runs.
//!
//! The spans are `tracing` spans (target `herald::trace`), made only when traces are on;
//! `tracing-opentelemetry` turns them into OpenTelemetry spans. A context is carried as its
//! `traceparent` text so that the delivery engine needs no OpenTelemetry type.

use std::collections::HashMap;

use opentelemetry::{
    propagation::TextMapPropagator,
    trace::{SpanContext, TraceContextExt},
    Context,
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::{field::Empty, Span};

use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::delivery::{Disposition, Job, Outcome};

const TRACEPARENT: &str = "traceparent";

/// The `traceparent` of a span context (`None` for an invalid one: no trace).
pub fn format(context: &SpanContext) -> Option<String> {
    if !context.is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    let cx = Context::new().with_remote_span_context(context.clone());
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// The span context a `traceparent` names (`None` if it names none).
pub fn parse(traceparent: &str) -> Option<SpanContext> {
    let carrier = HashMap::from([(TRACEPARENT.to_string(), traceparent.to_string())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    let context = cx.span().span_context().clone();
    context.is_valid().then_some(context)
}

/// The `traceparent` of `span` (`None` when traces are off).
pub fn traceparent_of(span: &Span) -> Option<String> {
    format(span.context().span().span_context())
}

/// The `traceparent` of the span the caller runs in: an API request's, in a handler.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&Span::current())
}

/// A claim that leased `jobs` (`ordered`: of ordered endpoints), made once it has answered
/// and only if it leased something (a claim that finds nothing, each poll tick, would be
/// noise); `took` is the query's time. Gives each job its trace: the claim as parent.
pub fn claimed(ordered: bool, took: std::time::Duration, jobs: &mut [Job]) {
    if jobs.is_empty() {
        return;
    }
    let span = tracing::info_span!(target: "herald::trace", "claim",
        otel.name = if ordered { "herald claim ordered" } else { "herald claim" },
        otel.kind = "internal",
        herald.ordered = ordered,
        herald.leased = jobs.len() as i64,
        herald.claim_ms = took.as_secs_f64() * 1000.0,
    );
    let claim = traceparent_of(&span);
    for job in jobs {
        if let Some(trace) = job.trace.as_mut() {
            trace.claim.clone_from(&claim);
        }
    }
}

/// One delivery attempt: a client span, child of its claim, linked to the request that
/// created the message. Its outcome is recorded by [`attempted`].
pub fn attempt_span(job: &Job) -> Span {
    let trace = job.trace.as_deref();
    let host = url::Url::parse(&job.endpoint.url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let span = tracing::info_span!(target: "herald::trace", "delivery attempt",
        otel.name = "herald deliver",
        otel.kind = "client",
        otel.status_code = Empty,
        herald.app_id = trace.map_or("", |t| t.app_id.as_str()),
        herald.endpoint_id = %job.endpoint.id,
        herald.message_id = %job.message_id,
        herald.event_type = %job.event_type,
        herald.attempt = job.attempts.max(0) as i64 + 1,
        herald.manual = job.manual,
        http.request.method = "POST",
        server.address = %host,
        http.response.status_code = Empty,
        herald.duration_ms = Empty,
        herald.outcome = Empty,
        error.message = Empty,
    );
    if let Some(claim) = trace.and_then(|t| t.claim.as_deref()).and_then(parse) {
        // Fails only when spans go nowhere (then there is nothing to parent).
        let _ = span.set_parent(Context::new().with_remote_span_context(claim));
    }
    if let Some(created) = trace.and_then(|t| t.created.as_deref()).and_then(parse) {
        span.add_link(created);
    }
    span
}

/// Records an attempt's outcome on its span.
pub fn attempted(span: &Span, outcome: &Outcome) {
    span.record("herald.outcome", disposition_name(&outcome.disposition));
    if let Some(a) = &outcome.attempt {
        span.record("herald.duration_ms", a.duration_ms as i64);
        if let Some(code) = a.status_code {
            span.record("http.response.status_code", code as i64);
        }
        if let Some(error) = &a.error {
            span.record("error.message", error.as_str());
        }
        span.record("otel.status_code", if a.succeeded { "OK" } else { "ERROR" });
    }
}

fn disposition_name(d: &Disposition) -> &'static str {
    match d {
        Disposition::Succeeded => "succeeded",
        Disposition::Retry { .. } => "retry",
        Disposition::Dead { .. } => "dead",
        Disposition::DisableEndpoint { .. } => "endpoint disabled",
        Disposition::Defer { .. } => "deferred",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_goes_there_and_back() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = parse(text).expect("a valid traceparent");
        assert_eq!(
            context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(context.span_id().to_string(), "00f067aa0ba902b7");
        assert!(context.is_sampled());
        assert_eq!(format(&context).as_deref(), Some(text));
    }

    #[test]
    fn what_names_no_trace_is_none() {
        for text in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        ] {
            assert!(parse(text).is_none(), "{text}");
        }
        assert_eq!(format(&SpanContext::empty_context()), None);
    }

    #[test]
    fn without_an_exporter_spans_name_no_trace() {
        // No OpenTelemetry layer here: spans exist for the logs only.
        assert_eq!(traceparent_of(&tracing::info_span!("claim")), None);
        assert_eq!(current_traceparent(), None);
    }
}
