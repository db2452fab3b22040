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
use palier_policy::Decision;
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
    // 2: the contract registered for each platform, what its agent reports of its own
    // contract and of the repository, the bundles it had due, installed or held (what an
    // auto-halt trusts), the bytes it stored (its quota), and the receipts behind each auto-halt.
    "ALTER TABLE platforms ADD COLUMN contract TEXT;
    ALTER TABLE platforms ADD COLUMN reported_components TEXT;
    ALTER TABLE platforms ADD COLUMN reported_level2_classes TEXT;
    ALTER TABLE platforms ADD COLUMN repository_error TEXT;
    ALTER TABLE platforms ADD COLUMN due TEXT;
    ALTER TABLE platforms ADD COLUMN holds TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE platforms ADD COLUMN stored_bytes INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE platform_bundles (
        platform TEXT NOT NULL REFERENCES platforms(name) ON DELETE CASCADE,
        bundle TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        PRIMARY KEY (platform, bundle)
    ) STRICT, WITHOUT ROWID;
    ALTER TABLE auto_halts ADD COLUMN receipts TEXT NOT NULL DEFAULT '[]';",
    // 3: the latest plan each agent reported with its status (the fleet view), and each
    // platform's calendar secret (the served iCalendar feed's URL).
    "CREATE TABLE platform_plans (
        platform TEXT PRIMARY KEY NOT NULL REFERENCES platforms(name) ON DELETE CASCADE,
        plan_now TEXT NOT NULL,
        received_at TEXT NOT NULL,
        bundles TEXT NOT NULL
    ) STRICT;
    CREATE TABLE platform_calendars (
        platform TEXT PRIMARY KEY NOT NULL REFERENCES platforms(name) ON DELETE CASCADE,
        secret TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    ) STRICT;
    CREATE INDEX receipts_platform_finished ON receipts(platform, finished_at);",
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

/// The contract the hosting provider signed with a platform's customer, as registered with
/// `platform add` / `platform set`: what the server trusts the platform to receive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformContract {
    pub improvement: u8,
    pub stability: u8,
    /// The components of improvement level 2.
    #[serde(default)]
    pub components: Vec<String>,
    /// The classes level 2 admits; empty means the default (`technical`).
    #[serde(default)]
    pub level2_classes: Vec<String>,
}

impl PlatformContract {
    /// Checked: levels 1 to 3, valid component names, level-2 classes `technical` or
    /// `non-layout`; components and classes sorted, without duplicates.
    pub fn new(improvement: u8, stability: u8, components: Vec<String>, level2_classes: Vec<String>) -> Result<Self> {
        let c = PlatformContract { improvement, stability, components, level2_classes };
        c.improvement_axis()?;
        let mut c = c;
        c.components.sort();
        c.components.dedup();
        c.level2_classes.sort();
        c.level2_classes.dedup();
        Ok(c)
    }

    /// The improvement axis as the policy takes it.
    pub fn improvement_axis(&self) -> Result<palier_policy::Improvement> {
        use palier_policy::{Improvement, Level};
        let bad = |what: String| Error::Refused(format!("contract: {what}"));
        let level = |n: u8, name: &str| Level::new(i64::from(n)).map_err(|e| bad(format!("{name} level {n}: {e}")));
        level(self.stability, "stability")?;
        let components = self.components.iter().map(|c| Component::new(c).map_err(|e| bad(format!("component {c:?}: {e}")))).collect::<Result<Vec<_>>>()?;
        let mut imp = Improvement::new(level(self.improvement, "improvement")?).with_components(components);
        if !self.level2_classes.is_empty() {
            let classes = self
                .level2_classes
                .iter()
                .map(|c| {
                    palier_bundle::ChangeClass::ALL
                        .into_iter()
                        .find(|k| k.as_str() == c)
                        .ok_or_else(|| bad(format!("level-2 class {c:?}: expected technical or non-layout")))
                })
                .collect::<Result<Vec<_>>>()?;
            imp = imp.with_level2_classes(classes).map_err(|e| bad(e.to_string()))?;
        }
        Ok(imp)
    }

