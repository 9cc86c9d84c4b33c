//! Named secrets, handed out only when an operator granted them to the
//! component (`secrets = ["api_token"]` in its grant).
//!
//! The host masks a fetched secret's value in the step's output, error and log
//! lines, but a step should still never put a secret in its output on purpose.
//!
//! ```no_run
//! # fn run() -> Result<(), meridian_sdk::StepError> {
//! let token = meridian_sdk::secrets::get("api_token")?;
//! let response = meridian_sdk::http::Request::get("https://api.example.com/v1/me")
//!     .bearer(&token)
//!     .send()?;
//! # let _ = response; Ok(()) }
//! ```

use crate::CapabilityError;

/// The value of the secret `name`; [`CapabilityError::Denied`] when the
/// component was not granted it.
pub fn get(name: &str) -> Result<String, CapabilityError> {
    fetch(name)
}

#[cfg(target_arch = "wasm32")]
fn fetch(name: &str) -> Result<String, CapabilityError> {
    crate::bindings::meridian::step::secrets::get(name).map_err(CapabilityError::from_wit)
}

#[cfg(not(target_arch = "wasm32"))]
fn fetch(_name: &str) -> Result<String, CapabilityError> {
    Err(CapabilityError::outside_host("secrets"))
}
