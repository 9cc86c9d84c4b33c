//! The glue [`export_step!`](crate::export_step) expands to: the WIT `step`
//! functions written once, generically over [`Step`]. Not part of the API.

use crate::bindings::meridian::step::types as wit;
use crate::{Capability, Context, Step, StepError, config_schema, parse_config, validate_config};

/// `describe`: static facts, and the config schema derived from `S::Config`.
pub fn describe_export<S: Step>() -> wit::Descriptor {
    wit::Descriptor {
        name: S::NAME.to_string(),
        version: S::VERSION.to_string(),
        description: S::DESCRIPTION.to_string(),
        config_schema: config_schema::<S::Config>().to_string(),
        capabilities: S::capabilities()
            .into_iter()
            .map(Capability::into_wit)
            .collect(),
    }
}

/// `validate`: serde's verdict, then the step's own checks.
pub fn validate_export<S: Step>(config: &str) -> Vec<wit::ConfigIssue> {
    validate_config::<S>(config)
        .into_iter()
        .map(crate::ConfigIssue::into_wit)
        .collect()
}

/// `execute`: the config is checked again (variables were substituted into it
/// since it was validated), then the step runs.
pub fn execute_export<S: Step>(
    context: wit::StepContext,
) -> Result<wit::StepOutput, wit::StepError> {
    run::<S>(context).map_err(StepError::into_wit)
}

