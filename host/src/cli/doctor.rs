//! `meridian doctor`.

use crate::config::Config;
use std::io::Write;
use std::process::ExitCode;

/// `meridian doctor`: the config, the data dir and the store first (a
/// serving node has passed those), then [`crate::doctor::check`] at full
/// depth.
pub(super) async fn doctor(
    loaded: Result<Config, crate::config::ConfigError>,
    json: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ExitCode> {
    use crate::doctor::{Depth, Item, Report, Subject, Verdict};
    let mut report = Report::default();
    report
        .checks
        .push(crate::doctor::config_item(loaded.as_ref()));
    if let Ok(config) = &loaded {
        report
            .checks
            .push(crate::doctor::writable_dir("data-dir", &config.data_dir));
        let opened = config.store.open().await;
        report.checks.push(crate::doctor::store_opened(
            opened.as_ref(),
            &config.store.describe(),
        ));
        if let Ok(store) = &opened {
            let runtime = match crate::node::build_runtime(config).await {
                Ok(runtime) => match runtime.apply_grants(&config.grant_specs, store).await {
                    Ok(()) => Ok(runtime),
                    Err(e) => Err(format!("the stored grants cannot be applied: {e:#}")),
                },
                Err(e) => Err(format!("{e:#}")),
            };
            match runtime {
                Ok(runtime) => {
                    let log_dir = config.logging.root(&config.data_dir);
                    let subject = Subject {
                        runtime: &runtime,
                        store,
                        data_dir: Some(&config.data_dir),
                        log_dir: &log_dir,
                    };
                    report
                        .checks
                        .extend(crate::doctor::check(subject, Depth::Full).await.checks);
                }
                Err(e) => report.checks.push(Item::new("plugins", Verdict::Fail, e)),
            }
        }
    }
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "status": report.worst().as_str(),
                "checks": report.checks,
            }))?
        )?;
    } else {
        write!(out, "{}", report.text())?;
    }
    Ok(if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