    /// In words, for lists: `2/1 components mod_quiz classes technical`.
    pub fn describe(&self) -> String {
        let mut out = format!("{}/{}", self.improvement, self.stability);
        if !self.components.is_empty() {
            out.push_str(&format!(" components {}", self.components.join(",")));
        }
        if !self.level2_classes.is_empty() {
            out.push_str(&format!(" classes {}", self.level2_classes.join(",")));
        }
        out
    }
}

/// One platform in the fleet view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    pub name: String,
    pub created_at: String,
    /// The contract registered on the server (`None` for a platform registered before contracts).
    #[serde(default)]
    pub contract: Option<PlatformContract>,
    /// The levels the agent reports it runs with.
    pub improvement_level: Option<u8>,
    pub stability_level: Option<u8>,
    /// The components and level-2 classes the agent reports (`None`: an agent that does not say).
    #[serde(default)]
    pub reported_components: Option<Vec<String>>,
    #[serde(default)]
    pub reported_level2_classes: Option<Vec<String>>,
    pub installed: Vec<Installed>,
    /// The bundles the agent's last status said were due (`None`: an agent that does not say).
    #[serde(default)]
    pub due: Option<Vec<Installed>>,
    #[serde(default)]
    pub holds: Vec<Hold>,
    pub next_intervention: Option<String>,
    pub last_outcome: Option<String>,
    pub last_seen: Option<String>,
    /// Why the agent could not refresh or verify the repository at its last status, if so.
    #[serde(default)]
    pub repository_error: Option<String>,
}

impl Platform {
    /// How what the agent reports differs from the registered contract, in words; empty when
    /// they agree (or either side is unknown).
    pub fn contract_mismatch(&self) -> Vec<String> {
        let Some(c) = &self.contract else { return Vec::new() };
        let mut out = Vec::new();
        if let Some(i) = self.improvement_level.filter(|i| *i != c.improvement) {
            out.push(format!("improvement {i}, registered {}", c.improvement));
        }
        if let Some(s) = self.stability_level.filter(|s| *s != c.stability) {
            out.push(format!("stability {s}, registered {}", c.stability));
        }
        if let Some(comps) = &self.reported_components {
            let mut comps = comps.clone();
            comps.sort();
            comps.dedup();
            if comps != c.components {
                out.push(format!("components [{}], registered [{}]", comps.join(","), c.components.join(",")));
            }
        }
        if let Some(classes) = &self.reported_level2_classes {
            let mut classes = classes.clone();
            classes.sort();
            classes.dedup();
            let registered = if c.level2_classes.is_empty() { vec!["technical".to_owned()] } else { c.level2_classes.clone() };
            let reported = if classes.is_empty() { vec!["technical".to_owned()] } else { classes };
            if reported != registered {
                out.push(format!("level-2 classes [{}], registered [{}]", reported.join(","), registered.join(",")));
            }
        }
        out
    }
}

/// A bundle version held on a site (not retried), as the agent's status reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hold {
    pub id: String,
    pub version: String,
    pub since: String,
    pub reason: String,
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
    /// The improvement components in the agent's config (an older agent leaves it out).
    #[serde(default)]
    pub components: Option<Vec<String>>,
    #[serde(default)]
    pub level2_classes: Option<Vec<String>>,
    /// One line when this cycle could not refresh or verify the repository; `null` when it did.
    #[serde(default)]
    pub repository_error: Option<String>,
    /// The bundles the agent's plan says are eligible this cycle.
    #[serde(default)]
    pub due: Option<Vec<Installed>>,
    /// The bundle versions held on the site.
    #[serde(default)]
    pub holds: Option<Vec<Hold>>,
    /// The agent's plan this cycle, compact (wire contract 1); an older agent, or a cycle
    /// that could not verify the repository, leaves it out (the last one stored is kept).
    #[serde(default)]
    pub plan: Option<ReportedPlan>,
}

impl Status {
    /// A status with the fields every agent sends and none of the newer ones.
    pub fn basic(improvement_level: u8, stability_level: u8, installed: Vec<Installed>, next_intervention: Option<Timestamp>, last_outcome: Option<String>) -> Status {
        Status {
            improvement_level,
            stability_level,
            installed,
            next_intervention,
            last_outcome,
            components: None,
            level2_classes: None,
            repository_error: None,
            due: None,
            holds: None,
            plan: None,
        }
    }
}

