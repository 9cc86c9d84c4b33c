//! The hostile-plugin suite: every way around the capability boundary
//! that issue 16 found, tried as an attacker would — with plugins built
//! from the SDK as an outside author builds them, and jobs submitted by an
//! operator — each refused with a typed denial or a clear validation
//! error, nothing changed in the target database or the store, and the
//! host still serving afterwards.
//!
//! One module per capability (or per part of the boundary). The database
//! servers are the real ones `.ci/run` starts (`meridian_tests::services`):
//! a missing one is skipped loudly on a developer's machine and fails the
//! test under `CI=true`.

mod audit;
mod http;
mod process;
mod resources;
mod secrets;
mod sql;
mod transport;
mod variables;
