//! # meridian-sdk: write a Meridian step type in Rust
//!
//! A Meridian step type is a WebAssembly component (`wasm32-wasip2`) that the
//! scheduler runs in a sandbox for every step of that type. This crate is all a
//! plugin author needs: implement [`Step`] for a type, name it in
//! [`export_step!`], and build with `cargo build --target wasm32-wasip2 --release`.
//!
//! The SDK takes care of the WIT contract (`wit/step.wit`, world `plugin`):
//!
//! * `describe` reports your step's name, version, description, the
//!   capabilities it asks for, and the JSON Schema (draft 2020-12) of your
//!   config type, derived with [`schemars`];
//! * `validate` deserialises a config into your own serde type and turns every
//!   serde error into a [`ConfigIssue`] carrying a JSON path (`headers[0].name`),
//!   then runs your [`Step::validate`];
//! * `execute` does the same, builds a [`Context`], calls [`Step::execute`] and
//!   serialises the [`Output`] you return.
//!
//! A step reaches the outside world only through the host capabilities, each
//! wrapped here in a plain function: [`http`], [`secrets`], [`sql`],
//! [`process`] and [`log`]. Every call is checked against the grants an
//! operator gave your component; a refusal arrives as
//! [`CapabilityError::Denied`], which `?` turns into [`StepError::Denied`].
//!
//! ## A complete plugin
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "hello-step"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! meridian-sdk = { path = "../meridian/sdk" }
//! serde = { version = "1", features = ["derive"] }
//! schemars = "1"
//! ```
//!
//! `src/lib.rs`:
//!
//! ```no_run
//! use meridian_sdk::serde_json::json;
//! use meridian_sdk::{Capability, ConfigIssue, Context, Output, Step, StepError};
//! use serde::Deserialize;
//! use schemars::JsonSchema;
//!
//! /// Says hello, and optionally tells a webhook about it.
//! #[derive(Deserialize, JsonSchema)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     /// Who to greet.
//!     name: String,
//!     /// Where to POST the greeting, if anywhere.
//!     webhook_url: Option<String>,
//! }
//!
//! struct Hello;
//!
//! impl Step for Hello {
//!     type Config = Config;
//!     const NAME: &'static str = "hello";
//!     const VERSION: &'static str = "0.1.0";
//!     const DESCRIPTION: &'static str = "Greets someone.";
//!
//!     fn capabilities() -> Vec<Capability> {
//!         vec![Capability::http("https://*", "POST the greeting to `webhook_url`")]
//!     }
//!
//!     fn validate(config: &Config) -> Vec<ConfigIssue> {
//!         if config.name.trim().is_empty() {
//!             vec![ConfigIssue::new("name", "must not be empty")]
//!         } else {
//!             vec![]
//!         }
//!     }
//!
//!     fn execute(ctx: &Context, config: Config) -> Result<Output, StepError> {
//!         let greeting = format!("Hello, {}! ({})", config.name, ctx.timezone);
//!         meridian_sdk::log::info(&greeting);
//!         if let Some(url) = &config.webhook_url {
//!             let response = meridian_sdk::http::post_json(url, &json!({ "text": greeting }))?;
//!             if !response.is_success() {
//!                 return Err(StepError::retryable(format!("webhook answered {}", response.status)));
//!             }
//!         }
//!         Ok(Output::new(json!({ "greeting": greeting })).export("greeting", &greeting))
//!     }
//! }
//!
//! meridian_sdk::export_step!(Hello);
//! ```
//!
//! ## Config fields that are code
//!
//! The host resolves `${params.x}`, `${steps.a.output}` and the like into
//! every string of a step's config before the step runs. For a field your
//! step runs as code — SQL text, a script, a template it evaluates — that
//! would let a parameter value rewrite the code. Mark such a field in the
//! config schema with the keyword `x-meridian-literal` ([`LITERAL_KEYWORD`]),
//! whose value is the hint a job author sees (`{expr}` stands for the
//! expression they wrote), or `true` for a generic one:
//!
//! ```
//! use schemars::JsonSchema;
//! use serde::Deserialize;
//!
//! #[derive(Deserialize, JsonSchema)]
//! struct Config {
//!     /// Run with `?` placeholders; values go in `params`.
//!     #[schemars(extend("x-meridian-literal" = "write ? and bind the value: \"params\": [\"{expr}\"]"))]
//!     query: String,
//!     #[serde(default)]
//!     params: Vec<meridian_sdk::serde_json::Value>,
//!     /// Inline scripts: every string in the list is code.
//!     #[serde(default)]
//!     #[schemars(extend("x-meridian-literal" = true))]
//!     scripts: Vec<String>,
//! }
//!
//! let schema = meridian_sdk::config_schema::<Config>();
//! assert!(schema["properties"]["query"]["x-meridian-literal"].is_string());
//! ```
//!
//! The mark may sit on a field (an `Option` or a `Vec` too: it covers every
//! string inside the marked value) or on a variant of an untagged enum. The
//! host reads the marks when it loads your component and then refuses any
//! `${...}` in a marked string — when a job is validated, with an issue at
//! its JSON path (`steps[0].config.query: ${params.region}: this text is
//! code to the step, …; write ? and bind the value: "params":
//! ["${params.region}"]`), and again before every attempt — as well as an
//! expression standing for a whole value that holds a marked field
//! (`"scripts": "${params.list}"`). `$${` is a literal `${` and stays
//! allowed, so code whose own syntax uses `${` (PowerShell's `${env:X}`,
//! shell's `${HOME}`) is written with `$${` in a job. Give your step another
//! field for the values (bound parameters, environment, arguments), so a
//! job author has a safe way to pass them. A mark whose value is neither a
//! boolean nor a non-empty string stops the component from loading.
//!
//! ## Testing a step natively
//!
//! Everything except the capability calls is plain Rust, so `cargo test` on
//! the host machine works: call [`validate_config`] / [`parse_config`] with a
//! config text, or your `execute` with a [`Context`] built from
//! `Context::default()`. Outside the Meridian host the capability functions
//! return [`CapabilityError::Failed`] (and [`log`] writes to stderr), so a
//! test never reaches a real network, database or process.