/// A plan as the agent reports it: the instant it planned for and, per bundle version, the
/// decision of `plan --json` (read with the policy's own type, so the codes are checked;
/// `detail` is not kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportedPlan {
    pub now: Timestamp,
    pub bundles: Vec<Decision>,
}

/// The latest plan a platform reported, with when the server received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredPlan {
    /// The instant the agent planned for.
    pub now: Timestamp,
    pub received_at: String,
    pub bundles: Vec<Decision>,
}

impl StoredPlan {
    /// The decision about `bundle`, if the plan has one.
    pub fn get(&self, bundle: &BundleRef) -> Option<&Decision> {
        self.bundles.iter().find(|d| d.id == bundle.id && d.version == bundle.version)
    }
}

/// The latest receipt of a platform naming a bundle (see [`Store::latest_receipts`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceiptRef {
    pub id: String,
    pub outcome: String,
    pub finished_at: String,
    pub reason: Option<String>,
}

/// A stored receipt, as the agent sent it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredReceipt {
    pub id: String,
    pub outcome: String,
    pub bundles: Vec<String>,
    pub finished_at: String,
    pub received_at: String,
    pub body: serde_json::Value,
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

/// One platform's rolled-back receipts for a bundle version, with what the server knows of
/// that platform: what an auto-halt weighs.
#[derive(Debug, Clone)]
pub struct RollbackReport {
    pub platform: String,
    pub receipts: Vec<String>,
    pub contract: Option<PlatformContract>,
    /// A status of this platform named the bundle as due, installed or held.
    pub had_it: bool,
    /// This platform's agent reports what it has due (a newer agent); an older one does not,
    /// so only its contract can be checked.
    pub reports_due: bool,
}

/// An auto-halt the server did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AutoHalt {
    pub bundle: String,
    pub platforms: Vec<String>,
    /// `platform/receipt-id` of the rolled-back receipts that triggered it.
    pub receipts: Vec<String>,
    pub halted_at: String,
}

/// What [`Store::add_receipt_within`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptStored {
    Stored,
    /// This platform already sent a receipt with this id: nothing stored again.
    Duplicate,
    /// Storing it would take the platform over its quota; `stored` bytes are held already.
    OverQuota { stored: u64 },
}

