//! What an app in production has installed, as the benches measure the
//! layer with it (issue 14): a `tracing` subscriber at `INFO` (formatting
//! every event it lets through, into a sink) and a Prometheus recorder.

/// Installs both, for the whole process.
pub fn install() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::sink)
        .with_ansi(false)
        .init();
    if let Err(e) = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
        eprintln!("no Prometheus recorder: {e}");
    }
}
