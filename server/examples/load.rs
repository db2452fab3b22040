//! Load and abuse for `bench/load.sh`, on loopback only.
//!
//!     load setup --repo DIR --db FILE --platforms N --tokens FILE
//!         a repository with two crafted bundles, N platforms (contract 3/1), their tokens
//!     load attack --addr HOST:PORT --operator TOKEN --dashboard N --slowloris M --secs S
//!         N clients looping on `GET /` and M slowloris connections (a request head never
//!         finished, one byte every 2 s) for S seconds; prints JSON: pages served, and how
//!         long the server took to close each slowloris connection
//!     load probe --addr HOST:PORT --tokens FILE --count K
//!         K receipts, 4 at a time, each on a new connection; prints JSON latencies
//!     load agents --addr HOST:PORT --tokens FILE --concurrency C --deadline-secs S
//!         every platform of FILE sends a status and a receipt (one connection each);
//!         prints JSON: answers by status, p50/p99/max latency
//!     load count --db FILE
//!         prints JSON: receipts stored, platforms that reported a status
//!     load metric --addr HOST:PORT --operator TOKEN --name NAME
//!         prints the value of one /metrics line
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use clap::{Parser, Subcommand};
use jiff::Timestamp;
use palier_bundle::PlatformId;
use palier_bundle::hostile::{self, RawEntry};
use palier_server::repo::{self, Expiries, RepoPaths, Thresholds};
use palier_server::store::{PlatformContract, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Setup {
        #[arg(long)]
        repo: PathBuf,
        #[arg(long)]
        db: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        platforms: usize,
        #[arg(long)]
        tokens: PathBuf,
    },
    Attack {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        operator: String,
        #[arg(long, default_value_t = 1000)]
        dashboard: usize,
        #[arg(long, default_value_t = 3000)]
        slowloris: usize,
        #[arg(long, default_value_t = 30)]
        secs: u64,
    },
    Probe {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        tokens: PathBuf,
        #[arg(long, default_value_t = 200)]
        count: usize,
        /// Receipt ids start with this (so that probes do not collide).
        #[arg(long, default_value = "probe")]
        prefix: String,
    },
    Agents {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        tokens: PathBuf,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value_t = 300)]
        deadline_secs: u64,
    },
    Count {
        #[arg(long)]
        db: PathBuf,
    },
    Metric {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        operator: String,
        #[arg(long)]
        name: String,
    },
}

fn main() {
    palier_server::http::raise_nofile_limit();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    match cli.command {
        Cmd::Setup { repo, db, platforms, tokens } => rt.block_on(setup(repo, db, platforms, tokens)),
        Cmd::Attack { addr, operator, dashboard, slowloris, secs } => rt.block_on(attack(addr, operator, dashboard, slowloris, secs)),
        Cmd::Probe { addr, tokens, count, prefix } => rt.block_on(probe(addr, tokens, count, prefix)),
        Cmd::Agents { addr, tokens, concurrency, deadline_secs } => rt.block_on(agents(addr, tokens, concurrency, deadline_secs)),
        Cmd::Count { db } => {
            let store = Store::open_existing(&db).unwrap();
            let seen = store.platforms().unwrap().iter().filter(|p| p.improvement_level.is_some()).count();
            println!("{}", serde_json::json!({ "receipts": store.receipt_count().unwrap(), "statuses": seen }));
        }
        Cmd::Metric { addr, operator, name } => rt.block_on(async {
            let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("ops:{operator}")));
            let (_, body) = http(&addr, "GET", "/metrics", &[("Authorization", &auth)], "").await.unwrap();
            let value = body.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).unwrap_or("-").to_owned();
            println!("{value}");
        }),
    }
}

async fn setup(repo_dir: PathBuf, db: PathBuf, platforms: usize, tokens: PathBuf) {
    let paths = RepoPaths::new(&repo_dir, None);
    let now = Timestamp::now();
    repo::init(&paths, Thresholds::default(), Expiries::default(), now).await.unwrap();
    // Each its own file: `publish` refuses two ids writing one path.
    for (id, file) in [("crafted", "a.php"), ("other", "b.php")] {
        let m = hostile::manifest_for(id, "1.0.0", &[(file, hostile::A)]);
        let archive = repo_dir.with_extension(format!("{id}.tar.gz"));
        std::fs::write(&archive, hostile::craft(&[hostile::manifest_entry(&m), RawEntry::file(&format!("files/{file}"), hostile::A)])).unwrap();
        repo::publish(&paths, &archive, Default::default(), repo::DEFAULT_MAX_EXPANDED, now).await.unwrap();
    }
    let store = Store::open(&db).unwrap();
    let contract = PlatformContract::new(3, 1, Vec::new(), Vec::new()).unwrap();
    let list: Vec<(PlatformId, Option<PlatformContract>)> = (0..platforms).map(|i| (PlatformId::new(format!("p{i:05}")).unwrap(), Some(contract.clone()))).collect();
    let minted = store.add_platforms(&list, now).unwrap();
    let lines: Vec<String> = list.iter().zip(minted).map(|((p, _), t)| format!("{p} {t}")).collect();
    std::fs::write(tokens, lines.join("\n") + "\n").unwrap();
}

/// One request on a new connection; the status code and the body.
async fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).await?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    s.write_all(format!("{head}\r\n{body}").as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((code, body))
}

fn tokens_of(path: &PathBuf) -> Vec<(String, String)> {
    std::fs::read_to_string(path).unwrap().lines().filter_map(|l| l.split_once(' ')).map(|(p, t)| (p.to_owned(), t.to_owned())).collect()
}