/// JSON text of a value the store keeps in a column.
fn encode<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Refused(format!("cannot encode a store value: {e}")))
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
    /// Open (creating it if needed, mode 0600) and bring the schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        if !path.exists() {
            create_private(path)?;
        }
        Self::open_file(path)
    }

    /// Open a store that exists; a missing one is refused with the command that creates it
    /// (a mistyped `--db` must not serve or list an empty store).
    pub fn open_existing(path: &Path) -> Result<Store> {
        if !path.is_file() {
            return Err(Error::Refused(format!(
                "no control-plane store at {} (create one with `palier-server platform add NAME --improvement N --stability N --db {}`)",
                path.display(),
                path.display()
            )));
        }
        Self::open_file(path)
    }

    fn open_file(path: &Path) -> Result<Store> {
        let err = |what| Self::err_at(path, what);
        let mut conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(err("open"))?;
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

    /// Register a platform without a contract (it then never counts towards an auto-halt);
    /// returns its API token, which is not kept (only its hash is).
    pub fn add_platform(&self, name: &PlatformId, now: Timestamp) -> Result<String> {
        self.add_platform_with(name, None, now)
    }

    /// Register a platform with the contract signed for it; returns its API token.
    pub fn add_platform_with(&self, name: &PlatformId, contract: Option<&PlatformContract>, now: Timestamp) -> Result<String> {
        let mut tokens = self.add_platforms(&[(name.clone(), contract.cloned())], now)?;
        Ok(tokens.pop().unwrap_or_default())
    }

    /// Register several platforms in one transaction (all or none); their tokens, in order.
    pub fn add_platforms(&self, platforms: &[(PlatformId, Option<PlatformContract>)], now: Timestamp) -> Result<Vec<String>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.err("add platforms"))?;
        let mut tokens = Vec::with_capacity(platforms.len());
        {
            let mut insert = tx
                .prepare("INSERT INTO platforms (name, token_sha256, created_at, contract) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (name) DO NOTHING")
                .map_err(self.err("add a platform"))?;
            for (name, contract) in platforms {
                let token = new_token()?;
                let contract = contract.as_ref().map(encode).transpose()?;
                let inserted = insert.execute(params![name.as_str(), token_hash(&token), stamp(now), contract]).map_err(self.err("add a platform"))?;
                if inserted == 0 {
                    return Err(Error::Refused(format!("platform {name} already exists in {}", self.path.display())));
                }
                tokens.push(token);
            }
            let mut calendar = tx
                .prepare("INSERT INTO platform_calendars (platform, secret, created_at) VALUES (?1, ?2, ?3)")
                .map_err(self.err("add a platform"))?;
            for (name, _) in platforms {
                calendar.execute(params![name.as_str(), new_token()?, stamp(now)]).map_err(self.err("add a platform"))?;
            }
        }
        tx.commit().map_err(self.err("add platforms"))?;
        Ok(tokens)
    }

    /// Register (or change) a platform's contract.
    pub fn set_contract(&self, name: &PlatformId, contract: &PlatformContract) -> Result<()> {
        let n = self
            .conn()
            .execute("UPDATE platforms SET contract = ?2 WHERE name = ?1", params![name.as_str(), encode(contract)?])
            .map_err(self.err("set a contract"))?;
        self.found(n, name)
    }

    /// A new API token for a platform; the old one stops working at once.
    pub fn reissue_token(&self, name: &PlatformId) -> Result<String> {
        let token = new_token()?;
        let n = self
            .conn()
            .execute("UPDATE platforms SET token_sha256 = ?2 WHERE name = ?1", params![name.as_str(), token_hash(&token)])
            .map_err(self.err("re-issue a token"))?;
        self.found(n, name)?;
        Ok(token)
    }

    /// Remove a platform with its fix requests, receipts and everything its agent reported.
    pub fn remove_platform(&self, name: &PlatformId) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.err("remove a platform"))?;
        for sql in [
            "DELETE FROM receipt_bundles WHERE platform = ?1",
            "DELETE FROM receipts WHERE platform = ?1",
            "DELETE FROM fix_requests WHERE platform = ?1",
            "DELETE FROM platform_bundles WHERE platform = ?1",
            "DELETE FROM platform_plans WHERE platform = ?1",
            "DELETE FROM platform_calendars WHERE platform = ?1",
        ] {
            tx.execute(sql, [name.as_str()]).map_err(self.err("remove a platform"))?;
        }
        let n = tx.execute("DELETE FROM platforms WHERE name = ?1", [name.as_str()]).map_err(self.err("remove a platform"))?;
        self.found(n, name)?;
        tx.commit().map_err(self.err("remove a platform"))
    }

    fn found(&self, rows: usize, name: &PlatformId) -> Result<()> {
        if rows == 0 {
            return Err(Error::Refused(format!(
                "no platform {name} in {} (`palier-server platform list --db {}` lists them)",
                self.path.display(),
                self.path.display()
            )));
        }
        Ok(())
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
        self.query_platforms("", &[])
    }

    /// One platform.
    pub fn platform(&self, name: &PlatformId) -> Result<Option<Platform>> {
        Ok(self.query_platforms("WHERE name = ?1", &[&name.as_str()])?.into_iter().next())
    }

    fn query_platforms(&self, filter: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<Platform>> {
        let conn = self.conn();
        let sql = format!(
            "SELECT name, created_at, improvement_level, stability_level, installed, next_intervention, last_outcome, last_seen,
             contract, reported_components, reported_level2_classes, repository_error, due, holds
             FROM platforms {filter} ORDER BY name"
        );
        let mut stmt = conn.prepare(&sql).map_err(self.err("list platforms"))?;
        let rows = stmt
            .query_map(args, |r| {
                let installed: String = r.get(4)?;
                let json = |i: usize| -> rusqlite::Result<Option<String>> { r.get(i) };
                Ok(Platform {
                    name: r.get(0)?,
                    created_at: r.get(1)?,
                    contract: json(8)?.and_then(|c| serde_json::from_str(&c).ok()),
                    improvement_level: r.get(2)?,
                    stability_level: r.get(3)?,
                    reported_components: json(9)?.and_then(|c| serde_json::from_str(&c).ok()),
                    reported_level2_classes: json(10)?.and_then(|c| serde_json::from_str(&c).ok()),
                    installed: serde_json::from_str(&installed).unwrap_or_default(),
                    due: json(12)?.and_then(|c| serde_json::from_str(&c).ok()),
                    holds: json(13)?.and_then(|c| serde_json::from_str(&c).ok()).unwrap_or_default(),
                    next_intervention: r.get(5)?,
                    last_outcome: r.get(6)?,
                    last_seen: r.get(7)?,
                    repository_error: r.get(11)?,
                })
            })
            .map_err(self.err("list platforms"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err("list platforms"))
    }

    /// Record a platform's status report, and remember the bundles it names as due,
    /// installed or held (what an auto-halt trusts).
    pub fn set_status(&self, platform: &PlatformId, status: &Status, now: Timestamp) -> Result<()> {
        let mut installed = status.installed.clone();
        installed.sort();
        installed.dedup();
        let seen: BTreeSet<String> = installed
            .iter()
            .chain(status.due.iter().flatten())
            .map(|i| format!("{}@{}", i.id, i.version))
            .chain(status.holds.iter().flatten().map(|h| format!("{}@{}", h.id, h.version)))
            .collect();
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.err("record a status"))?;
        tx.execute(
            "UPDATE platforms SET improvement_level = ?2, stability_level = ?3, installed = ?4, next_intervention = ?5,
             last_outcome = ?6, last_seen = ?7, reported_components = ?8, reported_level2_classes = ?9, repository_error = ?10,
             due = ?11, holds = ?12 WHERE name = ?1",
            params![
                platform.as_str(),
                status.improvement_level,
                status.stability_level,
                encode(&installed)?,
                status.next_intervention.map(|t| t.to_string()),
                status.last_outcome,
                stamp(now),
                status.components.as_ref().map(encode).transpose()?,
                status.level2_classes.as_ref().map(encode).transpose()?,
                status.repository_error,
                status.due.as_ref().map(encode).transpose()?,
                encode(&status.holds.clone().unwrap_or_default())?,
            ],
        )
        .map_err(self.err("record a status"))?;
        {
            let mut insert = tx
                .prepare("INSERT INTO platform_bundles (platform, bundle, first_seen) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING")
                .map_err(self.err("record a status"))?;
            for b in &seen {
                insert.execute(params![platform.as_str(), b, stamp(now)]).map_err(self.err("record a status"))?;
            }
        }
        if let Some(plan) = &status.plan {
            tx.execute(
                "INSERT INTO platform_plans (platform, plan_now, received_at, bundles) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (platform) DO UPDATE SET plan_now = excluded.plan_now, received_at = excluded.received_at, bundles = excluded.bundles",
                params![platform.as_str(), plan.now.to_string(), stamp(now), encode(&plan.bundles)?],
            )
            .map_err(self.err("record a plan"))?;
        }
        tx.commit().map_err(self.err("record a status"))
    }

    /// The latest plan `platform` reported, if any.
    pub fn plan(&self, platform: &PlatformId) -> Result<Option<StoredPlan>> {
        Ok(self.query_plans("WHERE platform = ?1", &[&platform.as_str()])?.into_values().next())
    }

    /// The latest plan of every platform that reported one, by platform name.
    pub fn plans(&self) -> Result<BTreeMap<String, StoredPlan>> {
        self.query_plans("", &[])
    }

    fn query_plans(&self, filter: &str, args: &[&dyn rusqlite::ToSql]) -> Result<BTreeMap<String, StoredPlan>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT platform, plan_now, received_at, bundles FROM platform_plans {filter}")).map_err(self.err("read plans"))?;
        let rows = stmt
            .query_map(args, |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?)))
            .map_err(self.err("read plans"))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (platform, now, received_at, bundles) = row.map_err(self.err("read plans"))?;
            if let Some(plan) = StoredPlan::from_row(&platform, &PlanRow { now, received_at, bundles }) {
                out.insert(platform, plan);
            }
        }
        Ok(out)
    }

    /// Per platform and bundle (`id@version`), the latest receipt naming it (by `finished_at`);
    /// only for `bundle` when given.
    pub fn latest_receipts(&self, bundle: Option<&BundleRef>) -> Result<BTreeMap<(String, String), ReceiptRef>> {
        let conn = self.conn();
        let sql = "SELECT rb.platform, rb.bundle, r.id, r.outcome, r.finished_at, r.reason
                   FROM receipt_bundles rb JOIN receipts r ON r.platform = rb.platform AND r.id = rb.receipt_id
                   WHERE ?1 IS NULL OR rb.bundle = ?1";
        let mut stmt = conn.prepare(sql).map_err(self.err("read receipts"))?;
        let rows = stmt
            .query_map([bundle.map(ToString::to_string)], |r| {
                Ok(((r.get::<_, String>(0)?, r.get::<_, String>(1)?), ReceiptRef { id: r.get(2)?, outcome: r.get(3)?, finished_at: r.get(4)?, reason: r.get(5)? }))
            })
            .map_err(self.err("read receipts"))?;
        let mut out: BTreeMap<(String, String), ReceiptRef> = BTreeMap::new();
        let time = |r: &ReceiptRef| r.finished_at.parse::<Timestamp>().ok();
        for row in rows {
            let (key, receipt) = row.map_err(self.err("read receipts"))?;
            match out.get(&key) {
                Some(known) if (time(known), &known.id) >= (time(&receipt), &receipt.id) => {}
                _ => {
                    out.insert(key, receipt);
                }
            }
        }
        Ok(out)
    }

    /// A platform's latest `limit` receipts, the latest first, as sent.
    pub fn recent_receipts(&self, platform: &PlatformId, limit: usize) -> Result<Vec<StoredReceipt>> {
        self.receipts_page(platform, 0, limit)
    }

    /// The secret of `platform`'s calendar URL, made now if it has none yet (a platform
    /// registered before calendars were served).
    pub fn calendar_secret(&self, platform: &PlatformId, now: Timestamp) -> Result<String> {
        let conn = self.conn();
        let known: Option<String> = conn
            .query_row("SELECT secret FROM platform_calendars WHERE platform = ?1", [platform.as_str()], |r| r.get(0))
            .optional()
            .map_err(self.err("read a calendar secret"))?;
        if let Some(secret) = known {
            return Ok(secret);
        }
        let exists = conn
            .query_row("SELECT 1 FROM platforms WHERE name = ?1", [platform.as_str()], |_| Ok(()))
            .optional()
            .map_err(self.err("read a calendar secret"))?
            .is_some();
        drop(conn);
        self.found(usize::from(exists), platform)?;
        let secret = new_token()?;
        self.conn()
            .execute(
                "INSERT INTO platform_calendars (platform, secret, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (platform) DO NOTHING",
                params![platform.as_str(), secret, stamp(now)],
            )
            .map_err(self.err("make a calendar secret"))?;
        self.calendar_secret(platform, now)
    }

    /// The platform whose calendar secret is `secret`, if any. The lookup goes by the secret
    /// (so a wrong secret tells nothing of which platforms exist), then the secret found is
    /// compared again in constant time.
    pub fn calendar_platform(&self, secret: &str) -> Result<Option<PlatformId>> {
        let row: Option<(String, String)> = self
            .conn()
            .query_row("SELECT platform, secret FROM platform_calendars WHERE secret = ?1", [secret], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(self.err("look up a calendar secret"))?;
        let Some((name, stored)) = row else { return Ok(None) };
        if aws_lc_rs::constant_time::verify_slices_are_equal(stored.as_bytes(), secret.as_bytes()).is_err() {
            return Ok(None);
        }
        Ok(PlatformId::new(name).ok())
    }

    /// The bytes of receipts and fix requests a platform has stored.
    pub fn stored_bytes(&self, platform: &PlatformId) -> Result<u64> {
        self.conn()
            .query_row("SELECT stored_bytes FROM platforms WHERE name = ?1", [platform.as_str()], |r| r.get(0))
            .optional()
            .map_err(self.err("read a platform's stored bytes"))
            .map(Option::unwrap_or_default)
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
        let id = conn.last_insert_rowid();
        conn.execute("UPDATE platforms SET stored_bytes = stored_bytes + ?2 WHERE name = ?1", params![platform.as_str(), summary.len() + 128])
            .map_err(self.err("add a fix request"))?;
        Ok(FixRequest {
            id: format!("FR-{id}"),
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
        Ok(self.add_receipt_within(r, now, u64::MAX)? == ReceiptStored::Stored)
    }

    /// Store a receipt unless the platform would then hold more than `quota` bytes.
    pub fn add_receipt_within(&self, r: &NewReceipt, now: Timestamp, quota: u64) -> Result<ReceiptStored> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.err("store a receipt"))?;
        let bundles: Vec<String> = r.bundles.iter().map(ToString::to_string).collect();
        let bundles_json = serde_json::Value::from(bundles.clone()).to_string();
        let body = r.body.to_string();
        let size = body.len() as u64;
        let stored: u64 = tx
            .query_row("SELECT stored_bytes FROM platforms WHERE name = ?1", [r.platform.as_str()], |row| row.get(0))
            .optional()
            .map_err(self.err("store a receipt"))?
            .unwrap_or_default();
        let exists: bool = tx
            .query_row("SELECT 1 FROM receipts WHERE platform = ?1 AND id = ?2", params![r.platform.as_str(), r.id], |_| Ok(()))
            .optional()
            .map_err(self.err("store a receipt"))?
            .is_some();
        if exists {
            return Ok(ReceiptStored::Duplicate);
        }
        if stored.saturating_add(size) > quota {
            return Ok(ReceiptStored::OverQuota { stored });
        }
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
                    body
                ],
            )
            .map_err(self.err("store a receipt"))?;
        if inserted == 0 {
            return Ok(ReceiptStored::Duplicate);
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
        tx.execute(
            "UPDATE platforms SET last_seen = ?2, stored_bytes = stored_bytes + ?3 WHERE name = ?1",
            params![r.platform.as_str(), stamp(now), size],
        )
        .map_err(self.err("store a receipt"))?;
        tx.commit().map_err(self.err("store a receipt"))?;
        Ok(ReceiptStored::Stored)
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

    /// Per platform that sent a `rolled-back` receipt for `bundle`: its receipts, its registered
    /// contract, and whether a status of it named the bundle as due, installed or held.
    pub fn rollback_reports(&self, bundle: &BundleRef) -> Result<Vec<RollbackReport>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT rb.platform, group_concat(rb.receipt_id, char(10)), p.contract, p.due IS NOT NULL,
                        EXISTS (SELECT 1 FROM platform_bundles pb WHERE pb.platform = rb.platform AND pb.bundle = rb.bundle)
                 FROM receipt_bundles rb JOIN platforms p ON p.name = rb.platform
                 WHERE rb.bundle = ?1 AND rb.outcome = 'rolled-back'
                 GROUP BY rb.platform ORDER BY rb.platform",
            )
            .map_err(self.err("count rollbacks"))?;
        let rows = stmt
            .query_map([bundle.to_string()], |r| {
                let receipts: String = r.get(1)?;
                let contract: Option<String> = r.get(2)?;
                let mut receipts: Vec<String> = receipts.split('\n').map(str::to_owned).collect();
                receipts.sort();
                Ok(RollbackReport {
                    platform: r.get(0)?,
                    receipts,
                    contract: contract.and_then(|c| serde_json::from_str(&c).ok()),
                    reports_due: r.get(3)?,
                    had_it: r.get(4)?,
                })
            })
            .map_err(self.err("count rollbacks"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err("count rollbacks"))
    }

    /// The distinct platforms that applied `bundle` (receipts `applied` or `rolled-back`).
    pub fn applied_on(&self, bundle: &BundleRef) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT DISTINCT platform FROM receipt_bundles WHERE bundle = ?1 AND outcome IN ('applied', 'rolled-back') ORDER BY platform")
            .map_err(self.err("count adoptions"))?;
        let rows = stmt.query_map([bundle.to_string()], |r| r.get(0)).map_err(self.err("count adoptions"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err("count adoptions"))
    }

    /// The bundles a platform reported rolled back.
    pub fn rolled_back_by(&self, platform: &PlatformId) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT DISTINCT bundle FROM receipt_bundles WHERE platform = ?1 AND outcome = 'rolled-back' ORDER BY bundle")
            .map_err(self.err("list rollbacks"))?;
        let rows = stmt.query_map([platform.as_str()], |r| r.get(0)).map_err(self.err("list rollbacks"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err("list rollbacks"))
    }

    /// Every auto-halt, the latest first.
    pub fn auto_halts(&self) -> Result<Vec<AutoHalt>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT bundle, platforms, receipts, halted_at FROM auto_halts ORDER BY halted_at DESC, bundle").map_err(self.err("list auto-halts"))?;
        let rows = stmt
            .query_map([], |r| {
                let (p, rc): (String, String) = (r.get(1)?, r.get(2)?);
                Ok(AutoHalt { bundle: r.get(0)?, platforms: serde_json::from_str(&p).unwrap_or_default(), receipts: serde_json::from_str(&rc).unwrap_or_default(), halted_at: r.get(3)? })
            })
            .map_err(self.err("list auto-halts"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err("list auto-halts"))
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

    /// Remember that the server halted `bundle` by itself, because of `platforms` and their
    /// `receipts` (`platform/receipt-id`).
    pub fn record_auto_halt(&self, bundle: &BundleRef, platforms: &[String], receipts: &[String], now: Timestamp) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO auto_halts (bundle, platforms, halted_at, receipts) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (bundle) DO NOTHING",
                params![bundle.to_string(), serde_json::Value::from(platforms.to_vec()).to_string(), stamp(now), encode(&receipts)?],
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

impl Store {
    /// How many receipts `platform` has stored.
    pub fn receipt_count_of(&self, platform: &PlatformId) -> Result<usize> {
        let n: i64 = self
            .conn()
            .query_row("SELECT count(*) FROM receipts WHERE platform = ?1", [platform.as_str()], |r| r.get(0))
            .map_err(self.err("count a platform's receipts"))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// A platform's receipts, the latest first (as [`Store::recent_receipts`]), `limit` of
    /// them from `offset`: a page of the dashboard.
    pub fn receipts_page(&self, platform: &PlatformId, offset: usize, limit: usize) -> Result<Vec<StoredReceipt>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT id, outcome, bundles, finished_at, received_at, body FROM receipts WHERE platform = ?1
                 ORDER BY finished_at DESC, id DESC LIMIT ?2 OFFSET ?3",
            )
            .map_err(self.err("read receipts"))?;
        let (limit, offset) = (i64::try_from(limit).unwrap_or(i64::MAX), i64::try_from(offset).unwrap_or(i64::MAX));
        let rows = stmt
            .query_map(params![platform.as_str(), limit, offset], |r| {
                let (bundles, body): (String, String) = (r.get(2)?, r.get(5)?);
                Ok(StoredReceipt {
                    id: r.get(0)?,
                    outcome: r.get(1)?,
                    bundles: serde_json::from_str(&bundles).unwrap_or_default(),
                    finished_at: r.get(3)?,
                    received_at: r.get(4)?,
                    body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
                })
            })
            .map_err(self.err("read receipts"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err("read receipts"))
    }
}

/// A stored plan as its row holds it, unparsed (see [`Store::plan_rows`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRow {
    pub now: String,
    pub received_at: String,
    pub bundles: String,
}

