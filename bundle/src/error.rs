//! Errors of the bundle crate. Each variant names what was being worked on.

use std::io;

/// A refusal while parsing a manifest or reading/writing a bundle archive.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid {field} {value:?}: {why}")]
    InvalidField {
        field: &'static str,
        value: String,
        why: String,
    },
    #[error("invalid manifest: {0}")]
    ManifestSyntax(String),
    #[error("cannot serialize manifest: {0}")]
    ManifestSerialize(String),
    #[error("archive entry {path:?} refused: {why}")]
    EntryRefused { path: String, why: String },
    #[error("archive refused: {0}")]
    ArchiveRefused(String),
    #[error("archive entry {path:?}: sha256 {actual} differs from the manifest's {expected}")]
    HashMismatch {
        path: String,
        expected: String,
        actual: String,
    },
    #[error("archive refused: expanded size exceeds the declared limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("archive manifest differs from the signed manifest: {0}")]
    ManifestMismatch(String),
    #[error("cannot read archive: {0}")]
    Read(#[source] io::Error),
    #[error("cannot write archive: {0}")]
    Write(#[source] io::Error),
    #[error("cannot write {path}: {source}")]
    Sink {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot read source file {path}: {source}")]
    Source {
        path: String,
        #[source]
        source: io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(field: &'static str, value: &str, why: impl Into<String>) -> Self {
        Error::InvalidField {
            field,
            value: value.to_owned(),
            why: why.into(),
        }
    }
}

/// The whole chain of an error on one line, `a: b: c`, skipping repeats.
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out.replace('\n', " ")
}

/// serde's ``unknown field `x`, expected one of `a`, `b` `` as its reader would say it: the
/// closest known key when one is close ("did you mean"), else the keys allowed there. `None`
/// for any other message.
pub fn unknown_key(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, rest) = rest.split_once('`').unwrap_or((rest, ""));
    let known: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    let best = known.iter().map(|k| (strsim::jaro_winkler(unknown, k), *k)).filter(|(score, _)| *score > 0.8).max_by(|a, b| a.0.total_cmp(&b.0));
    Some(match best {
        Some((_, k)) => format!("unknown key `{unknown}`: did you mean `{k}`?"),
        None if known.is_empty() => format!("unknown key `{unknown}`"),
        None => format!("unknown key `{unknown}`; the keys here are {}", known.join(", ")),
    })
}

/// Where a TOML error is: its one-line message and, when the parser knows, the line number
/// and that line's text (trimmed, at most 80 characters).
pub struct TomlErrorAt {
    pub message: String,
    pub line: Option<(usize, String)>,
}

impl TomlErrorAt {
    pub fn new(text: &str, e: &toml::de::Error) -> Self {
        let message = e.message().trim().replace('\n', " ");
        let line = e.span().map(|span| {
            let start = span.start.min(text.len());
            let line = text[..start].matches('\n').count() + 1;
            let line_text: String = text.lines().nth(line - 1).unwrap_or("").trim().chars().take(80).collect();
            (line, line_text)
        });
        TomlErrorAt { message, line }
    }
}