fn run<S: Step>(context: wit::StepContext) -> Result<wit::StepOutput, StepError> {
    let (ctx, config_text) = Context::from_wit(context)?;
    let config = parse_config::<S::Config>(&config_text).map_err(StepError::InvalidConfig)?;
    let issues = S::validate(&config);
    if !issues.is_empty() {
        return Err(StepError::InvalidConfig(issues));
    }
    S::execute(&ctx, config)?.into_wit()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;
    use crate::{ConfigIssue, Output};

    #[derive(Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Config {
        /// Who to greet.
        name: String,
        #[serde(default)]
        tags: Vec<Tag>,
    }

    #[derive(Deserialize, schemars::JsonSchema)]
    struct Tag {
        key: String,
    }

    struct Greeter;

    impl Step for Greeter {
        type Config = Config;
        const NAME: &'static str = "greeter";
        const VERSION: &'static str = "1.2.3";
        const DESCRIPTION: &'static str = "Greets.";

        fn capabilities() -> Vec<Capability> {
            vec![Capability::secret("*", "any secret")]
        }

        fn validate(config: &Config) -> Vec<ConfigIssue> {
            let mut issues = Vec::new();
            if config.name.is_empty() {
                issues.push(ConfigIssue::new("name", "must not be empty"));
            }
            for (i, tag) in config.tags.iter().enumerate() {
                if tag.key.contains(' ') {
                    issues.push(ConfigIssue::new(
                        crate::JsonPath::root().key("tags").index(i).key("key"),
                        "must not contain spaces",
                    ));
                }
            }
            issues
        }

        fn execute(ctx: &Context, config: Config) -> Result<Output, StepError> {
            if config.name == "fail" {
                return Err(StepError::retryable("asked to fail"));
            }
            Ok(Output::new(json!({
                "greeting": format!("hello {}", config.name),
                "attempt": ctx.attempt,
                "who": ctx.variable_str("who"),
            }))
            .export("greeted", config.name))
        }
    }

    fn context(config: &str) -> wit::StepContext {
        wit::StepContext {
            job_id: "job".into(),
            execution_id: "exec".into(),
            step_id: "step".into(),
            attempt: 2,
            timezone: "Europe/Berlin".into(),
            scheduled_time: None,
            config: config.into(),
            variables: r#"{"who":"world"}"#.into(),
        }
    }

    fn paths(issues: &[wit::ConfigIssue]) -> Vec<(&str, &str)> {
        issues
            .iter()
            .map(|i| (i.path.as_str(), i.message.as_str()))
            .collect()
    }

    #[test]
    fn describe_reports_schema_and_capabilities() {
        let d = describe_export::<Greeter>();
        assert_eq!((d.name.as_str(), d.version.as_str()), ("greeter", "1.2.3"));
        let schema: serde_json::Value = serde_json::from_str(&d.config_schema).unwrap();
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        assert_eq!(schema["properties"]["name"]["description"], "Who to greet.");
        assert_eq!(d.capabilities.len(), 1);
        assert_eq!(d.capabilities[0].kind, wit::CapabilityKind::Secrets);
    }

    #[test]
    fn validate_reports_paths() {
        assert!(validate_export::<Greeter>(r#"{"name":"x"}"#).is_empty());
        assert_eq!(
            paths(&validate_export::<Greeter>(r#"{"tags":[{"key":"a"}]}"#)),
            [("name", "required field is missing")]
        );
        assert_eq!(
            paths(&validate_export::<Greeter>(
                r#"{"name":"x","tags":[{"key":"a"},{"key":5}]}"#
            )),
            [(
                "tags[1].key",
                "invalid type: integer `5`, expected a string"
            )]
        );
        assert_eq!(
            paths(&validate_export::<Greeter>(
                r#"{"name":"","tags":[{"key":"a b"}]}"#
            )),
            [
                ("name", "must not be empty"),
                ("tags[0].key", "must not contain spaces")
            ]
        );
        let unknown = validate_export::<Greeter>(r#"{"name":"x","colour":1}"#);
        assert_eq!(unknown.len(), 1);
        assert_eq!(unknown[0].path, "colour");
        assert!(
            unknown[0].message.starts_with("unknown field `colour`"),
            "{}",
            unknown[0].message
        );
        let syntax = validate_export::<Greeter>(r#"{"name":"#);
        assert!(
            syntax[0]
                .message
                .starts_with("the config is not valid JSON"),
            "{:?}",
            syntax
        );
        let trailing = validate_export::<Greeter>(r#"{"name":"x"} 1"#);
        assert_eq!(trailing[0].path, "");
        assert!(
            trailing[0].message.contains("trailing characters"),
            "{:?}",
            trailing
        );
    }

    #[test]
    fn execute_runs_the_step() {
        let out = execute_export::<Greeter>(context(r#"{"name":"ann"}"#)).unwrap();
        let value: serde_json::Value = serde_json::from_str(&out.output).unwrap();
        assert_eq!(
            value,
            json!({"greeting": "hello ann", "attempt": 2, "who": "world"})
        );
        assert_eq!(
            out.exports,
            vec![("greeted".to_string(), "\"ann\"".to_string())]
        );
    }

    #[test]
    fn execute_rejects_invalid_config_and_passes_errors_through() {
        match execute_export::<Greeter>(context(r#"{"name":""}"#)) {
            Err(wit::StepError::InvalidConfig(issues)) => {
                assert_eq!(paths(&issues), [("name", "must not be empty")])
            }
            other => panic!("{other:?}"),
        }
        match execute_export::<Greeter>(context(r#"{"name":3}"#)) {
            Err(wit::StepError::InvalidConfig(issues)) => assert_eq!(issues[0].path, "name"),
            other => panic!("{other:?}"),
        }
        match execute_export::<Greeter>(context(r#"{"name":"fail"}"#)) {
            Err(wit::StepError::Retryable(m)) => assert_eq!(m, "asked to fail"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn empty_and_null_configs_mean_no_config() {
        #[derive(Deserialize, schemars::JsonSchema)]
        struct Optional {
            #[serde(default)]
            n: u32,
        }
        assert_eq!(parse_config::<Optional>("").map(|c| c.n), Ok(0));
        assert_eq!(parse_config::<Optional>("null").map(|c| c.n), Ok(0));
        assert_eq!(parse_config::<Option<u32>>("null"), Ok(None));
    }
}
