//! The `meridian:step/process` capability.
//!
//! The contract is complete (program, argv, environment, cwd, stdin,
//! timeout, output caps); this host has no process grants yet, so under
//! deny-by-default every call is refused with a typed denial that names the
//! program asked for. Process grants arrive with the grants issue.

use super::{CapabilityError, StepEnv};
use crate::runtime::bindings::meridian::step::process as wit;
use wasmtime::component::{HasData, Linker};

/// The process capability as seen by one step execution.
pub struct ProcessCap<'a> {
    pub env: &'a StepEnv,
}

impl wit::Host for ProcessCap<'_> {
    async fn run(&mut self, command: wit::Command) -> Result<wit::Outcome, wit::CapabilityError> {
        let timer = self
            .env
            .begin("process")
            .map_err(|e| e.into_wit(&self.env.masker))?;
        let result: Result<wit::Outcome, _> = Err(CapabilityError::Denied(
            self.env
                .grants
                .deny_ungrantable("process", &command.program),
        ));
        self.env.finish(timer, &command.program, &result);
        result.map_err(|e| e.into_wit(&self.env.masker))
    }
}

struct Process;

impl HasData for Process {
    type Data<'a> = ProcessCap<'a>;
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> ProcessCap<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, Process>(linker, get)
}
