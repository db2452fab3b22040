//! Running the operator's hooks: argv arrays (never a shell), placeholders substituted, a
//! timeout each (the whole process group is killed), output captured for the receipt.
//!
//! Output is read as it comes into a ring buffer holding the last [`OUTPUT_TAIL`] bytes of
//! stdout and of stderr each, so a hook printing hundreds of megabytes never grows the
//! agent.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::config::Hook;

/// Most bytes of a hook's stdout and stderr kept in the receipt (the end of each).
pub const OUTPUT_TAIL: usize = 64 * 1024;

/// The exit code of a command that could not be started (as a shell reports it).
pub const CANNOT_START: i32 = 127;

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
    /// The hook could not be started (missing or not executable: exit 127 or a spawn
    /// error): a configuration problem, not the hook's answer.
    pub fn could_not_start(&self) -> bool {
        self.exit_code == Some(CANNOT_START)
    }
    /// One line for an error or a receipt reason. A guard's own reason is the first line of
    /// its stdout; other hooks are explained by the last line of their stderr.
    pub fn failure(&self) -> String {
        if self.timed_out {
            return format!("hook {} timed out after {} ms", self.hook, self.duration_ms);
        }
        let first_out = self.stdout.lines().find(|l| !l.trim().is_empty()).map(str::trim);
        let last_err = self.stderr.lines().rev().find(|l| !l.trim().is_empty()).map(str::trim);
        let said = match (self.hook.as_str(), self.could_not_start()) {
            (_, true) => last_err,
            ("guard", false) => first_out.or(last_err),
            _ => last_err,
        };
        match (self.exit_code, said) {
            (Some(CANNOT_START), Some(why)) => format!("hook {} could not be started: {why}; check the path in the config's [hooks]", self.hook),
            (Some(CANNOT_START), None) => format!("hook {} could not be started (exit 127: not found or not executable); check the path in the config's [hooks]", self.hook),
            (Some(c), None) => format!("hook {} exited with {c}", self.hook),
            (Some(c), Some(why)) => format!("hook {} exited with {c}: {why}", self.hook),
            (None, _) => format!("hook {} was killed", self.hook),
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
                exit_code: Some(CANNOT_START),
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
        match stdout.as_mut() {
            Some(s) => read_tail(s).await,
            None => Vec::new(),
        }
    };
    let read_err = async move {
        match stderr.as_mut() {
            Some(s) => read_tail(s).await,
            None => Vec::new(),
        }
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

/// The last [`OUTPUT_TAIL`] bytes of a stream, read to its end in fixed chunks.
async fn read_tail<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> Vec<u8> {
    let mut ring = Tail::default();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => ring.push(&chunk[..n]),
        }
    }
    ring.into_bytes()
}

/// A ring buffer of the last [`OUTPUT_TAIL`] bytes written to it.
#[derive(Default)]
struct Tail {
    buf: std::collections::VecDeque<u8>,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        let bytes = &bytes[bytes.len().saturating_sub(OUTPUT_TAIL)..];
        let excess = (self.buf.len() + bytes.len()).saturating_sub(OUTPUT_TAIL);
        self.buf.drain(..excess);
        self.buf.extend(bytes);
    }
    fn into_bytes(self) -> Vec<u8> {
        self.buf.into()
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
        assert!(missing.could_not_start());
        assert!(missing.failure().starts_with("hook guard could not be started: cannot start /nonexistent/guard"), "{}", missing.failure());
        let shell_127 = super::run("guard", &hook(&["sh", "-c", "exec /nonexistent/guard"], 10_000), &Placeholders::new()).await;
        assert!(shell_127.could_not_start(), "{shell_127:?}");
        assert!(shell_127.failure().contains("could not be started"), "{}", shell_127.failure());
    }

    #[tokio::test]
    async fn a_guard_says_why_in_the_first_line_of_its_stdout() {
        let run = run("guard", &hook(&["sh", "-c", "echo '3 quiz attempts open'; echo detail; exit 1"], 10_000), &Placeholders::new()).await;
        assert!(!run.could_not_start());
        assert_eq!(run.failure(), "hook guard exited with 1: 3 quiz attempts open");
    }

    #[tokio::test]
    async fn output_is_kept_as_a_bounded_tail_of_each_stream() {
        // 8 MiB on stdout, 1 MiB on stderr: only the last 64 KiB of each is kept.
        let script = "head -c 8388608 /dev/zero | tr '\\0' a; printf END; head -c 1048576 /dev/zero | tr '\\0' b >&2; printf ERR >&2";
        let run = run("upgrade", &hook(&["sh", "-c", script], 60_000), &Placeholders::new()).await;
        assert!(run.ok(), "{:?}", run.failure());
        assert_eq!(run.stdout.len(), OUTPUT_TAIL);
        assert!(run.stdout.ends_with("aaaEND"));
        assert_eq!(run.stderr.len(), OUTPUT_TAIL);
        assert!(run.stderr.ends_with("bbbERR"));
    }

    #[test]
    fn the_ring_buffer_keeps_the_last_bytes_across_pushes() {
        let mut t = Tail::default();
        for i in 0..(3 * OUTPUT_TAIL / 1000) {
            t.push(format!("{:0>1000}", i).as_bytes());
        }
        let bytes = t.into_bytes();
        assert_eq!(bytes.len(), OUTPUT_TAIL);
        assert!(String::from_utf8(bytes).unwrap().ends_with(&format!("{:0>1000}", 3 * OUTPUT_TAIL / 1000 - 1)));
    }

    #[tokio::test]
    async fn a_hanging_hook_and_its_children_are_killed_at_the_timeout() {
        let run = run("backup", &hook(&["sh", "-c", "sleep 600 & wait"], 300), &Placeholders::new()).await;
        assert!(run.timed_out && !run.ok());
        assert!(run.failure().contains("timed out"), "{}", run.failure());
        assert!(run.duration_ms < 60_000);
    }
}
