//! The OTLP/HTTP exporter of Herald's spans.

use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{trace::SdkTracerProvider, Resource};

use crate::config::groups::Traces;

/// The tracer provider the settings ask for (`None`: traces are off). Spans are batched
/// and posted as protobuf to `{HERALD_OTLP_ENDPOINT}/v1/traces` from a thread of the
/// exporter's own; the batch's size and delay are OpenTelemetry's standard
/// `OTEL_BSP_*` variables, the service name `herald` unless `OTEL_SERVICE_NAME` or
/// `OTEL_RESOURCE_ATTRIBUTES` names it.
pub fn provider(settings: &Traces) -> anyhow::Result<Option<SdkTracerProvider>> {
    let Some(url) = settings.traces_url() else {
        return Ok(None);
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .build()?;
    let mut resource = Resource::builder();
    let named = std::env::var_os("OTEL_SERVICE_NAME").is_some()
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.contains("service.name="));
    if !named {
        resource = resource.with_service_name("herald");
    }
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build(),
    ))
}
