//! Workspace integration tests: real wasm components in the real runtime,
//! real HTTP servers on loopback, the CLI and the API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod audit;
mod azure_devops;
mod cli;
mod cluster;
mod cluster_faults;
mod engine;
mod examples;
mod faults;
mod hostile;
mod http_step;
mod layers;
mod node;
mod openapi;
mod ops;
mod plugin_faults;
mod plugins_api;
mod process;
mod recovery;
mod sandbox;
mod sql;
mod ui;
