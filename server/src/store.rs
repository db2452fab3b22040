//! The control-plane store: one SQLite file (WAL, busy timeout, ordered migrations tracked in
//! `PRAGMA user_version`). Platforms and the hashes of their API tokens, fix requests, receipts
//! and the fleet view the agents' status reports keep up to date, and the auto-halts done.
//!
//! Every call takes the one connection behind a mutex: SQLite serialises writers anyway, and
//! each call is one short statement or transaction. HTTP handlers call it from the blocking pool.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use palier_bundle::{BundleRef, Component, PlatformId};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The schema, one step per entry, applied in order; `user_version` is the number applied.
/// Never edit a released step: add one.
const MIGRATIONS: &[&str] = &[
    // 1: platforms, fix requests, receipts (and their bundles, for adoption and auto-halt),
    // the auto-halts done.
    "CREATE TABLE platforms (
        name TEXT PRIMARY KEY NOT NULL,
        token_sha256 TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        improvement_level INTEGER,
        stability_level INTEGER,
        installed TEXT NOT NULL DEFAULT '[]',
        next_intervention TEXT,
        last_outcome TEXT,
        last_seen TEXT
    ) STRICT;
    CREATE TABLE fix_requests (
        n INTEGER PRIMARY KEY AUTOINCREMENT,
        platform TEXT NOT NULL REFERENCES platforms(name),
        component TEXT NOT NULL,
        summary TEXT NOT NULL,
        bundle TEXT,
        status TEXT NOT NULL CHECK (status IN ('open', 'linked', 'fixed')),
        created_at TEXT NOT NULL
    ) STRICT;
    CREATE INDEX fix_requests_platform ON fix_requests(platform);
    CREATE TABLE receipts (
        platform TEXT NOT NULL REFERENCES platforms(name),
        id TEXT NOT NULL,
        outcome TEXT NOT NULL,
        bundles TEXT NOT NULL,
        reason TEXT,
        started_at TEXT NOT NULL,
        finished_at TEXT NOT NULL,
        received_at TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (platform, id)
    ) STRICT;
    CREATE TABLE receipt_bundles (
        platform TEXT NOT NULL,
        receipt_id TEXT NOT NULL,
        bundle TEXT NOT NULL,
        outcome TEXT NOT NULL,
        PRIMARY KEY (platform, receipt_id, bundle),
        FOREIGN KEY (platform, receipt_id) REFERENCES receipts(platform, id)
    ) STRICT;
    CREATE INDEX receipt_bundles_bundle ON receipt_bundles(bundle, outcome);
    CREATE TABLE auto_halts (
        bundle TEXT PRIMARY KEY NOT NULL,
        platforms TEXT NOT NULL,
        halted_at TEXT NOT NULL
    ) STRICT;",
];

/// Receipt outcomes the server accepts (the agent's `Outcome`, kebab-case).
pub const OUTCOMES: [&str; 5] = ["applied", "rolled-back", "failed", "postponed", "recovered"];

/// The SHA-256 of a token, hex: what the store keeps.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new API token: 32 random bytes, hex.
fn new_token() -> Result<String> {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Refused("cannot draw a random token from the system".into()))?;
    Ok(hex::encode(bytes))
}

/// Whole seconds, RFC 3339: what the store writes for its own instants.
fn stamp(now: Timestamp) -> String {
    Timestamp::from_second(now.as_second()).unwrap_or(now).to_string()
}

/// One platform in the fleet view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    pub name: String,
    pub created_at: String,
    pub improvement_level: Option<u8>,
    pub stability_level: Option<u8>,
    pub installed: Vec<Installed>,
    pub next_intervention: Option<String>,
    pub last_outcome: Option<String>,
    pub last_seen: Option<String>,
}

/// One installed bundle, as the agent's status reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Installed {
    pub id: String,
    pub version: String,
}

/// The body of `POST /api/v1/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    pub improvement_level: u8,
    pub stability_level: u8,
    pub installed: Vec<Installed>,
    pub next_intervention: Option<Timestamp>,
    pub last_outcome: Option<String>,
}

/// A fix request, as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixRequest {
    pub id: String,
    pub platform: String,
    pub component: String,
    pub summary: String,
    pub bundle: Option<String>,
    pub status: String,
    pub created_at: String,
}

