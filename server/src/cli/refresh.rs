//! `palier-server refresh`: keep a statically served repository from expiring (run it from a
//! cron job or a systemd timer next to nginx or an object-store sync).

use clap::Parser;
use jiff::Timestamp;

use super::RepoArgs;
use crate::error::{Error, Result};
use crate::repo::{self, RefreshMargins};

#[derive(Debug, Parser)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArgs,
    /// Only check: print each role's expiry and exit 1 when one is within its margin
    /// (timestamp 6 h, snapshot 1 day, targets 7 days); writes nothing, needs no keys.
    #[arg(long)]
    check: bool,
}

impl Args {
    pub async fn run(self, now: Timestamp) -> Result<()> {
        let paths = self.repo.paths();
        let margins = RefreshMargins::default();
        if self.check {
            let expiries = repo::expiries(&paths, now, margins)?;
            for e in &expiries {
                println!("{:<10} version {:<6} expires {}{}", e.role, e.version, e.expires, if e.due { "  (due)" } else { "" });
            }
            let due: Vec<&str> = expiries.iter().filter(|e| e.due).map(|e| e.role).collect();
            if !due.is_empty() {
                let dir = paths.dir.display();
                return Err(Error::Refused(format!("{} of {dir} expire(s) soon: run `palier-server refresh --repo {dir}`", due.join(", "))));
            }
            return Ok(());
        }
        if repo::refresh(&paths, now, margins).await? {
            for e in repo::expiries(&paths, now, margins)? {
                println!("{:<10} version {:<6} expires {}", e.role, e.version, e.expires);
            }
        } else {
            println!("nothing due: every role is outside its margin");
        }
        Ok(())
    }
}
