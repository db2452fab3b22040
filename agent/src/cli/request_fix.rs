use std::path::PathBuf;

use clap::Parser;
use palier_bundle::{BundleId, BundleRef, Component};

use crate::error::Result;
use crate::report;

#[derive(Debug, Parser)]
pub struct Args {
    /// The agent config file.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The Moodle component with the defect (mod_quiz, theme_boost, core, ...).
    #[arg(long)]
    component: Component,
    /// One line describing the defect.
    #[arg(long)]
    summary: String,
    /// "We have the defect this published bundle fixes": ID@VERSION, or a bare ID for its
    /// newest published version.
    #[arg(long, value_name = "ID[@VERSION]", value_parser = bundle_or_id)]
    bundle: Option<String>,
}

/// `ID@VERSION` or a bare `ID` (the server takes the newest published version).
fn bundle_or_id(s: &str) -> std::result::Result<String, String> {
    let s = s.trim();
    if s.contains('@') {
        s.parse::<BundleRef>().map(|b| b.to_string()).map_err(|e| e.to_string())
    } else {
        BundleId::new(s).map(|id| id.to_string()).map_err(|e| e.to_string())
    }
}

impl Args {
    pub async fn run(self) -> Result<()> {
        let config = super::load_config(&self.config)?;
        let bundle = self.bundle;
        let fr = report::request_fix(&config, self.component.as_str(), self.summary.trim(), bundle.as_deref()).await?;
        match &fr.bundle {
            Some(b) => println!("{} filed for {} ({}), linked to {b}", fr.id, fr.platform, fr.component),
            None => println!("{} filed for {} ({})", fr.id, fr.platform, fr.component),
        }
        Ok(())
    }
}
