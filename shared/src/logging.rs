//! The functions' log lines: JSON for CloudWatch, each with its request span's fields.

/// JSON log lines for CloudWatch, each carrying the fields of the request span it belongs to
/// (correlation id, user id, route).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second initialisation (tests start many stacks) keeps the first subscriber.
    let _ = json_logs().with_env_filter(filter).try_init();
}

/// The functions' log line format, for whatever else must write the same lines (a benchmark
/// counts formatting them as part of a request's cost).
pub fn json_logs() -> tracing_subscriber::fmt::SubscriberBuilder<
    tracing_subscriber::fmt::format::JsonFields,
    tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Json>,
> {
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(false)
}
