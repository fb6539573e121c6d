//! Logs and traces: one subscriber for the whole process.
//!
//! * Logs: human-readable or JSON lines, filtered by `HERALD_LOG_LEVEL` (or `RUST_LOG`).
//! * Traces ([`otlp`], [`trace`]): with `HERALD_OTLP_ENDPOINT`, Herald's spans (each API
//!   request, each claim, each delivery attempt) are exported over OTLP/HTTP, whatever the
//!   log level; without it no span of Herald's own is made.

pub mod otlp;
pub mod trace;

use tracing_subscriber::{
    filter::Targets, fmt, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer,
};

use crate::config::{LogFormat, Settings};

/// What `init` set up; [`Telemetry::shutdown`] sends the spans not yet exported.
#[must_use = "shut it down at exit, or the last spans are lost"]
pub struct Telemetry {
    traces: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is buffered and stops the exporter (at most a few seconds).
    pub fn shutdown(self) {
        if let Some(provider) = self.traces {
            if let Err(error) = provider.shutdown() {
                eprintln!("herald: traces not all exported at exit: {error}");
            }
        }
    }
}

/// Installs the global subscriber. `RUST_LOG` wins over `HERALD_LOG_LEVEL`. Calling it twice
/// is harmless (tests build many applications in one process): the first one stays.
pub fn init(settings: &Settings) -> Telemetry {
    if tracing::dispatcher::has_been_set() {
        return Telemetry { traces: None };
    }
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.process.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = match settings.process.log_format {
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .boxed(),
        LogFormat::Pretty => fmt::layer().compact().boxed(),
    }
    .with_filter(filter);
    let provider = match otlp::provider(&settings.traces) {
        Ok(provider) => provider,
        Err(error) => {
            eprintln!("herald: traces are off: {error}");
            None
        }
    };
    // Herald's spans and the API's request spans, at info, however quiet the logs are.
    let spans = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(opentelemetry::trace::TracerProvider::tracer(p, "herald"))
            .with_filter(
                Targets::new()
                    .with_target("herald", tracing::Level::INFO)
                    .with_target("tracing_actix_web", tracing::Level::INFO),
            )
    });
    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init();
    if installed.is_err() {
        // Another subscriber was first: these spans would go nowhere.
        if let Some(p) = &provider {
            let _ = p.shutdown();
        }
        return Telemetry { traces: None };
    }
    install_panic_hook();
    if provider.is_some() {
        // W3C trace context for requests that arrive with a `traceparent` (read by the
        // request spans, through OpenTelemetry's one process-wide propagator).
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
    }
    Telemetry { traces: provider }
}

/// Panics are logged as structured errors (with their location) instead of bare stderr
/// lines, so they show up in the same pipeline as everything else.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()));
        let message = panic_message(info.payload());
        tracing::error!(panic = %message, location = location.as_deref().unwrap_or("?"), "panic");
    }));
}

/// The text of a panic's payload (`panic!("...")` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".into()
    }
}
