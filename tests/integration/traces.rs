//! Issue 14, part 4: traces over OTLP/HTTP. Herald runs as its own process (its trace
//! exporter is the process's one subscriber), exporting to a collector inside the test; the
//! spans it exports are decoded with OpenTelemetry's own protobuf types and their parents and
//! links checked, and so are the `traceparent` headers receivers get.

use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{any_value::Value as Any, KeyValue},
    trace::v1::{span::SpanKind, Span},
};
use prost::Message;
use serde_json::json;
use wiremock::{matchers::method, Mock, MockServer, ResponseTemplate};

use crate::support::*;

/// The `herald` binary, configured only by `env`; killed when dropped.
struct Process(Child);

impl Process {
    fn start(env: &[(&str, String)]) -> Process {
        let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("HERALD_") || key == "RUST_LOG" {
                command.env_remove(key);
            }
        }
        command
            .env(
                "HERALD_CONFIG_DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
            )
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(env!("CARGO_TARGET_TMPDIR"))
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        Process(command.spawn().expect("start herald"))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute<'s>(span: &'s Span, key: &str) -> Option<&'s Any> {
    span.attributes
        .iter()
        .find(|KeyValue { key: k, .. }| k == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn text(span: &Span, key: &str) -> String {
    match attribute(span, key) {
        Some(Any::StringValue(s)) => s.clone(),
        other => panic!("{key} of {}: {other:?}", span.name),
    }
}

fn int(span: &Span, key: &str) -> i64 {
    match attribute(span, key) {
        Some(Any::IntValue(i)) => *i,
        other => panic!("{key} of {}: {other:?}", span.name),
    }
}

/// Every span the collector has received, with the resource's `service.name` of each.
async fn exported(collector: &MockServer) -> Vec<(String, Span)> {
    let mut spans = Vec::new();
    for request in collector.received_requests().await.unwrap_or_default() {
        assert_eq!(request.url.path(), "/v1/traces");
        assert_eq!(header(&request, "content-type"), "application/x-protobuf");
        let export = ExportTraceServiceRequest::decode(request.body.as_slice())
            .expect("an OTLP protobuf export");
        for resource in export.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref()?.value.as_ref())
                .map(|v| format!("{v:?}"))
                .unwrap_or_default();
            for scope in resource.scope_spans {
                spans.extend(scope.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
    }
    spans
}

#[actix_rt::test]
async fn an_api_message_and_its_attempts_are_traced_and_linked() {
    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&collector)
        .await;
    // The first attempt fails: the second, later one still links to the request.
    let receiver = mock_receiver(&[(500, Some(1)), (204, None)]).await;
    let database_url = fresh_database().await;
    let port = free_port();
    let _herald = Process::start(&[
        ("HERALD_DATABASE_URL", database_url.clone()),
        ("HERALD_LISTEN", format!("127.0.0.1:{port}")),
        ("HERALD_OTLP_ENDPOINT", collector.uri()),
        ("HERALD_SEND_TRACEPARENT", "true".into()),
        ("HERALD_RETRY_SCHEDULE", "200ms".into()),
        ("HERALD_RETRY_JITTER", "0".into()),
        // Spans are exported whatever the log level.
        ("HERALD_LOG_LEVEL", "error".into()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
    ]);
    let api = Api::for_base(&format!("http://127.0.0.1:{port}"));
    let up = wait_until(
        Duration::from_secs(30),
        || async { api.try_get("/api/v1/health").await },
        |status| *status == Some(200),
    )
    .await;
    assert!(up, "herald did not start");
    let app = api.create_app("acme", "Acme").await;
    api.create_event_type("payment.confirmed", "Confirmed")
        .await;
    api.expect(
        201,
        "POST",
        "/api/v1/app/acme/endpoint",
        Some(json!({"url": receiver.uri()})),
    )
    .await;

    // The caller's own trace: Herald's request span continues it.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let (status, msg) = api
        .send(
            "POST",
            "/api/v1/app/acme/msg",
            Some(
                serde_json::to_vec(
                    &json!({"eventType": "payment.confirmed", "payload": {"id": 1}}),
                )
                .unwrap(),
            ),
            &[
                ("authorization", &format!("Bearer {TOKEN}")),
                (
                    "traceparent",
                    &format!("00-{caller_trace}-{caller_span}-01"),
                ),
            ],
        )
        .await;
    assert_eq!(status, 202, "{msg}");
    let msg_id = msg["id"].as_str().unwrap().to_string();

    let deliveries = wait_for_requests(&receiver, 2, Duration::from_secs(20)).await;
    let mut spans = Vec::new();
    let all_there = wait_until(
        Duration::from_secs(20),
        || exported(&collector),
        |got| {
            spans = got.clone();
            got.iter()
                .filter(|(_, s)| s.name == "herald deliver")
                .count()
                >= 2
        },
    )
    .await;
    assert!(
        all_there,
        "two attempt spans were not exported: {:?}",
        spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
    );
    assert!(
        spans.iter().all(|(service, _)| service.contains("herald")),
        "service.name"
    );
    let spans: Vec<Span> = spans.into_iter().map(|(_, s)| s).collect();
    let by_id: HashMap<String, &Span> = spans.iter().map(|s| (hex(&s.span_id), s)).collect();

    // The API request: a server span in the caller's trace, whose context the message kept.
    let request = spans
        .iter()
        .find(|s| s.name == "POST /api/v1/app/{app_id}/msg")
        .expect("the request's span");
    assert_eq!(request.kind, SpanKind::Server as i32);
    assert_eq!(hex(&request.trace_id), caller_trace);
    assert_eq!(hex(&request.parent_span_id), caller_span);
    let stored: Option<String> =
        sqlx::query_scalar("SELECT trace_context FROM herald.message WHERE id = $1")
            .bind(&msg_id)
            .fetch_one(&sqlx::PgPool::connect(&database_url).await.unwrap())
            .await
            .unwrap();
    assert_eq!(
        stored,
        Some(format!(
            "00-{}-{}-01",
            hex(&request.trace_id),
            hex(&request.span_id)
        ))
    );

    // Each attempt: a client span, child of the claim that leased it, linked to the request.
    let mut attempts: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "herald deliver")
        .collect();
    attempts.sort_by_key(|s| int(s, "herald.attempt"));
    assert_eq!(attempts.len(), 2);
    for (n, (attempt, status)) in attempts.iter().zip([500, 204]).enumerate() {
        assert_eq!(attempt.kind, SpanKind::Client as i32);
        assert_eq!(int(attempt, "herald.attempt"), n as i64 + 1);
        assert_eq!(int(attempt, "http.response.status_code"), status);
        assert_eq!(text(attempt, "herald.app_id"), app["id"].as_str().unwrap());
        assert_eq!(text(attempt, "herald.message_id"), msg_id);
        assert!(text(attempt, "herald.endpoint_id").starts_with("ep_"));
        assert!(int(attempt, "herald.duration_ms") >= 0);
        let claim = by_id
            .get(&hex(&attempt.parent_span_id))
            .unwrap_or_else(|| panic!("the parent of attempt {} was not exported", n + 1));
        assert_eq!(claim.name, "herald claim");
        assert_eq!(claim.kind, SpanKind::Internal as i32);
        assert!(int(claim, "herald.leased") >= 1);
        assert_eq!(attempt.trace_id, claim.trace_id);
        assert!(
            attempt
                .links
                .iter()
                .any(|l| l.trace_id == request.trace_id && l.span_id == request.span_id),
            "attempt {} links to the request",
            n + 1
        );
        // The receiver got this attempt's context.
        assert_eq!(
            header(&deliveries[n], "traceparent"),
            format!("00-{}-{}-01", hex(&attempt.trace_id), hex(&attempt.span_id))
        );
    }
}

#[test]
fn a_traceparent_without_traces_is_refused_at_start_up() {
    let output = Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("config")
        .env_clear()
        .env(
            "HERALD_CONFIG_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
        )
        .env("HERALD_SEND_TRACEPARENT", "true")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("HERALD_SEND_TRACEPARENT") && stderr.contains("HERALD_OTLP_ENDPOINT"),
        "{stderr}"
    );
}
