//! The site's Moodle release, read from the text of `dirroot/version.php` (SPEC 3: "The
//! Moodle release of a site is read from `$release` in `dirroot/version.php`").
//!
//! Moodle writes that file as PHP:
//!
//! ```php
//! defined('MOODLE_INTERNAL') || die();
//!
//! $version  = 2024100702.00;              // 20241007      = branching date YYYYMMDD - do not modify!
//! $release  = '4.5.2+ (Build: 20250101)'; // Human-friendly version name
//! $branch   = '405';                      // This version's branch.
//! $maturity = MATURITY_STABLE;             // This version's maturity level.
//! ```
//!
//! [`release_from_version_php`] does not evaluate PHP. It runs a small lexer that knows
//! exactly what can hide an assignment — `//`, `#` and `/* */` comments, string literals
//! (a `//` inside a string is not a comment) and text outside `<?php ... ?>` — and then
//! looks for the statement `$release = '<string>';`. Pure: the caller reads the file.

use semver::Version;

use crate::components::ComponentMap;
use crate::layout::Layout;

/// What the agent reads of a Moodle site before it plans: the release from the layout's
/// `version.php`, the layout itself, and the component map of its `lib/components.json`
/// (and its plugins' `db/subplugins.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoodleSite {
    pub release: Version,
    pub layout: Layout,
    pub components: ComponentMap,
}

/// Why the release could not be read. Every message is one line and names what was missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoodleError {
    #[error("no $release assignment in version.php (commented-out lines do not count): is this Moodle's dirroot?")]
    NoRelease,
    #[error("$release in version.php is not assigned a single quoted string: found `{found}`")]
    NotAString { found: String },
    #[error("$release {release:?} in version.php does not start with a version number MAJOR.MINOR[.PATCH] such as 4.5.2")]
    NotAVersion { release: String },
    #[error("version.php assigns $release twice, to different releases {first:?} and {second:?}: cannot tell which one the site runs")]
    Conflicting { first: String, second: String },
}

/// The site's Moodle release from the text of `dirroot/version.php`.
///
/// - The value is the string literal of the statement `$release = '...';` (single or double
///   quotes, any whitespace). Statements inside comments (`//`, `#`, `/* */`) or outside
///   the `<?php ... ?>` tags are ignored; a text without any `<?` tag is read as PHP code
///   whole (a fragment of the file). `$version`, `$branch`, `$maturity` and everything
///   else are ignored, whatever their order.
/// - The version is the numeric prefix `MAJOR.MINOR[.PATCH]` of that string, a missing
///   patch reading as 0: `'4.5.2+ (Build: 20250101)'` is 4.5.2, `'4.4 (Build: 20240422)'`
///   is 4.4.0.
/// - **Suffixes are dropped**: `+` (a weekly build after the release), `dev`, `alpha`,
///   `beta`, `rc1`: `'5.0dev'` is 5.0.0 and `'4.5.2rc1'` is 4.5.2, not the semver
///   pre-releases `5.0.0-dev` or `4.5.2-rc1`. A site's release is matched against the
///   bundles' `requires_moodle` (`>=4.4.0, <5.2.0`), and semver never lets a pre-release
///   match such a requirement: read as a pre-release, a development or release-candidate
///   site would refuse every bundle that names a release range. Its code is that of the
///   coming release (Moodle's own `$branch` is already `'500'` for `5.0dev`), so it is
///   read as that release: a 4.x-only bundle (`<5.0.0`) is refused on `5.0dev`.
/// - Refused, with a one-line error: no `$release` assignment; a value that is not one
///   string literal ended by `;` (a concatenation or a constant cannot be read without
///   running PHP); a string that does not start with `MAJOR.MINOR` (leading spaces
///   allowed), or that has a fourth numeric component; and two assignments that give
///   different releases (PHP would keep the last one executed, which a lexer cannot know
///   for sure, and a wrong release could let a bundle onto a site it does not fit).
pub fn release_from_version_php(text: &str) -> Result<Version, MoodleError> {
    let tokens = lex(text);
    let mut found: Option<(String, Version)> = None;
    for (i, tok) in tokens.iter().enumerate() {
        let Tok::Var(name) = &tok.kind else { continue };
        if *name != "release" || !matches!(tokens.get(i + 1).map(|t| &t.kind), Some(Tok::Assign)) {
            continue;
        }
        let value = match (tokens.get(i + 2), tokens.get(i + 3).map(|t| &t.kind)) {
            (Some(Token { kind: Tok::Str(s), .. }), Some(Tok::End)) => s,
            (value, _) => {
                let from = value.map_or(text.len(), |t| t.start);
                return Err(MoodleError::NotAString { found: snippet(&text[from..]) });
            }
        };
        let version = parse_release(value)?;
        match &found {
            Some((first, v)) if *v != version => return Err(MoodleError::Conflicting { first: first.clone(), second: value.clone() }),
            Some(_) => {}
            None => found = Some((value.clone(), version)),
        }
    }
    found.map(|(_, v)| v).ok_or(MoodleError::NoRelease)
}