impl StoredPlan {
    /// The plan a row holds; `None` (with a warning) when it does not read back: the store
    /// writes it from checked values, so such a row is skipped until the platform's next status.
    pub fn from_row(platform: &str, row: &PlanRow) -> Option<StoredPlan> {
        let (Ok(now), Ok(bundles)) = (row.now.parse(), serde_json::from_str(&row.bundles)) else {
            tracing::warn!(platform, "the stored plan of this platform cannot be read; ignored until its next status");
            return None;
        };
        Some(StoredPlan { now, received_at: row.received_at.clone(), bundles })
    }
}

impl Store {
    /// Every platform's latest plan, unparsed, by platform name: for a reader that keeps the
    /// plans it parsed already and parses only those that changed (the dashboard).
    pub fn plan_rows(&self) -> Result<BTreeMap<String, PlanRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT platform, plan_now, received_at, bundles FROM platform_plans").map_err(self.err("read plans"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, PlanRow { now: r.get(1)?, received_at: r.get(2)?, bundles: r.get(3)? })))
            .map_err(self.err("read plans"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err("read plans"))
    }
}

/// Create an empty SQLite file readable and writable by its owner only, whatever the umask
/// (the store holds token hashes and receipts with hook output; the ownership index sits
/// among the keys). SQLite gives its `-wal` and `-shm` files the mode of the database file,
/// so the file must exist with its mode before SQLite opens it.
pub(crate) fn create_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(Error::io("create", path))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(Error::io("set the mode of", path))
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
