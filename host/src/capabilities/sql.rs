//! The `meridian:step/sql` capability.
//!
//! The contract is complete (typed values, statements in one transaction,
//! row caps); this host has no SQL connections or SQL grants configured yet,
//! so under deny-by-default every call is refused with a typed denial that
//! names the connection asked for. Named connections and their grants arrive
//! with the grants issue.

use super::{CapabilityError, StepEnv};
use crate::runtime::bindings::meridian::step::sql as wit;
use wasmtime::component::{HasData, Linker};

/// The SQL capability as seen by one step execution.
pub struct SqlCap<'a> {
    pub env: &'a StepEnv,
}

impl wit::Host for SqlCap<'_> {
    async fn execute(
        &mut self,
        connection: String,
        _statements: Vec<wit::Statement>,
        _options: wit::QueryOptions,
    ) -> Result<Vec<wit::ResultSet>, wit::CapabilityError> {
        let timer = self
            .env
            .begin("sql")
            .map_err(|e| e.into_wit(&self.env.masker))?;
        let result: Result<Vec<wit::ResultSet>, _> = Err(CapabilityError::Denied(
            self.env.grants.deny_ungrantable("sql", &connection),
        ));
        self.env.finish(timer, &connection, &result);
        result.map_err(|e| e.into_wit(&self.env.masker))
    }
}

struct Sql;

impl HasData for Sql {
    type Data<'a> = SqlCap<'a>;
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> SqlCap<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, Sql>(linker, get)
}