/// `MAJOR.MINOR[.PATCH]` at the start of `release`, suffixes dropped (see [`release_from_version_php`]).
fn parse_release(release: &str) -> Result<Version, MoodleError> {
    let refuse = || MoodleError::NotAVersion { release: shorten(release) };
    let mut rest = release.trim_start();
    let mut parts: Vec<u64> = Vec::with_capacity(3);
    loop {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(refuse());
        }
        parts.push(rest[..digits].parse().map_err(|_| refuse())?);
        rest = &rest[digits..];
        match rest.strip_prefix('.') {
            Some(after) if parts.len() < 3 && after.starts_with(|c: char| c.is_ascii_digit()) => rest = after,
            // `4.5.2.1` (semver has three numbers), `4.`, `4.5.`, `4.5.x`.
            Some(_) => return Err(refuse()),
            None if parts.len() >= 2 => break,
            // `4`, `4+`: a major alone is not a release.
            None => return Err(refuse()),
        }
    }
    Ok(Version::new(parts[0], parts[1], parts.get(2).copied().unwrap_or(0)))
}

/// A value for an error message: one line, at most 60 characters.
fn shorten(s: &str) -> String {
    let one_line: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let mut out: String = one_line.chars().take(60).collect();
    if one_line.chars().count() > 60 {
        out.push_str("...");
    }
    out
}

/// The source after `$release =` up to the end of the statement or line, for an error message.
fn snippet(source: &str) -> String {
    let line = source.split(['\n', '\r']).next().unwrap_or("");
    let statement = line.find(';').map_or(line, |end| &line[..=end]).trim();
    if statement.is_empty() { "nothing".into() } else { shorten(statement) }
}

/// What the lexer keeps of the PHP code: just enough to recognise `$name = 'literal';`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// `$name`.
    Var(String),
    /// A single- or double-quoted string literal, escapes decoded.
    Str(String),
    /// A lone `=` (not `==`, `=>`, `.=`, `<=`, ...).
    Assign,
    /// `;` or a closing `?>`: the end of a statement.
    End,
    /// Anything else: a word, a number, an operator, an unterminated string.
    Other,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Tok,
    /// Byte offset in the text where the token starts.
    start: usize,
}

/// Characters PHP allows in a variable name (bytes >= 0x80 included, as PHP does).
fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// Tokens of the PHP code in `text`, comments and inline HTML skipped.
///
/// Works on bytes: every byte the lexer acts on is ASCII, so slicing at those positions
/// always falls on UTF-8 character boundaries.
fn lex(text: &str) -> Vec<Token> {
    let b = text.as_bytes();
    let mut tokens = Vec::new();
    // Without any PHP tag, the text is a fragment of code.
    let mut i = if text.contains("<?") { skip_html(text, 0) } else { 0 };
    while i < b.len() {
        let c = b[i];
        let start = i;
        match c {
            _ if c.is_ascii_whitespace() => i += 1,
            b'?' if b.get(i + 1) == Some(&b'>') => {
                tokens.push(Token { kind: Tok::End, start });
                i = skip_html(text, i + 2);
            }
            // `#[` opens a PHP 8 attribute, not a comment.
            b'#' if b.get(i + 1) != Some(&b'[') => i = skip_line_comment(b, i),
            b'/' if b.get(i + 1) == Some(&b'/') => i = skip_line_comment(b, i),
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = text[i + 2..].find("*/").map_or(b.len(), |end| i + 2 + end + 2);
            }
            b'\'' | b'"' | b'`' => {
                let (value, end) = string_literal(text, i);
                i = end;
                let kind = match value {
                    Some(v) if c != b'`' => Tok::Str(v),
                    _ => Tok::Other,
                };
                tokens.push(Token { kind, start });
            }
            b'$' if b.get(i + 1).is_some_and(|&n| is_ident(n) && !n.is_ascii_digit()) => {
                i += 1;
                while i < b.len() && is_ident(b[i]) {
                    i += 1;
                }
                tokens.push(Token { kind: Tok::Var(text[start + 1..i].to_owned()), start });
            }
            b'=' => {
                let compound = i > 0 && b"=!<>+-*/.%&|^?:".contains(&b[i - 1]);
                let comparison = matches!(b.get(i + 1), Some(b'=' | b'>'));
                i += 1;
                while i < b.len() && matches!(b[i], b'=' | b'>') {
                    i += 1;
                }
                tokens.push(Token { kind: if compound || comparison { Tok::Other } else { Tok::Assign }, start });
            }
            b';' => {
                i += 1;
                tokens.push(Token { kind: Tok::End, start });
            }
            _ if is_ident(c) => {
                while i < b.len() && is_ident(b[i]) {
                    i += 1;
                }
                tokens.push(Token { kind: Tok::Other, start });
            }
            _ => {
                i += 1;
                tokens.push(Token { kind: Tok::Other, start });
            }
        }
    }
    tokens
}

