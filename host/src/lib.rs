//! Meridian: a timezone-aware job scheduler whose steps run as sandboxed
//! WebAssembly components.
//!
//! See ARCHITECTURE.md at the repository root for the bird's-eye view.
//!
//! # Layers
//!
//! Each module uses only the modules on the lines below its own, never one
//! on its own line or above (the `layers` test in `tests/it/layers.rs`
//! reads this table and fails when an import climbs back up). From the
//! top:
//!
//! ```text
//! cli           — the command line: parse, dispatch, print
//! node          — one running node: start-up and shutdown order, the runtime it loads
//! api           — the REST API, its guard and the web UI
//! doctor        — the self-checks of health and `meridian doctor`
//! config        — the TOML file, environment and flags, parsed once
//! engine        — runs executions: flow, retries, timeouts, variables; validation against plugins
//! scheduler     — turns schedules into fires on the queues, each once
//! runtime       — loads components, runs one step in a sandbox
//! model         — job and schedule definitions, variable syntax, issues with JSON paths
//! capabilities  — what a step may reach (http, sql, process, secrets, log) and the grants
//! auth          — API tokens and roles
//! audit         — the hash-chained trail: recording, verifying, anchoring
//! metrics       — rolling windows and Prometheus families
//! store         — SQLite and PostgreSQL behind one API, the trail's record format
//! logging       — the log files, routed per zone and execution, masked
//! queue schedule secrets contract builtin — leaves: they import nothing of ours
//! ```

pub mod api;
pub mod audit;
pub mod auth;
pub mod builtin;
pub mod capabilities;
pub mod cli;
pub mod config;
pub mod contract;
pub mod doctor;
pub mod engine;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod node;
pub mod queue;
pub mod runtime;
pub mod schedule;
pub mod scheduler;
pub mod secrets;
pub mod store;