/// `FR-<n>` → n; `None` for anything else.
pub fn parse_fix_id(id: &str) -> Option<i64> {
    let digits = id.strip_prefix("FR-")?;
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

/// Whether `id` looks like one of this store's fix request ids (`FR-` then digits), valid or not.
pub fn looks_like_fix_id(id: &str) -> bool {
    id.strip_prefix("FR-").is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// A receipt to store: the fields the server reads, and the whole body as sent.
#[derive(Debug, Clone)]
pub struct NewReceipt {
    pub id: String,
    pub platform: PlatformId,
    pub outcome: String,
    pub bundles: Vec<BundleRef>,
    pub reason: Option<String>,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub body: serde_json::Value,
}

/// What receipts say of one bundle version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BundleOutcomes {
    pub applied: u64,
    pub rolled_back: u64,
    pub failed: u64,
}

pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Store {
    /// Open (creating it if needed) and bring the schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        let err = |what| Self::err_at(path, what);
        let mut conn = Connection::open(path).map_err(err("open"))?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err("set the busy timeout"))?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(err("switch to WAL"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Refused(format!("control-plane store {}: journal mode is {mode}, WAL expected", path.display())));
        }
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;").map_err(err("set pragmas"))?;
        migrate(&mut conn, path)?;
        Ok(Store { path: path.to_path_buf(), conn: Mutex::new(conn) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err_at(path: &Path, what: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
        let path = path.to_path_buf();
        move |source| Error::Store { path, what, source }
    }

    fn err(&self, what: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
        Self::err_at(&self.path, what)
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The schema version in force.
    pub fn schema_version(&self) -> Result<u32> {
        self.conn().query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(self.err("read the schema version"))
    }

    /// Register a platform; returns its API token, which is not kept (only its hash is).
    pub fn add_platform(&self, name: &PlatformId, now: Timestamp) -> Result<String> {
        let token = new_token()?;
        let conn = self.conn();
        let inserted = conn
            .execute(
                "INSERT INTO platforms (name, token_sha256, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO NOTHING",
                params![name.as_str(), token_hash(&token), stamp(now)],
            )
            .map_err(self.err("add a platform"))?;
        if inserted == 0 {
            return Err(Error::Refused(format!("platform {name} already exists in {}", self.path.display())));
        }
        Ok(token)
    }

    /// The platform a token belongs to, if any. The lookup goes by the token's hash; the hash
    /// found is compared again in constant time.
    pub fn authenticate(&self, token: &str) -> Result<Option<PlatformId>> {
        let hash = token_hash(token);
        let row: Option<(String, String)> = self
            .conn()
            .query_row("SELECT name, token_sha256 FROM platforms WHERE token_sha256 = ?1", [&hash], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(self.err("look up a token"))?;
        let Some((name, stored)) = row else { return Ok(None) };
        if aws_lc_rs::constant_time::verify_slices_are_equal(stored.as_bytes(), hash.as_bytes()).is_err() {
            return Ok(None);
        }
        Ok(PlatformId::new(name).ok())
    }

    /// Every platform, by name.
    pub fn platforms(&self) -> Result<Vec<Platform>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT name, created_at, improvement_level, stability_level, installed, next_intervention, last_outcome, last_seen
                 FROM platforms ORDER BY name",
            )
            .map_err(self.err("list platforms"))?;
        let rows = stmt
            .query_map([], |r| {
                let installed: String = r.get(4)?;
                Ok(Platform {
                    name: r.get(0)?,
                    created_at: r.get(1)?,
                    improvement_level: r.get(2)?,
                    stability_level: r.get(3)?,
                    installed: serde_json::from_str(&installed).unwrap_or_default(),
                    next_intervention: r.get(5)?,
                    last_outcome: r.get(6)?,
                    last_seen: r.get(7)?,
                })
            })
            .map_err(self.err("list platforms"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err("list platforms"))
    }

    /// Record a platform's status report.
    pub fn set_status(&self, platform: &PlatformId, status: &Status, now: Timestamp) -> Result<()> {
        let mut installed = status.installed.clone();
        installed.sort();
        installed.dedup();
        let installed = serde_json::to_string(&installed).map_err(|e| Error::Refused(format!("cannot encode installed bundles: {e}")))?;
        self.conn()
            .execute(
                "UPDATE platforms SET improvement_level = ?2, stability_level = ?3, installed = ?4, next_intervention = ?5,
                 last_outcome = ?6, last_seen = ?7 WHERE name = ?1",
                params![
                    platform.as_str(),
                    status.improvement_level,
                    status.stability_level,
                    installed,
                    status.next_intervention.map(|t| t.to_string()),
                    status.last_outcome,
                    stamp(now)
                ],
            )
            .map_err(self.err("record a status"))?;
        Ok(())
    }

    /// Store a new fix request.
    pub fn add_fix_request(&self, platform: &PlatformId, component: &Component, summary: &str, bundle: Option<&BundleRef>, now: Timestamp) -> Result<FixRequest> {
        let status = if bundle.is_some() { "linked" } else { "open" };
        let created_at = stamp(now);
        let bundle = bundle.map(ToString::to_string);
        let conn = self.conn();
        conn.execute(
            "INSERT INTO fix_requests (platform, component, summary, bundle, status, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![platform.as_str(), component.as_str(), summary, bundle, status, created_at],
        )
        .map_err(self.err("add a fix request"))?;
        Ok(FixRequest {
            id: format!("FR-{}", conn.last_insert_rowid()),
            platform: platform.to_string(),
            component: component.to_string(),
            summary: summary.to_owned(),
            bundle,
            status: status.to_owned(),
            created_at,
        })
    }

    fn query_fix_requests(&self, filter: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<FixRequest>> {
        let conn = self.conn();
        let sql = format!("SELECT n, platform, component, summary, bundle, status, created_at FROM fix_requests {filter} ORDER BY n");
        let mut stmt = conn.prepare(&sql).map_err(self.err("list fix requests"))?;
        let rows = stmt
            .query_map(args, |r| {
                Ok(FixRequest {
                    id: format!("FR-{}", r.get::<_, i64>(0)?),
                    platform: r.get(1)?,
                    component: r.get(2)?,
                    summary: r.get(3)?,
                    bundle: r.get(4)?,
                    status: r.get(5)?,
                    created_at: r.get(6)?,
                })
            })
            .map_err(self.err("list fix requests"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err("list fix requests"))
    }

    /// A platform's fix requests, oldest first.
    pub fn fix_requests_of(&self, platform: &PlatformId) -> Result<Vec<FixRequest>> {
        self.query_fix_requests("WHERE platform = ?1", &[&platform.as_str()])
    }

    /// Every fix request not yet fixed, oldest first.
    pub fn unfixed_fix_requests(&self) -> Result<Vec<FixRequest>> {
        self.query_fix_requests("WHERE status != 'fixed'", &[])
    }

    /// The fix request `FR-<n>`.
    pub fn fix_request(&self, n: i64) -> Result<Option<FixRequest>> {
        Ok(self.query_fix_requests("WHERE n = ?1", &[&n])?.into_iter().next())
    }

    /// Mark fix requests as linked to `bundle` (those already fixed stay fixed).
    pub fn link_fix_requests(&self, ns: &[i64], bundle: &BundleRef) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(self.err("link fix requests"))?;
        for n in ns {
            tx.execute(
                "UPDATE fix_requests SET bundle = ?2, status = 'linked' WHERE n = ?1 AND status != 'fixed'",
                params![n, bundle.to_string()],
            )
            .map_err(self.err("link fix requests"))?;
        }
        tx.commit().map_err(self.err("link fix requests"))
    }

    /// Store a receipt; `false` when this platform already sent one with this id (nothing is
    /// stored again). An `applied` receipt marks the platform's fix requests linked to its
    /// bundles as fixed.
    pub fn add_receipt(&self, r: &NewReceipt, now: Timestamp) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.err("store a receipt"))?;
        let bundles: Vec<String> = r.bundles.iter().map(ToString::to_string).collect();
        let bundles_json = serde_json::Value::from(bundles.clone()).to_string();
        let inserted = tx
            .execute(
                "INSERT INTO receipts (platform, id, outcome, bundles, reason, started_at, finished_at, received_at, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (platform, id) DO NOTHING",
                params![
                    r.platform.as_str(),
                    r.id,
                    r.outcome,
                    bundles_json,
                    r.reason,
                    r.started_at.to_string(),
                    r.finished_at.to_string(),
                    stamp(now),
                    r.body.to_string()
                ],
            )
            .map_err(self.err("store a receipt"))?;
        if inserted == 0 {
            return Ok(false);
        }
        let unique: BTreeSet<&String> = bundles.iter().collect();
        for b in unique {
            tx.execute(
                "INSERT INTO receipt_bundles (platform, receipt_id, bundle, outcome) VALUES (?1, ?2, ?3, ?4)",
                params![r.platform.as_str(), r.id, b, r.outcome],
            )
            .map_err(self.err("store a receipt"))?;
            if r.outcome == "applied" {
                tx.execute(
                    "UPDATE fix_requests SET status = 'fixed' WHERE platform = ?1 AND bundle = ?2 AND status = 'linked'",
                    params![r.platform.as_str(), b],
                )
                .map_err(self.err("store a receipt"))?;
            }
        }
        tx.execute("UPDATE platforms SET last_seen = ?2 WHERE name = ?1", params![r.platform.as_str(), stamp(now)])
            .map_err(self.err("store a receipt"))?;
        tx.commit().map_err(self.err("store a receipt"))?;
        Ok(true)
    }

    /// How many receipts are stored.
    pub fn receipt_count(&self) -> Result<u64> {
        self.conn().query_row("SELECT count(*) FROM receipts", [], |r| r.get(0)).map_err(self.err("count receipts"))
    }

    /// The distinct platforms that sent a `rolled-back` receipt for `bundle`, by name.
    pub fn rolled_back_on(&self, bundle: &BundleRef) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT DISTINCT platform FROM receipt_bundles WHERE bundle = ?1 AND outcome = 'rolled-back' ORDER BY platform")
            .map_err(self.err("count rollbacks"))?;
        let rows = stmt.query_map([bundle.to_string()], |r| r.get(0)).map_err(self.err("count rollbacks"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err("count rollbacks"))
    }

    /// Whether the server already halted `bundle` by itself.
    pub fn auto_halted(&self, bundle: &BundleRef) -> Result<bool> {
        let found: Option<i64> = self
            .conn()
            .query_row("SELECT 1 FROM auto_halts WHERE bundle = ?1", [bundle.to_string()], |r| r.get(0))
            .optional()
            .map_err(self.err("read auto-halts"))?;
        Ok(found.is_some())
    }

    /// Remember that the server halted `bundle` by itself, because of `platforms`.
    pub fn record_auto_halt(&self, bundle: &BundleRef, platforms: &[String], now: Timestamp) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO auto_halts (bundle, platforms, halted_at) VALUES (?1, ?2, ?3) ON CONFLICT (bundle) DO NOTHING",
                params![bundle.to_string(), serde_json::Value::from(platforms.to_vec()).to_string(), stamp(now)],
            )
            .map_err(self.err("record an auto-halt"))?;
        Ok(())
    }

    /// Per bundle (`id@version`): receipts applied, rolled back, failed (distinct platforms).
    pub fn bundle_outcomes(&self) -> Result<BTreeMap<String, BundleOutcomes>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT bundle, outcome, count(DISTINCT platform) FROM receipt_bundles GROUP BY bundle, outcome")
            .map_err(self.err("summarise receipts"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, u64>(2)?)))
            .map_err(self.err("summarise receipts"))?;
        let mut out: BTreeMap<String, BundleOutcomes> = BTreeMap::new();
        for row in rows {
            let (bundle, outcome, n) = row.map_err(self.err("summarise receipts"))?;
            let e = out.entry(bundle).or_default();
            match outcome.as_str() {
                "applied" => e.applied += n,
                "rolled-back" => e.rolled_back += n,
                "failed" => e.failed += n,
                _ => {}
            }
        }
        Ok(out)
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let err = |what| Store::err_at(path, what);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err("start a migration"))?;
    let current: usize = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(err("read the schema version"))?;
    if current > MIGRATIONS.len() {
        return Err(Error::Refused(format!(
            "control-plane store {}: schema version {current} is newer than this palier-server knows ({}); upgrade palier-server",
            path.display(),
            MIGRATIONS.len()
        )));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.execute_batch(step).map_err(err("apply a schema migration"))?;
        tx.pragma_update(None, "user_version", i + 1).map_err(err("record the schema version"))?;
        tracing::info!(store = %path.display(), version = i + 1, "schema migrated");
    }
    tx.commit().map_err(err("commit a schema migration"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn now() -> Timestamp {
        "2026-03-01T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn migrates_once_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("palier.db");
        let s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap() as usize, MIGRATIONS.len());
        let p = PlatformId::new("univ-a").unwrap();
        let token = s.add_platform(&p, now()).unwrap();
        assert_eq!(token.len(), 64);
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.authenticate(&token).unwrap(), Some(p.clone()));
        assert_eq!(s.authenticate("nope").unwrap(), None);
        assert!(s.add_platform(&p, now()).unwrap_err().to_string().contains("already exists"));
        let mode: String = s.conn().query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("palier.db");
        Store::open(&path).unwrap().conn().pragma_update(None, "user_version", 99).unwrap();
        assert!(Store::open(&path).unwrap_err().to_string().contains("newer"));
    }

    #[test]
    fn fix_ids() {
        assert_eq!(parse_fix_id("FR-12"), Some(12));
        for bad in ["FR-", "FR-0", "FR-01", "fr-1", "FR-1a", "JIRA-1"] {
            assert_eq!(parse_fix_id(bad), None, "{bad}");
        }
        assert!(looks_like_fix_id("FR-0") && looks_like_fix_id("FR-999") && !looks_like_fix_id("MDL-1") && !looks_like_fix_id("FR-x"));
    }
}
