//! `palier-server platform add|set|token|remove|list`: the platforms of the control plane and
//! the contract registered for each.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use jiff::Timestamp;
use palier_bundle::PlatformId;

use crate::error::{Error, Result};
use crate::store::{PlatformContract, Store};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register a platform with its contract and print its API token, once, alone on the last
    /// line of stdout (only its SHA-256 is stored). Creates the store if it does not exist.
    Add(AddArgs),
    /// Change a platform's registered contract.
    Set(SetArgs),
    /// Issue a new API token for a platform; the old one stops working at once.
    Token(NameArgs),
    /// Remove a platform, with its fix requests and receipts.
    Remove(NameArgs),
    /// The registered platforms with their contract and last status.
    List(ListArgs),
}

impl Command {
    pub fn run(self, now: Timestamp) -> Result<()> {
        match self {
            Command::Add(a) => a.run(now),
            Command::Set(a) => a.run(),
            Command::Token(a) => a.token(),
            Command::Remove(a) => a.remove(),
            Command::List(a) => a.run(),
        }
    }
}

/// The contract signed with the platform's customer.
#[derive(Debug, Clone, clap::Args)]
pub struct ContractArgs {
    /// Improvement level, WHICH fixes: 1 its own reports, 2 plus technical fixes of
    /// --components, 3 everything validated.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=3))]
    improvement: Option<u8>,
    /// Stability level, WHEN and HOW: 1, 2 or 3.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=3))]
    stability: Option<u8>,
    /// The components of improvement level 2, comma-separated (e.g. mod_quiz,mod_forum).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    components: Option<Vec<String>>,
    /// The classes level 2 admits, comma-separated: technical (the default), non-layout.
    #[arg(long = "level2-classes", value_name = "LIST", value_delimiter = ',')]
    level2_classes: Option<Vec<String>>,
}

impl ContractArgs {
    /// The contract these flags say, on top of `base` (for `set`).
    fn contract(&self, base: Option<&PlatformContract>, name: &str) -> Result<PlatformContract> {
        let missing = |flag: &str| Error::Refused(format!("platform {name}: --{flag} N is required (1, 2 or 3: the level in the platform's contract)"));
        let improvement = self.improvement.or(base.map(|b| b.improvement)).ok_or_else(|| missing("improvement"))?;
        let stability = self.stability.or(base.map(|b| b.stability)).ok_or_else(|| missing("stability"))?;
        let components = self.components.clone().or_else(|| base.map(|b| b.components.clone())).unwrap_or_default();
        let classes = self.level2_classes.clone().or_else(|| base.map(|b| b.level2_classes.clone())).unwrap_or_default();
        let trim = |v: Vec<String>| v.into_iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect::<Vec<_>>();
        PlatformContract::new(improvement, stability, trim(components), trim(classes)).map_err(|e| Error::Refused(format!("platform {name}: {e}")))
    }
}

#[derive(Debug, Parser)]
pub struct AddArgs {
    /// The platform id, `[a-z0-9][a-z0-9._-]{0,63}` (not with --from-csv).
    #[arg(required_unless_present = "from_csv", conflicts_with = "from_csv")]
    name: Option<PlatformId>,
    #[command(flatten)]
    contract: ContractArgs,
    /// Register many platforms at once, in one transaction (all or none): a CSV file with the
    /// header `name,improvement,stability,components,level2_classes` (the lists separated by
    /// `;`). Prints `NAME TOKEN` per platform.
    #[arg(long, value_name = "FILE")]
    from_csv: Option<PathBuf>,
    /// The control-plane store (SQLite, created mode 0600 if missing).
    #[arg(long, value_name = "FILE")]
    db: PathBuf,
}

impl AddArgs {
    fn run(self, now: Timestamp) -> Result<()> {
        if let Some(csv) = &self.from_csv {
            let platforms = read_csv(csv)?;
            let store = Store::open(&self.db)?;
            let tokens = store.add_platforms(&platforms, now)?;
            for ((name, _), token) in platforms.iter().zip(tokens) {
                println!("{name} {token}");
            }
            eprintln!("{} platforms registered in {}; their API tokens above (shown once)", platforms.len(), self.db.display());
            return Ok(());
        }
        let Some(name) = self.name else { return Err(Error::Refused("platform add: a NAME or --from-csv FILE is required".into())) };
        let contract = self.contract.contract(None, name.as_str())?;
        let store = Store::open(&self.db)?;
        let token = store.add_platform_with(&name, Some(&contract), now)?;
        println!("platform {name} registered with contract {}; its API token (shown once; put the next line alone in the agent's token_file, mode 0600):", contract.describe());
        println!("{token}");
        Ok(())
    }
}

