//! Logging setup: `tracing` events to stderr, filtered by `MERIDIAN_LOG`
//! (an `EnvFilter` directive, default `warn,meridian=info`).

/// Installs the stderr subscriber; does nothing if one is already set.
pub fn init_stderr() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MERIDIAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,meridian=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
