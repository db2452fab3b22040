//! Errors of the schedule module: every message is one line and names the refused value.

/// A refused window, slot, duration or calendar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid window {value:?}: {why}")]
    Window { value: String, why: String },
    #[error("invalid calendar slot {value:?}: {why}")]
    Slot { value: String, why: String },
    #[error("invalid duration {value:?}: {why}")]
    Duration { value: String, why: String },
    #[error("invalid iCalendar text: {0}")]
    IcsSyntax(String),
    #[error("invalid iCalendar event {event}: {why}")]
    IcsEvent { event: String, why: String },
}

pub type Result<T, E = ScheduleError> = std::result::Result<T, E>;

/// Squeeze a possibly multi-line message from a dependency into one line.
pub(crate) fn one_line(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    for word in msg.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    if out.len() > 300 {
        let mut cut = 300;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}