fn percentiles(mut ms: Vec<f64>) -> serde_json::Value {
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| ms.get(((ms.len() as f64 * q).ceil() as usize).saturating_sub(1).min(ms.len().saturating_sub(1))).copied().unwrap_or(f64::NAN);
    serde_json::json!({ "n": ms.len(), "p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": ms.last().copied().unwrap_or(f64::NAN) })
}

async fn attack(addr: String, operator: String, dashboard: usize, slowloris: usize, secs: u64) {
    let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("ops:{operator}")));
    let until = Instant::now() + Duration::from_secs(secs);
    let pages = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..dashboard {
        let (addr, auth, pages, failures) = (addr.clone(), auth.clone(), pages.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                match http(&addr, "GET", "/", &[("Authorization", &auth)], "").await {
                    Ok((200, _)) => pages.fetch_add(1, Ordering::Relaxed),
                    _ => failures.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    // Each slowloris connection: a head never finished; how long until the server closes it.
    let mut slow = Vec::new();
    for _ in 0..slowloris {
        let addr = addr.clone();
        slow.push(tokio::spawn(async move {
            let Ok(mut s) = TcpStream::connect(&addr).await else { return None };
            let start = Instant::now();
            if s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-a: ").await.is_err() {
                return Some(start.elapsed().as_secs_f64());
            }
            let mut buf = [0u8; 512];
            loop {
                tokio::select! {
                    read = s.read(&mut buf) => match read {
                        Ok(0) | Err(_) => return Some(start.elapsed().as_secs_f64()),
                        Ok(_) => {}
                    },
                    () = tokio::time::sleep(Duration::from_secs(2)) => {
                        if s.write_all(b"a").await.is_err() {
                            return Some(start.elapsed().as_secs_f64());
                        }
                    }
                }
                if Instant::now() > until + Duration::from_secs(60) {
                    return None;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut closed = Vec::new();
    let mut open = 0;
    for s in slow {
        match s.await.ok().flatten() {
            Some(secs) => closed.push(secs * 1000.0),
            None => open += 1,
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "dashboard_pages": pages.load(Ordering::Relaxed),
            "dashboard_failures": failures.load(Ordering::Relaxed),
            "slowloris_closed": closed.len(),
            "slowloris_never_closed": open,
            "slowloris_close": percentiles(closed),
        })
    );
}

fn receipt(id: &str, platform: &str) -> String {
    serde_json::json!({
        "id": id, "platform": platform, "outcome": "applied", "bundles": ["crafted@1.0.0"],
        "started_at": "2026-03-01T10:00:00Z", "finished_at": "2026-03-01T10:01:00Z", "reason": null
    })
    .to_string()
}

async fn probe(addr: String, tokens: PathBuf, count: usize, prefix: String) {
    let tokens = tokens_of(&tokens);
    let gate = Arc::new(Semaphore::new(4));
    let mut tasks = Vec::new();
    for i in 0..count {
        let (p, t) = tokens[i % tokens.len()].clone();
        let (addr, gate, id) = (addr.clone(), gate.clone(), format!("{prefix}-{i}"));
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            let start = Instant::now();
            let code = http(&addr, "POST", "/api/v1/receipts", &[("Authorization", &format!("Bearer {t}"))], &receipt(&id, &p)).await.map(|r| r.0).unwrap_or(0);
            (code, start.elapsed().as_secs_f64() * 1000.0)
        }));
    }
    let mut codes: BTreeMap<u16, u64> = BTreeMap::new();
    let mut ms = Vec::new();
    for t in tasks {
        let (code, took) = t.await.unwrap();
        *codes.entry(code).or_default() += 1;
        ms.push(took);
    }
    println!("{}", serde_json::json!({ "answers": codes, "latency": percentiles(ms) }));
}

async fn agents(addr: String, tokens: PathBuf, concurrency: usize, deadline_secs: u64) {
    let tokens = tokens_of(&tokens);
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let until = Instant::now() + Duration::from_secs(deadline_secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (p, t) in tokens {
        let (addr, gate) = (addr.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            if Instant::now() > until {
                return Vec::new();
            }
            let auth = format!("Bearer {t}");
            let status = serde_json::json!({
                "improvement_level": 3, "stability_level": 1, "installed": [{"id": "crafted", "version": "1.0.0"}],
                "next_intervention": null, "last_outcome": "applied", "components": [], "level2_classes": [],
                "repository_error": null, "due": [], "holds": []
            })
            .to_string();
            let mut out = Vec::new();
            for (path, body) in [("/api/v1/status", status), ("/api/v1/receipts", receipt("agent-1", &p))] {
                let start = Instant::now();
                let code = http(&addr, "POST", path, &[("Authorization", &auth)], &body).await.map(|r| r.0).unwrap_or(0);
                out.push((code, start.elapsed().as_secs_f64() * 1000.0));
            }
            out
        }));
    }
    let mut codes: BTreeMap<u16, u64> = BTreeMap::new();
    let mut ms = Vec::new();
    for t in tasks {
        for (code, took) in t.await.unwrap() {
            *codes.entry(code).or_default() += 1;
            ms.push(took);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let n = ms.len();
    println!(
        "{}",
        serde_json::json!({ "requests": n, "answers": codes, "elapsed_s": elapsed, "requests_per_s": n as f64 / elapsed, "latency": percentiles(ms) })
    );
}
