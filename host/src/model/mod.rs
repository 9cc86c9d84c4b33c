//! Job and schedule definitions and their validation: the types that the
//! API, the CLI and the store exchange, and the rules they must satisfy.

mod job;
pub mod schedule;
pub mod vars;

pub use job::*;
