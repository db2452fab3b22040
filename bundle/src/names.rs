//! Untrusted names as newtypes that cannot hold a bad value.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

macro_rules! string_newtype {
    ($name:ident, $check:path) => {
        impl $name {
            pub fn new(value: impl Into<String>) -> Result<Self> {
                let value = value.into();
                $check(&value)?;
                Ok(Self(value))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// A bundle id: `[a-z0-9][a-z0-9._-]{0,63}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BundleId(String);
string_newtype!(BundleId, check_bundle_id);

fn check_bundle_id(s: &str) -> Result<()> {
    let why = |w: &str| Error::invalid("bundle id", s, w);
    let mut chars = s.chars();
    match chars.next() {
        None => return Err(why("empty")),
        Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit() => {}
        Some(_) => return Err(why("must start with a-z or 0-9")),
    }
    if s.len() > 64 {
        return Err(why("longer than 64 characters"));
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))) {
        return Err(why(&format!("character {c:?} is not one of a-z 0-9 . _ -")));
    }
    Ok(())
}

/// A platform id: the same syntax as a bundle id, `[a-z0-9][a-z0-9._-]{0,63}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlatformId(String);
string_newtype!(PlatformId, check_platform_id);

fn check_platform_id(s: &str) -> Result<()> {
    check_bundle_id(s).map_err(|_| Error::invalid("platform id", s, "expected [a-z0-9][a-z0-9._-]{0,63}"))
}

/// A Moodle component: `core`, `core_<subsystem>`, or a frankenstyle plugin name
/// `<type>_<name>` (`mod_quiz`, `theme_boost`, `tool_task`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Component(String);
string_newtype!(Component, check_component);

fn check_component(s: &str) -> Result<()> {
    let why = |w: &str| Error::invalid("component", s, w);
    if s == "core" {
        return Ok(());
    }
    let Some((plugintype, name)) = s.split_once('_') else {
        return Err(why("expected \"core\" or a frankenstyle name such as mod_quiz"));
    };
    if s.len() > 100 {
        return Err(why("longer than 100 characters"));
    }
    if plugintype.is_empty() || !plugintype.chars().all(|c| c.is_ascii_lowercase()) {
        return Err(why("plugin type must be lowercase letters"));
    }
    let mut name_chars = name.chars();
    match name_chars.next() {
        Some(c) if c.is_ascii_lowercase() => {}
        _ => return Err(why("plugin name must start with a lowercase letter")),
    }
    if !name_chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err(why("plugin name must be lowercase letters, digits and _"));
    }
    Ok(())
}

/// A relative path under the Moodle code root: no absolute path, no `..` or `.`,
/// no empty segment, no backslash, no NUL, at most 4096 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(String);
string_newtype!(RelPath, check_rel_path);

fn check_rel_path(s: &str) -> Result<()> {
    let why = |w: &str| Error::invalid("path", s, w);
    if s.is_empty() {
        return Err(why("empty"));
    }
    if s.len() > 4096 {
        return Err(why("longer than 4096 bytes"));
    }
    if s.starts_with('/') {
        return Err(why("absolute path"));
    }
    // One pass over the bytes (every path of every bundle's entry at every refresh); a NUL
    // or a backslash is named before a bad segment, wherever it is.
    let (mut segment, mut bad_segment) = (0, None);
    for (i, &c) in s.as_bytes().iter().enumerate() {
        match c {
            0 | b'\\' => return Err(why("contains NUL or a backslash")),
            b'/' => {
                bad_segment = bad_segment.or(check_segment(&s[segment..i]).err());
                segment = i + 1;
            }
            _ => {}
        }
    }
    match bad_segment.or(check_segment(&s[segment..]).err()) {
        Some(w) => Err(why(w)),
        None => Ok(()),
    }
}

fn check_segment(segment: &str) -> std::result::Result<(), &'static str> {
    match segment {
        "" => Err("empty path segment"),
        "." => Err("'.' segment"),
        ".." => Err("'..' segment escapes the code root"),
        _ => Ok(()),
    }
}

impl RelPath {
    /// The path's segments.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_ids() {
        for ok in ["a", "mod_quiz-timer-drift", "0.x", &"a".repeat(64)] {
            BundleId::new(ok).unwrap();
        }
        for bad in ["", "-a", "_a", ".a", "A", "a/b", "a b", &"a".repeat(65), "é"] {
            assert!(BundleId::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn components() {
        for ok in ["core", "mod_quiz", "theme_boost", "tool_task", "core_course", "local_my_plugin2"] {
            Component::new(ok).unwrap();
        }
        for bad in ["", "Core", "mod", "mod_", "_quiz", "mod_Quiz", "mod_2quiz", "mod-quiz", "mod_quiz!"] {
            assert!(Component::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn rel_paths() {
        for ok in ["a", "mod/quiz/view.php", ".htaccess", "a/..b/c..", "a/b/.hidden"] {
            RelPath::new(ok).unwrap();
        }
        for bad in ["", "/etc/passwd", "../x", "a/../b", "a/./b", "a//b", "a/", "a\\b", "a\0b", "..", "."] {
            assert!(RelPath::new(bad).is_err(), "{bad:?} accepted");
        }
        // The first bad segment is named, and a NUL or backslash before any bad segment.
        let why = |p: &str| RelPath::new(p).unwrap_err().to_string();
        assert!(why("a/../b/./c").contains("'..' segment"), "{}", why("a/../b/./c"));
        assert!(why("../a\\b").contains("NUL or a backslash"), "{}", why("../a\\b"));
        assert!(why("a//b").contains("empty path segment"));
    }
}