/// `name,improvement,stability,components,level2_classes`, a header line first; blank lines
/// and lines starting with `#` skipped. Every error names the file and line.
fn read_csv(path: &Path) -> Result<Vec<(PlatformId, Option<PlatformContract>)>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Refused(format!("cannot read {}: {e}", path.display())))?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let header = "name,improvement,stability,components,level2_classes";
    match lines.next() {
        Some((_, h)) if h.trim().replace(' ', "") == header => {}
        _ => return Err(Error::Refused(format!("{}: the first line must be the header `{header}`", path.display()))),
    }
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, line) in lines {
        let at = |why: String| Error::Refused(format!("{}:{}: {why}", path.display(), i + 1));
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() < 3 || cells.len() > 5 {
            return Err(at(format!("expected 3 to 5 fields ({header}), found {}", cells.len())));
        }
        let name = PlatformId::new(cells[0]).map_err(|e| at(format!("name: {e}")))?;
        if !seen.insert(name.clone()) {
            return Err(at(format!("platform {name} is listed twice")));
        }
        let level = |field: &str, v: &str| v.parse::<u8>().ok().filter(|n| (1..=3).contains(n)).ok_or_else(|| at(format!("{field} {v:?}: expected 1, 2 or 3")));
        let list = |i: usize| cells.get(i).map(|c| c.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()).unwrap_or_default();
        let contract = PlatformContract::new(level("improvement", cells[1])?, level("stability", cells[2])?, list(3), list(4)).map_err(|e| at(e.to_string()))?;
        out.push((name, Some(contract)));
    }
    if out.is_empty() {
        return Err(Error::Refused(format!("{}: no platform listed after the header", path.display())));
    }
    Ok(out)
}

#[derive(Debug, Parser)]
pub struct SetArgs {
    /// The platform id.
    name: PlatformId,
    #[command(flatten)]
    contract: ContractArgs,
    /// The control-plane store.
    #[arg(long, value_name = "FILE")]
    db: PathBuf,
}

impl SetArgs {
    fn run(self) -> Result<()> {
        let store = Store::open_existing(&self.db)?;
        let current = store.platform(&self.name)?.ok_or_else(|| {
            Error::Refused(format!("no platform {} in {} (`palier-server platform list --db {}` lists them)", self.name, self.db.display(), self.db.display()))
        })?;
        let contract = self.contract.contract(current.contract.as_ref(), self.name.as_str())?;
        if current.contract.as_ref() == Some(&contract) {
            println!("platform {}: contract already {}; nothing changed", self.name, contract.describe());
            return Ok(());
        }
        store.set_contract(&self.name, &contract)?;
        println!("platform {}: contract {}", self.name, contract.describe());
        Ok(())
    }
}

#[derive(Debug, Parser)]
pub struct NameArgs {
    /// The platform id.
    name: PlatformId,
    /// The control-plane store.
    #[arg(long, value_name = "FILE")]
    db: PathBuf,
}

impl NameArgs {
    fn token(self) -> Result<()> {
        let store = Store::open_existing(&self.db)?;
        let token = store.reissue_token(&self.name)?;
        println!("platform {}: new API token (shown once; the previous one no longer works):", self.name);
        println!("{token}");
        Ok(())
    }

    fn remove(self) -> Result<()> {
        let store = Store::open_existing(&self.db)?;
        store.remove_platform(&self.name)?;
        println!("platform {} removed, with its fix requests and receipts", self.name);
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
        let store = Store::open_existing(&self.db)?;
        let platforms = store.platforms()?;
        if self.json {
            println!("{}", serde_json::json!({ "platforms": platforms }));
            return Ok(());
        }
        if platforms.is_empty() {
            println!("no platform registered");
            return Ok(());
        }
        println!(
            "{:<24} {:<10} {:<6} {:<6} {:<26} {:<14} {:<22} INSTALLED",
            "PLATFORM", "CONTRACT", "IMPR", "STAB", "NEXT INTERVENTION", "LAST OUTCOME", "LAST SEEN"
        );
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        for p in platforms {
            let installed: Vec<String> = p.installed.iter().map(|i| format!("{}@{}", i.id, i.version)).collect();
            println!(
                "{:<24} {:<10} {:<6} {:<6} {:<26} {:<14} {:<22} {}",
                p.name,
                or_dash(p.contract.as_ref().map(|c| format!("{}/{}", c.improvement, c.stability))),
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