// Tests may unwrap; production code may not (workspace lints).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod capability;
mod context;
mod encoding;
mod error;
mod output;
mod step;

pub mod http;
pub mod log;
pub mod process;
pub mod secrets;
pub mod sql;

#[doc(hidden)]
pub mod __private;

/// The bindings generated from `wit/step.wit`, once, for every plugin.
///
/// Plugin code should not need them; [`export_step!`] wires them up.
#[doc(hidden)]
#[allow(unsafe_code, missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "meridian:step/plugin",
        // The export macro is used from the plugin's crate, not this one.
        pub_export_macro: true,
        default_bindings_module: "meridian_sdk::bindings",
        export_macro_name: "export",
    });
}

pub use capability::{Capability, CapabilityKind};
pub use context::Context;
pub use error::{CapabilityError, ConfigIssue, Denial, StepError};
/// Paths into a step's config, in the notation Meridian shows everywhere
/// (`headers[0].name`, `params["a.b"]`): see [`meridian_json_path`].
pub use meridian_json_path::JsonPath;
pub use output::Output;
pub use step::{Step, config_schema, parse_config, validate_config};

/// The config schema keyword that marks a field as code, into which the
/// host never splices `${...}` (see [the crate docs](crate#config-fields-that-are-code)).
/// `schemars`' `extend` needs the key spelled out:
/// `#[schemars(extend("x-meridian-literal" = "hint"))]`.
pub const LITERAL_KEYWORD: &str = "x-meridian-literal";

/// Re-exported so that plugins derive [`schemars::JsonSchema`] with the same
/// version the SDK uses (`#[schemars(crate = "meridian_sdk::schemars")]` when
/// the plugin does not depend on schemars itself).
pub use schemars;
/// Re-exported for plugins that prefer not to name serde in their own
/// `Cargo.toml` (`#[serde(crate = "meridian_sdk::serde")]`).
pub use serde;
/// Re-exported: configs, outputs and variables are JSON.
pub use serde_json;

/// Makes a type that implements [`Step`] the step this component exports.
///
/// Use it once per plugin crate, at the top level of `lib.rs`:
///
/// ```no_run
/// # use meridian_sdk::{Context, Output, Step, StepError};
/// # #[derive(serde::Deserialize, schemars::JsonSchema)] struct Config {}
/// struct Noop;
/// impl Step for Noop {
///     type Config = Config;
///     const NAME: &'static str = "noop";
///     const VERSION: &'static str = "1.0.0";
///     const DESCRIPTION: &'static str = "Does nothing, successfully.";
///     fn execute(_ctx: &Context, _config: Config) -> Result<Output, StepError> {
///         Ok(Output::empty())
///     }
/// }
/// meridian_sdk::export_step!(Noop);
/// ```
#[macro_export]
macro_rules! export_step {
    ($step:ty) => {
        // The generated exports are `extern "C"` functions with fixed symbol
        // names; that is the component ABI, hence the allowance.
        #[allow(unsafe_code)]
        const _: () = {
            struct __MeridianStepExport;

            impl $crate::bindings::exports::meridian::step::step::Guest for __MeridianStepExport {
                fn describe() -> $crate::bindings::exports::meridian::step::step::Descriptor {
                    $crate::__private::describe_export::<$step>()
                }

                fn validate(
                    config: ::std::string::String,
                ) -> ::std::vec::Vec<$crate::bindings::exports::meridian::step::step::ConfigIssue>
                {
                    $crate::__private::validate_export::<$step>(&config)
                }

                fn execute(
                    context: $crate::bindings::exports::meridian::step::step::StepContext,
                ) -> ::core::result::Result<
                    $crate::bindings::exports::meridian::step::step::StepOutput,
                    $crate::bindings::exports::meridian::step::step::StepError,
                > {
                    $crate::__private::execute_export::<$step>(context)
                }
            }

            // The component's exports. Native builds (unit tests, `cargo
            // doc`) leave them out: their symbol names are not valid in a
            // native cdylib's export list, and only a component can use them.
            #[cfg(target_arch = "wasm32")]
            $crate::bindings::export!(__MeridianStepExport with_types_in $crate::bindings);

            // Natively, name the entry points instead, so that the step and
            // everything it uses count as used (no dead-code warnings in a
            // plugin's native build).
            #[cfg(not(target_arch = "wasm32"))]
            const _: () = {
                let _ = <__MeridianStepExport as $crate::bindings::exports::meridian::step::step::Guest>::describe;
                let _ = <__MeridianStepExport as $crate::bindings::exports::meridian::step::step::Guest>::validate;
                let _ = <__MeridianStepExport as $crate::bindings::exports::meridian::step::step::Guest>::execute;
            };
        };
    };
}
