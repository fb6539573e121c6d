//! Logging: one subscriber for the whole process, human-readable or JSON.

use tracing_subscriber::{fmt, prelude::*, EnvFilter};

use crate::config::{LogFormat, Settings};

/// Installs the global subscriber. `RUST_LOG` wins over `HERALD_LOG_LEVEL`. Calling it twice
/// is harmless (tests build many applications in one process).
pub fn init(settings: &Settings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.process.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match settings.process.log_format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().compact()).try_init(),
    };
    if installed.is_ok() {
        install_panic_hook();
    }
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
