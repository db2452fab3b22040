//! `palier-server platform add|list`: the platforms of the control plane.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use jiff::Timestamp;
use palier_bundle::PlatformId;

use crate::error::Result;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register a platform and print its API token, once, alone on the last line of stdout
    /// (only its SHA-256 is stored).
    Add(AddArgs),
    /// The registered platforms with their last status.
    List(ListArgs),
}

impl Command {
    pub fn run(self, now: Timestamp) -> Result<()> {
        match self {
            Command::Add(a) => a.run(now),
            Command::List(a) => a.run(),
        }
    }
}

#[derive(Debug, Parser)]
pub struct AddArgs {
    /// The platform id, `[a-z0-9][a-z0-9._-]{0,63}`.
    name: PlatformId,
    /// The control-plane store (SQLite, created if missing).
    #[arg(long, value_name = "FILE")]
    db: PathBuf,
}

impl AddArgs {
    fn run(self, now: Timestamp) -> Result<()> {
        let store = Store::open(&self.db)?;
        let token = store.add_platform(&self.name, now)?;
        println!("platform {} registered; its API token (shown once, keep it in the agent's config):", self.name);
        println!("{token}");
        Ok(())
    }
}

#[derive(Debug, Parser)]
pub struct ListArgs {
    /// The control-plane store.
    #[arg(long, value_name = "FILE")]
    db: PathBuf,
    /// One JSON document on stdout: `{"platforms": [...]}`.
    #[arg(long)]
    json: bool,
}

impl ListArgs {
    fn run(self) -> Result<()> {
        let store = Store::open(&self.db)?;
        let platforms = store.platforms()?;
        if self.json {
            println!("{}", serde_json::json!({ "platforms": platforms }));
            return Ok(());
        }
        if platforms.is_empty() {
            println!("no platform registered");
            return Ok(());
        }
        println!("{:<24} {:<6} {:<6} {:<26} {:<14} {:<22} INSTALLED", "PLATFORM", "IMPR", "STAB", "NEXT INTERVENTION", "LAST OUTCOME", "LAST SEEN");
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        for p in platforms {
            let installed: Vec<String> = p.installed.iter().map(|i| format!("{}@{}", i.id, i.version)).collect();
            println!(
                "{:<24} {:<6} {:<6} {:<26} {:<14} {:<22} {}",
                p.name,
                or_dash(p.improvement_level.map(|l| l.to_string())),
                or_dash(p.stability_level.map(|l| l.to_string())),
                or_dash(p.next_intervention),
                or_dash(p.last_outcome),
                or_dash(p.last_seen),
                if installed.is_empty() { "-".into() } else { installed.join(",") },
            );
        }
        Ok(())
    }
}
