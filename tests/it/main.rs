//! Workspace integration tests: real wasm components in the real runtime,
//! real HTTP servers on loopback, the CLI and the API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod cli;
mod engine;
mod examples;
mod http_step;
mod recovery;
mod sandbox;
