use clap::Parser;
use serde::Serialize;

use super::RepoArgs;
use crate::error::Result;
use crate::repo::{self, Published};

#[derive(Debug, Parser)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
}

/// One bundle in `list --json`.
#[derive(Debug, Serialize)]
struct Row<'a> {
    id: &'a str,
    version: String,
    target: &'a str,
    length: u64,
    sha256: &'a str,
    component: &'a str,
    class: &'a str,
    data_impact: &'a str,
    summary: &'a str,
    fixes: &'a [String],
    state: &'a str,
    state_reason: Option<&'a str>,
    alpha: bool,
    datasets: Vec<&'a str>,
    reported_by: Vec<&'a str>,
    files: u64,
    expanded_size: u64,
    published_at: &'a str,
    /// The staged rollout's text form, `null` without one.
    rollout: Option<String>,
    /// When the rollout was paused, `null` unless paused.
    rollout_paused_at: Option<String>,
}

fn row(p: &Published) -> Row<'_> {
    let m = &p.meta.manifest;
    Row {
        id: m.id.as_str(),
        version: m.version.to_string(),
        target: &p.target,
        length: p.length,
        sha256: &p.sha256,
        component: m.component.as_str(),
        class: m.class.as_str(),
        data_impact: m.data_impact.as_str(),
        summary: &m.summary,
        fixes: &m.fixes,
        state: p.meta.state.as_str(),
        state_reason: p.meta.state_reason.as_deref(),
        alpha: p.meta.validations.alpha,
        datasets: p.meta.validations.datasets.iter().map(String::as_str).collect(),
        reported_by: p.meta.reported_by.iter().map(|p| p.as_str()).collect(),
        files: p.meta.file_count,
        expanded_size: p.meta.expanded_size,
        published_at: &p.meta.published_at,
        rollout: p.meta.rollout.as_ref().map(ToString::to_string),
        rollout_paused_at: p.meta.rollout.as_ref().and_then(|r| r.paused_at).map(|t| t.to_string()),
    }
}

impl Args {
    pub async fn run(self) -> Result<()> {
        let bundles = repo::list(&self.repo.paths()).await?;
        let rows: Vec<Row<'_>> = bundles.iter().map(row).collect();
        if self.json {
            let doc = serde_json::json!({ "bundles": rows });
            println!("{doc}");
            return Ok(());
        }
        if rows.is_empty() {
            println!("no bundles published");
            return Ok(());
        }
        println!("{:<32} {:<10} {:<14} {:<10} {:<7} {:<8} {:<20} {:<20} ROLLOUT", "BUNDLE", "STATE", "COMPONENT", "CLASS", "DATA", "ALPHA", "DATASETS", "REPORTED BY");
        for r in &rows {
            let rollout = match (&r.rollout, &r.rollout_paused_at) {
                (Some(spec), Some(_)) => format!("{spec} (paused)"),
                (Some(spec), None) => spec.clone(),
                (None, _) => "-".into(),
            };
            println!(
                "{:<32} {:<10} {:<14} {:<10} {:<7} {:<8} {:<20} {:<20} {}",
                format!("{}@{}", r.id, r.version),
                r.state,
                r.component,
                r.class,
                r.data_impact,
                if r.alpha { "yes" } else { "no" },
                if r.datasets.is_empty() { "-".into() } else { r.datasets.join(",") },
                if r.reported_by.is_empty() { "-".into() } else { r.reported_by.join(",") },
                rollout,
            );
        }
        Ok(())
    }
}
