//! Every relative link of README.md and docs/*.md resolves: the file exists inside the
//! repository, and a `#anchor` names a heading of the file it points to.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// The documents checked: README.md, CHANGELOG.md and every docs/*.md.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![root().join("README.md"), root().join("CHANGELOG.md")];
    for e in std::fs::read_dir(root().join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            docs.push(p);
        }
    }
    docs.sort();
    docs
}

/// The targets of the inline links `[text](target)` outside code blocks and code spans.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Drop code spans: a `[x](y)` inside backticks is not a link.
        let mut plain = String::new();
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                plain.push_str(part);
            }
        }
        let mut rest = plain.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push((n + 1, after[..end].trim().to_owned()));
            rest = &after[end + 1..];
        }
    }
    out
}

/// GitHub's anchor for a heading: lowercase, punctuation dropped, spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.push(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// Problems with one link of `doc`, or none.
fn check(doc: &Path, target: &str) -> Option<String> {
    if target.starts_with("http://") || target.starts_with("https://") || target.starts_with("mailto:") {
        return None;
    }
    let (file, anchor) = match target.split_once('#') {
        Some((f, a)) => (f, Some(a)),
        None => (target, None),
    };
    let path = if file.is_empty() { doc.to_path_buf() } else { doc.parent().unwrap().join(file) };
    let Ok(real) = path.canonicalize() else { return Some(format!("{target}: {} does not exist", path.display())) };
    if !real.starts_with(root().canonicalize().unwrap()) {
        return Some(format!("{target}: points outside the repository, dead for anyone who clones it"));
    }
    if let Some(anchor) = anchor {
        let text = std::fs::read_to_string(&real).unwrap_or_default();
        if !anchors(&text).iter().any(|a| a == anchor) {
            return Some(format!("{target}: no heading #{anchor} in {}", real.display()));
        }
    }
    None
}

#[test]
fn every_relative_link_and_anchor_of_the_docs_resolves() {
    let mut dead = Vec::new();
    let mut seen = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        for (line, target) in links(&text) {
            seen += 1;
            if let Some(why) = check(&doc, &target) {
                dead.push(format!("{}:{line}: {why}", doc.strip_prefix(root()).unwrap().display()));
            }
        }
    }
    assert!(seen > 10, "only {seen} links found: is the parser reading the documents?");
    assert!(dead.is_empty(), "dead links:\n{}", dead.join("\n"));
}

#[test]
fn the_checker_catches_what_it_must() {
    let readme = root().join("README.md");
    assert!(check(&readme, "../shared/SPEC.md").is_some(), "outside the repository");
    assert!(check(&readme, "docs/nothing.md").is_some(), "a missing file");
    assert!(check(&readme, "docs/agent-config.md#no-such-heading").is_some(), "a missing anchor");
    assert_eq!(check(&readme, "docs/agent-config.md#window-syntax-windows-low_load"), None);
    assert_eq!(check(&readme, "https://example.org/x"), None);
    assert_eq!(slug(" Window syntax (`windows`, `low_load`)"), "window-syntax-windows-low_load");
    assert_eq!(links("see [a](b.md) and `[c](d)`\n```\n[e](f)\n```\n"), vec![(1, "b.md".to_owned())]);
}
