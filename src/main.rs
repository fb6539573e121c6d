//! The `herald` binary.

use std::process::ExitCode;

use herald::{config::Settings, startup::Application, telemetry};

fn main() -> ExitCode {
    // A missing .env is normal; a malformed one is worth saying.
    if let Err(e) = dotenvy::dotenv() {
        if !e.not_found() {
            eprintln!("herald: cannot read .env: {e}");
            return ExitCode::from(2);
        }
    }
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("herald: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&settings);

    let result = actix_rt::System::new().block_on(async move {
        let app = Application::build(settings).await?;
        app.run_until_stopped().await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "herald stopped with an error");
            eprintln!("herald: {e:#}");
            ExitCode::FAILURE
        }
    }
}
