//! Host bindings for the `meridian:step` contract, generated once from the
//! workspace's single `wit/` directory.
//!
//! Every import is `async` on the host side so a capability call never blocks
//! a tokio worker; every export is called with `call_async` so epoch
//! interruption can yield back to the executor and a timeout can cancel it.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin",
    imports: { default: async },
    exports: { default: async },
});

pub use self::meridian::step::types::{
    CapabilityError, CapabilityKind, CapabilityRequest, ConfigIssue, Denial, Descriptor,
    StepContext, StepError, StepOutput,
};
