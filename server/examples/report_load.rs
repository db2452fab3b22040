//! Load for `bench/report.sh`: many simulated agents, each sending one receipt.
//!
//!     report_load setup --db FILE --platforms N --tokens FILE   # N platforms, their tokens
//!     report_load run --addr HOST:PORT --tokens FILE [--concurrency C] [--deadline-secs S]
//!     report_load count --db FILE
//!
//! `run` opens one connection per agent (`Connection: close`, as an agent waking up would),
//! at most C at a time, and stops starting new ones after S seconds. It prints one JSON
//! document: requests, answers by status, errors, elapsed seconds, requests/s, p50/p99/max
//! latency in ms (connect to last byte).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use jiff::Timestamp;
use palier_bundle::PlatformId;
use palier_server::store::Store;
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
        db: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        platforms: usize,
        #[arg(long)]
        tokens: PathBuf,
    },
    Run {
        #[arg(long)]
        addr: String,
        #[arg(long)]
        tokens: PathBuf,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value_t = 120)]
        deadline_secs: u64,
    },
    Count {
        #[arg(long)]
        db: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Setup { db, platforms, tokens } => {
            let store = Store::open(&db).unwrap();
            let now = Timestamp::now();
            let mut out = String::new();
            for i in 0..platforms {
                let name = format!("bench-{i:05}");
                let token = store.add_platform(&PlatformId::new(&name).unwrap(), now).unwrap();
                out.push_str(&format!("{name} {token}\n"));
            }
            std::fs::write(&tokens, out).unwrap();
        }
        Cmd::Count { db } => println!("{}", Store::open(&db).unwrap().receipt_count().unwrap()),
        Cmd::Run { addr, tokens, concurrency, deadline_secs } => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
            rt.block_on(run(addr, tokens, concurrency, Duration::from_secs(deadline_secs)));
        }
    }
}

fn receipt(platform: &str, i: usize) -> String {
    serde_json::json!({
        "id": format!("20260301T020000Z-{i:08x}"),
        "platform": platform,
        "stability_level": 2,
        "started_at": "2026-03-01T02:00:00Z",
        "finished_at": "2026-03-01T02:00:41Z",
        "bundles": ["mod_quiz-fix@1.0.1"],
        "outcome": "applied",
        "steps": [
            {"name": "stage", "started_at": "2026-03-01T02:00:00Z", "duration_ms": 1200, "ok": true},
            {"name": "swap", "started_at": "2026-03-01T02:00:02Z", "duration_ms": 3, "ok": true},
            {"name": "checks", "started_at": "2026-03-01T02:00:02Z", "duration_ms": 38000, "ok": true}
        ],
        "hooks": [],
        "checks": [{"name": "login", "ok": true}]
    })
    .to_string()
}

/// One request on a fresh connection; the status code, or an error.
async fn one(addr: &str, token: &str, body: &str) -> Result<u16, String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    s.set_nodelay(true).ok();
    let req = format!(
        "POST /api/v1/receipts HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    let mut resp = Vec::with_capacity(512);
    s.read_to_end(&mut resp).await.map_err(|e| format!("read: {e}"))?;
    let head = std::str::from_utf8(&resp[..resp.len().min(32)]).unwrap_or("");
    head.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("bad answer {head:?}"))
}

async fn run(addr: String, tokens: PathBuf, concurrency: usize, deadline: Duration) {
    let text = std::fs::read_to_string(&tokens).unwrap();
    let agents: Vec<(String, String)> = text.lines().filter_map(|l| l.split_once(' ')).map(|(a, b)| (a.to_owned(), b.to_owned())).collect();
    let limit = Arc::new(Semaphore::new(concurrency));
    let addr = Arc::new(addr);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(agents.len());
    let mut not_started = 0usize;
    for (i, (platform, token)) in agents.into_iter().enumerate() {
        let permit = limit.clone().acquire_owned().await.unwrap();
        if start.elapsed() > deadline {
            not_started += 1;
            continue;
        }
        let addr = addr.clone();
        let body = receipt(&platform, i);
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = tokio::time::timeout(Duration::from_secs(30), one(&addr, &token, &body)).await.unwrap_or_else(|_| Err("timeout".into()));
            drop(permit);
            (r, t.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for t in tasks {
        let (r, d) = t.await.unwrap();
        match r {
            Ok(code) => {
                *statuses.entry(code.to_string()).or_default() += 1;
                latencies.push(d);
            }
            Err(e) => *errors.entry(e).or_default() += 1,
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((p * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1000.0
    };
    let answered = latencies.len();
    let doc = serde_json::json!({
        "requests": answered + errors.values().sum::<u64>() as usize,
        "not_started": not_started,
        "statuses": statuses,
        "errors": errors,
        "concurrency": concurrency,
        "elapsed_s": (elapsed * 1000.0).round() / 1000.0,
        "requests_per_s": ((answered as f64 / elapsed) * 10.0).round() / 10.0,
        "latency_ms": { "p50": (pct(0.50) * 100.0).round() / 100.0, "p99": (pct(0.99) * 100.0).round() / 100.0, "max": (pct(1.0) * 100.0).round() / 100.0 },
    });
    println!("{doc}");
}
