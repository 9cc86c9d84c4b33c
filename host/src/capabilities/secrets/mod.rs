//! The `meridian:step/secrets` capability: a granted secret's value, by name.
//!
//! The value goes to the step and nowhere else; the masker built from all
//! secret values keeps it out of outputs, errors and logs.

use super::{CapabilityError, StepEnv};
use crate::contract::bindings::meridian::step::secrets as wit;
use crate::secrets::SecretStore;
use wasmtime::component::{HasData, Linker};

/// The secrets capability as seen by one step execution.
pub struct SecretsCap<'a> {
    pub env: &'a StepEnv,
    pub store: &'a SecretStore,
}

impl SecretsCap<'_> {
    /// Looks the secret up if the grants allow it.
    pub fn get(&self, name: &str) -> Result<String, CapabilityError> {
        let timer = self.env.begin("secrets")?;
        let result = self
            .env
            .grants
            .check_secret(name)
            .map_err(CapabilityError::Denied)
            .and_then(|()| {
                self.store
                    .get(name)
                    .map(|v| v.expose().to_string())
                    .ok_or_else(|| {
                        CapabilityError::Failed(format!(
                            "secret {name:?} is granted but not configured on this host"
                        ))
                    })
            });
        self.env.finish(timer, name, &result);
        result
    }
}

impl wit::Host for SecretsCap<'_> {
    async fn get(&mut self, name: String) -> Result<String, wit::CapabilityError> {
        SecretsCap::get(self, &name).map_err(|e| e.into_wit(&self.env.masker))
    }
}

struct Secrets;

impl HasData for Secrets {
    type Data<'a> = SecretsCap<'a>;
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> SecretsCap<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, Secrets>(linker, get)
}