/// From `i` in inline HTML, the position just after the next opening tag (`<?php`, `<?=`, `<?`).
fn skip_html(text: &str, i: usize) -> usize {
    match text[i..].find("<?") {
        None => text.len(),
        Some(at) => {
            let open = i + at + 2;
            let rest = &text.as_bytes()[open..];
            if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(b"php") {
                open + 3
            } else if rest.first() == Some(&b'=') {
                open + 1
            } else {
                open
            }
        }
    }
}

/// A `//` or `#` comment ends at the end of the line, or just before a `?>`.
fn skip_line_comment(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
        if b[i] == b'?' && b.get(i + 1) == Some(&b'>') {
            return i;
        }
        i += 1;
    }
    i
}

/// The string literal opening at `open`: its decoded value (`None` when unterminated) and
/// the position after it. Single quotes decode `\'` and `\\` only; double quotes also the
/// usual `\n`-style escapes (interpolation is left as written).
fn string_literal(text: &str, open: usize) -> (Option<String>, usize) {
    let b = text.as_bytes();
    let quote = b[open];
    let mut value = String::new();
    let mut i = open + 1;
    let mut chunk = i;
    while i < b.len() {
        match b[i] {
            c if c == quote => {
                value.push_str(&text[chunk..i]);
                return (Some(value), i + 1);
            }
            b'\\' if i + 1 < b.len() => {
                value.push_str(&text[chunk..i]);
                let next = b[i + 1];
                let decoded = match (quote, next) {
                    (_, b'\\') => Some('\\'),
                    (q, n) if n == q => Some(char::from(q)),
                    (b'"', b'n') => Some('\n'),
                    (b'"', b't') => Some('\t'),
                    (b'"', b'r') => Some('\r'),
                    (b'"', b'$') => Some('$'),
                    _ => None,
                };
                match decoded {
                    Some(ch) => {
                        value.push(ch);
                        i += 2;
                    }
                    // Kept as written, backslash included.
                    None => {
                        value.push('\\');
                        i += 1;
                    }
                }
                chunk = i;
            }
            _ => i += 1,
        }
    }
    (None, b.len())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Moodle 4.5's `version.php`, as shipped (licence header shortened to its shape).
    const MOODLE_405: &str = r#"<?php

// This file is part of Moodle - https://moodle.org/
//
// Moodle is free software: you can redistribute it and/or modify
// it under the terms of the GNU General Public License as published by
// the Free Software Foundation, either version 3 of the License, or
// (at your option) any later version.
//
// You should have received a copy of the GNU General Public License
// along with Moodle.  If not, see <https://www.gnu.org/licenses/>.

/**
 * MOODLE VERSION INFORMATION
 *
 * This file defines the current version of the core Moodle code being used.
 * This is compared against the values stored in the database to determine
 * whether upgrades should be performed (see lib/db/*.php)
 *
 * @package    core
 * @copyright  1999 onwards Martin Dougiamas (http://dougiamas.com)
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

defined('MOODLE_INTERNAL') || die();

$version  = 2024100702.00;              // 20241007      = branching date YYYYMMDD - do not modify!
                                        //         RR    = release increments - 00 in DEV branches.
                                        //           .XX = incremental changes.
$release  = '4.5.2+ (Build: 20250101)'; // Human-friendly version name
$branch   = '405';                      // This version's branch.
$maturity = MATURITY_STABLE;             // This version's maturity level.
"#;

    /// A version.php with `$release` replaced by `line`.
    fn with_release(line: &str) -> String {
        MOODLE_405.replace("$release  = '4.5.2+ (Build: 20250101)'; // Human-friendly version name", line)
    }

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn read(text: &str) -> Result<Version, MoodleError> {
        release_from_version_php(text)
    }

    #[test]
    fn reads_moodle_4_5_version_php() {
        assert_eq!(read(MOODLE_405).unwrap(), v("4.5.2"));
    }

    #[test]
    fn quotes_whitespace_and_two_component_releases() {
        for (line, want) in [
            (r#"$release  = "4.1.10 (Build: 20240415)";"#, "4.1.10"),
            ("$release  = '4.4 (Build: 20240422)';", "4.4.0"),
            ("$release='3.11.18 (Build: 20231211)';", "3.11.18"),
            ("$release\t=\t'4.3.3+ (Build: 20240308)'\t;", "4.3.3"),
            ("$release =\n    '4.2.8 (Build: 20240610)'\n;", "4.2.8"),
            ("$release = ' 4.0.12 (Build: 20231211)';", "4.0.12"),
            ("$release = '2.2.11+ (Build: 20130823)';", "2.2.11"),
            ("$release = '10.20.30';", "10.20.30"),
            ("$release = '04.05.02';", "4.5.2"),
            ("$release = /* the release */ '4.5.1';", "4.5.1"),
        ] {
            assert_eq!(read(&with_release(line)).unwrap(), v(want), "{line}");
        }
    }

    #[test]
    fn dev_alpha_beta_rc_read_as_the_numeric_release() {
        for (release, want) in [
            ("5.0dev (Build: 20250117)", "5.0.0"),
            ("5.0dev+ (Build: 20250214)", "5.0.0"),
            ("4.5rc1 (Build: 20240930)", "4.5.0"),
            ("4.5.2rc1", "4.5.2"),
            ("4.5beta (Build: 20240913)", "4.5.0"),
            ("4.4alpha", "4.4.0"),
            ("4.5.2+", "4.5.2"),
        ] {
            let got = read(&with_release(&format!("$release  = '{release}';"))).unwrap();
            assert_eq!(got, v(want), "{release}");
            assert!(got.pre.is_empty(), "{release} must not read as a semver pre-release");
        }
        // Why: a pre-release would fail every ordinary requirement.
        let req = semver::VersionReq::parse(">=4.4.0, <5.2.0").unwrap();
        assert!(req.matches(&read(&with_release("$release = '5.0dev';")).unwrap()));
        assert!(!req.matches(&v("5.0.0-dev")));
    }

    #[test]
    fn release_may_come_after_the_other_assignments_in_any_order() {
        let text = "<?php\ndefined('MOODLE_INTERNAL') || die();\n$maturity = MATURITY_BETA;\n$branch = '500';\n$version = 2025011700.00;\n$release = '5.0dev (Build: 20250117)';\n";
        assert_eq!(read(text).unwrap(), v("5.0.0"));
        let first = "<?php\n$release = '4.1.10 (Build: 20240415)';\n$version = 2022112810.00;\n$branch = '401';\n$maturity = MATURITY_STABLE;\n";
        assert_eq!(read(first).unwrap(), v("4.1.10"));
    }

    #[test]
    fn commented_out_assignments_are_ignored() {
        let text = r#"<?php
defined('MOODLE_INTERNAL') || die();
// $release  = '9.9.9 (Build: 20990101)';
# $release  = '8.8.8';
/* $release  = '7.7.7';
   $release  = '6.6.6'; */
/**
 * $release = '5.5.5';
 */
$version  = 2024100702.00;  /* inline */ // $release = '3.3.3';
$release  = '4.5.2+ (Build: 20250101)'; # $release = '1.1.1';
$branch   = '405';
"#;
        assert_eq!(read(text).unwrap(), v("4.5.2"));
        // Only commented-out assignments: none at all.
        let none = "<?php\n// $release = '4.5.2';\n# $release = '4.5.2';\n/* $release = '4.5.2'; */\n$version = 2024100702.00;\n";
        assert_eq!(read(none).unwrap_err(), MoodleError::NoRelease);
    }

    #[test]
    fn strings_and_inline_html_do_not_hide_or_fake_assignments() {
        // `//` and `#` inside strings are not comments.
        let text = "<?php\n$url = 'http://example.org/#x'; $release = '4.5.2'; // done\n";
        assert_eq!(read(text).unwrap(), v("4.5.2"));
        // An assignment inside a string, or in text outside the PHP tags, is not code.
        let fake = "$release = '9.9';\n<?php\n$note = \"$release = '8.8';\";\n$release = '4.4.1';\n?>\n$release = '7.7';\n";
        assert_eq!(read(fake).unwrap(), v("4.4.1"));
        // `?>` ends a line comment; a closing tag ends the statement.
        let closing = "<?php // comment ?>\n<?php $release = '4.3.2' ?>\n";
        assert_eq!(read(closing).unwrap(), v("4.3.2"));
        // Other variables and properties named like it are not `$release`.
        let others = "<?php\n$releasenotes = '9.9';\n$plugin->release = '8.8';\n$release == '7.7';\n$release .= '6.6';\n$release = '4.2.1';\n";
        assert_eq!(read(others).unwrap(), v("4.2.1"));
        // Escaped quotes inside the string.
        assert_eq!(read("<?php $release = '4.5.2 (it\\'s \"+\")';").unwrap(), v("4.5.2"));
        assert_eq!(read("<?php $release = \"4.5.3 \\\"weekly\\\"\";").unwrap(), v("4.5.3"));
        // Multi-byte text around it.
        assert_eq!(read("<?php\n// Version française — été\n$release = '4.5.2 (Build: 20250101)'; // « publié »\n").unwrap(), v("4.5.2"));
        // A byte-order mark and CRLF line ends.
        assert_eq!(read("\u{feff}<?php\r\n// $release = '1.0';\r\n$release = '4.1.2';\r\n").unwrap(), v("4.1.2"));
    }

    #[test]
    fn refusals_are_one_line_and_name_what_was_missing() {
        let cases: [(&str, &str); 10] = [
            ("", "no $release assignment in version.php"),
            ("<?php\n$version = 2024100702.00;\n$branch = '405';\n", "no $release assignment in version.php"),
            ("<?php\n$release = 4.5;\n", "not assigned a single quoted string: found `4.5;`"),
            ("<?php\n$release = RELEASE;\n", "found `RELEASE;`"),
            ("<?php\n$release = '4.5' . '.2';\n", "found `'4.5' . '.2';`"),
            ("<?php\n$release = '4.5.2", "found `'4.5.2`"),
            ("<?php\n$release = 'Moodle 4.5.2';\n", "$release \"Moodle 4.5.2\" in version.php does not start with a version number MAJOR.MINOR[.PATCH]"),
            ("<?php\n$release = '4+ (Build: 20250101)';\n", "$release \"4+ (Build: 20250101)\" in version.php does not start"),
            ("<?php\n$release = '4.5.2.1';\n", "$release \"4.5.2.1\""),
            ("<?php\n$release = '4.5.2';\n$release = '4.4.0';\n", "assigns $release twice, to different releases \"4.5.2\" and \"4.4.0\""),
        ];
        for (text, want) in cases {
            let e = read(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        for bad in ["", "v4.5", "4", "4.", "4.x", "4.5.", "4.5.x", "99999999999999999999.1", "(Build: 20250101)"] {
            assert!(matches!(read(&format!("<?php $release = '{bad}';")), Err(MoodleError::NotAVersion { .. })), "{bad:?}");
        }
        // A newline inside the refused value stays out of the message.
        let e = read("<?php $release = 'unknown\nrelease';").unwrap_err().to_string();
        assert!(!e.contains('\n') && e.contains("unknown release"), "{e}");
        // A very long value is cut.
        let e = read(&format!("<?php $release = '{}';", "x".repeat(500))).unwrap_err().to_string();
        assert!(e.len() < 200, "{e}");
    }

    #[test]
    fn the_same_release_twice_is_accepted() {
        let text = "<?php\n$release = '4.5.2+ (Build: 20250101)';\n$release = '4.5.2+ (Build: 20250108)';\n";
        assert_eq!(read(text).unwrap(), v("4.5.2"));
    }

    #[test]
    fn lexer_never_panics_on_odd_input() {
        for text in ["<?", "<?php", "?>", "/*", "//", "#", "'", "\"\\", "$", "$release", "$release =", "$release = '", "<?php $release = \"\\", "é$release='4.5';", "=", "$release ?>"] {
            let _ = read(text);
        }
        assert_eq!(read("$release = '4.5';").unwrap(), v("4.5.0"));
    }
}
