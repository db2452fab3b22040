//! Running the operator's hooks: argv arrays (never a shell), placeholders substituted, a
//! timeout each (the whole process group is killed), output captured for the receipt.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::config::Hook;

/// Most bytes of a hook's stdout and stderr kept in the receipt (the end of each).
const OUTPUT_TAIL: usize = 16 * 1024;

/// What a hook run did, as the receipt records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRun {
    pub hook: String,
    pub argv: Vec<String>,
    /// Exit code; `None` when killed by a signal or the timeout.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub duration_ms: u64,
    pub stdout: String,
    pub stderr: String,
    /// The exit codes that count as success (the hook's `ok_exit`).
    #[serde(default = "only_zero", skip_serializing_if = "is_only_zero")]
    pub ok_exit: Vec<i32>,
}

fn only_zero() -> Vec<i32> {
    vec![0]
}

fn is_only_zero(codes: &Vec<i32>) -> bool {
    codes == &[0]
}

impl HookRun {
    pub fn ok(&self) -> bool {
        !self.timed_out && self.exit_code.is_some_and(|c| self.ok_exit.contains(&c))
    }
    /// One line for an error or a receipt reason.
    pub fn failure(&self) -> String {
        if self.timed_out {
            return format!("hook {} timed out after {} ms", self.hook, self.duration_ms);
        }
        let last = self.stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
        match self.exit_code {
            Some(c) if last.is_empty() => format!("hook {} exited with {c}", self.hook),
            Some(c) => format!("hook {} exited with {c}: {last}", self.hook),
            None => format!("hook {} was killed", self.hook),
        }
    }
}

/// Values for `{dirroot}` `{dataroot}` `{backup_dir}` `{minutes}` `{bundles}`.
pub type Placeholders = BTreeMap<&'static str, String>;

fn substitute(arg: &str, values: &Placeholders) -> String {
    let mut out = arg.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

/// Run `hook` with `values`; a spawn failure is reported as exit code 127, like a shell.
pub async fn run(name: &str, hook: &Hook, values: &Placeholders) -> HookRun {
    let argv: Vec<String> = hook.argv.iter().map(|a| substitute(a, values)).collect();
    let started = Instant::now();
    let timeout = Duration::from_millis(hook.timeout.as_millis().clamp(1, u64::MAX as i128) as u64);
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0).kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return HookRun {
                hook: name.into(),
                argv,
                exit_code: Some(127),
                timed_out: false,
                duration_ms: started.elapsed().as_millis() as u64,
                stdout: String::new(),
                stderr: format!("cannot start {}: {e}", hook.argv[0]),
                ok_exit: hook.ok_exit.clone(),
            };
        }
    };
    let pgid = child.id();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let read_out = async move {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut buf).await;
        }
        buf
    };
    let read_err = async move {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut buf).await;
        }
        buf
    };
    let waited = tokio::time::timeout(timeout, async { tokio::join!(child.wait(), read_out, read_err) }).await;
    let (exit_code, timed_out, out, err) = match waited {
        Ok((status, out, err)) => (status.ok().and_then(|s| s.code()), false, out, err),
        Err(_) => {
            // Kill the whole group: a hook's children (a `sleep` under `sh`) go too.
            if let Some(pid) = pgid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.kill().await;
            (None, true, Vec::new(), Vec::new())
        }
    };
    HookRun {
        hook: name.into(),
        argv,
        exit_code,
        timed_out,
        duration_ms: started.elapsed().as_millis() as u64,
        stdout: tail(&out),
        stderr: tail(&err),
        ok_exit: hook.ok_exit.clone(),
    }
}

fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(OUTPUT_TAIL);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::*;

    fn hook(argv: &[&str], timeout_ms: i64) -> Hook {
        Hook { argv: argv.iter().map(|s| s.to_string()).collect(), timeout: SignedDuration::from_millis(timeout_ms), ok_exit: vec![0] }
    }

    #[tokio::test]
    async fn ok_exit_says_which_exit_codes_succeed() {
        // checks.php: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; the validate hook accepts 0 and 1.
        let validate = |code: i32| Hook { ok_exit: vec![0, 1], ..hook(&["sh", "-c", &format!("exit {code}")], 10_000) };
        for (code, ok) in [(0, true), (1, true), (2, false), (3, false)] {
            let run = run("validate", &validate(code), &Placeholders::new()).await;
            assert_eq!(run.ok(), ok, "exit {code}: {run:?}");
        }
        // The default is 0 alone.
        assert!(!run("validate", &hook(&["sh", "-c", "exit 1"], 10_000), &Placeholders::new()).await.ok());
        // A timed-out hook never succeeds, whatever ok_exit says.
        let slow = Hook { ok_exit: vec![0, 1], ..hook(&["sh", "-c", "sleep 600"], 200) };
        assert!(!run("validate", &slow, &Placeholders::new()).await.ok());
    }

    #[tokio::test]
    async fn placeholders_are_substituted_and_output_captured() {
        let values = Placeholders::from([("minutes", "120".to_owned()), ("dirroot", "/var/www/moodle".to_owned())]);
        let run = run("notice", &hook(&["sh", "-c", "echo \"$0 $1\"; echo oops >&2", "{dirroot}", "{minutes}"], 10_000), &values).await;
        assert!(run.ok(), "{run:?}");
        assert_eq!(run.argv[3], "/var/www/moodle");
        assert_eq!(run.stdout, "/var/www/moodle 120\n");
        assert_eq!(run.stderr, "oops\n");
    }

    #[tokio::test]
    async fn a_failing_hook_says_why() {
        let run = run("backup", &hook(&["sh", "-c", "echo disk full >&2; exit 3"], 10_000), &Placeholders::new()).await;
        assert!(!run.ok());
        assert_eq!(run.failure(), "hook backup exited with 3: disk full");
        let missing = super::run("guard", &hook(&["/nonexistent/guard"], 10_000), &Placeholders::new()).await;
        assert_eq!(missing.exit_code, Some(127));
    }

    #[tokio::test]
    async fn a_hanging_hook_and_its_children_are_killed_at_the_timeout() {
        let run = run("backup", &hook(&["sh", "-c", "sleep 600 & wait"], 300), &Placeholders::new()).await;
        assert!(run.timed_out && !run.ok());
        assert!(run.failure().contains("timed out"), "{}", run.failure());
        assert!(run.duration_ms < 60_000);
    }
}
