//! The log lines of `palier-agent` and `palier-server`, written for an operator reading a
//! terminal or the journal, the way cargo writes its own: `warning: ...` and `error: ...`,
//! the event's fields after its message, no timestamp (the journal adds its own) and no
//! module path. Colour only when stderr is a terminal, so pipes, files and the journal get
//! plain text. `PALIER_LOG` chooses what is shown (`warn`, `info`, `palier_agent=debug`).
//!
//! Only the binaries' `main` calls [`init`]; the libraries just emit `tracing` events.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The environment variable holding the filter.
pub const ENV: &str = "PALIER_LOG";

/// Set up the global subscriber: the filter from `PALIER_LOG`, else `default_filter`; an
/// unusable `PALIER_LOG` is said once, as a warning, and the default is used.
pub fn init(default_filter: &str) {
    let (filter, bad) = match std::env::var(ENV) {
        Ok(v) if !v.trim().is_empty() => match EnvFilter::try_new(&v) {
            Ok(f) => (f, None),
            Err(e) => (EnvFilter::new(default_filter), Some(format!("{ENV}={v:?} is not a filter ({e}); using {default_filter:?}, e.g. {ENV}=info or {ENV}=palier_agent=debug"))),
        },
        _ => (EnvFilter::new(default_filter), None),
    };
    let colour = std::io::stderr().is_terminal();
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour).event_format(Plain { colour }).init();
    if let Some(why) = bad {
        tracing::warn!("{why}");
    }
}

/// The event format: one line per event, see the module's documentation.
#[derive(Debug, Clone, Copy)]
pub struct Plain {
    /// Colour the level word (stderr is a terminal).
    pub colour: bool,
}

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        writeln!(w, "{}", line(*event.metadata().level(), &fields.message, &fields.fields, self.colour))
    }
}

/// One log line: `warning: MESSAGE (key: value, ...)`; info lines carry no level word.
pub fn line(level: Level, message: &str, fields: &[(String, String)], colour: bool) -> String {
    let (word, ansi) = match level {
        Level::ERROR => ("error: ", "\x1b[1;31m"),
        Level::WARN => ("warning: ", "\x1b[1;33m"),
        Level::INFO => ("", ""),
        Level::DEBUG => ("debug: ", "\x1b[2m"),
        Level::TRACE => ("trace: ", "\x1b[2m"),
    };
    let mut out = String::new();
    if colour && !word.is_empty() {
        let _ = write!(out, "{ansi}{}\x1b[0m ", word.trim_end());
    } else {
        out.push_str(word);
    }
    out.push_str(message);
    if !fields.is_empty() {
        let list: Vec<String> = fields.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let _ = write!(out, " ({})", list.join(", "));
    }
    // One event, one line: a value with a newline (a hook's output) stays on it.
    out.replace('\n', " ")
}

#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.fields.push((field.name().to_owned(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields.push((field.name().to_owned(), format!("{value:?}")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_read_like_cargo_s_without_time_or_module() {
        let f = vec![("config".to_owned(), "/etc/palier/agent.toml".to_owned())];
        assert_eq!(line(Level::WARN, "ignoring stability.windows", &f, false), "warning: ignoring stability.windows (config: /etc/palier/agent.toml)");
        assert_eq!(line(Level::ERROR, "cycle failed", &[], false), "error: cycle failed");
        assert_eq!(line(Level::INFO, "applied a@1.0.0", &[], false), "applied a@1.0.0");
        assert_eq!(line(Level::INFO, "two\nlines", &[], false), "two lines");
    }

    #[test]
    fn colour_only_when_asked() {
        assert!(!line(Level::WARN, "x", &[], false).contains('\x1b'));
        assert!(line(Level::WARN, "x", &[], true).starts_with("\x1b[1;33mwarning:\x1b[0m x"));
    }
}
