//! What every dashboard page shares: escaping, links, times in the server's zone, the
//! filters of the address, the pager and the page around the content.

use std::fmt::Write;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Rows per page of every list.
pub(crate) const PAGE_ROWS: usize = 50;

/// Seconds between two automatic reloads of a page (`<meta http-equiv="refresh">`: no script).
pub(crate) const REFRESH_SECS: u32 = 60;

/// `&`, `<`, `>`, `"` and `'` as entities: safe in text and in quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Everything but the unreserved characters of RFC 3986 is percent-encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// One path segment or query value, percent-encoded (then safe in an attribute too).
pub(crate) fn encode(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// A link to a platform's page.
pub(crate) fn platform_link(name: &str) -> String {
    format!("<a href=\"/platforms/{}\">{}</a>", encode(name), escape(name))
}

/// A link to a bundle version's page.
pub(crate) fn bundle_link(id: &str, version: &str) -> String {
    format!("<a href=\"/bundles/{}/{}\">{}@{}</a>", encode(id), encode(version), escape(id), escape(version))
}

/// A link to `id@version` given as one string; plain text when it is not of that form.
pub(crate) fn bundle_key_link(key: &str) -> String {
    match key.split_once('@') {
        Some((id, version)) => bundle_link(id, version),
        None => escape(key),
    }
}

pub(crate) fn muted_dash() -> String {
    "<span class=\"muted\">-</span>".into()
}

pub(crate) fn dash(v: Option<&str>) -> String {
    match v {
        Some(s) if !s.is_empty() => escape(s),
        _ => muted_dash(),
    }
}

/// A class name from a value: letters, digits and `-` only.
pub(crate) fn class(prefix: &str, value: &str) -> String {
    let v: String = value.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    format!("{prefix}-{v}")
}

/// Instants as the pages show them: in the zone the server was given (`serve --timezone`), to
/// the minute, with how long ago (or how soon) from the page's `now`.
#[derive(Debug, Clone)]
pub(crate) struct Times {
    pub now: Timestamp,
    pub tz: TimeZone,
}

impl Times {
    /// `2026-03-02 03:00 CET`.
    pub fn at(&self, t: Timestamp) -> String {
        t.to_zoned(self.tz.clone()).strftime("%Y-%m-%d %H:%M %Z").to_string()
    }

    /// `5 min ago`, `in 2 h 10 min`, `just now`.
    pub fn relative(&self, t: Timestamp) -> String {
        let d = self.now.duration_since(t);
        let words = span_words(d.abs());
        if d.abs() < SignedDuration::from_mins(1) {
            "just now".into()
        } else if d.is_negative() {
            format!("in {words}")
        } else {
            format!("{words} ago")
        }
    }

    /// An instant as a table cell's content: the time to the minute and how long ago, its
    /// exact UTC second in the tooltip; text that is not an instant is shown escaped as it is.
    pub fn cell(&self, text: Option<&str>) -> String {
        match text.filter(|t| !t.is_empty()) {
            None => muted_dash(),
            Some(t) => match t.parse::<Timestamp>() {
                Ok(ts) => self.html(ts),
                Err(_) => escape(t),
            },
        }
    }

    pub fn html(&self, ts: Timestamp) -> String {
        format!(
            "<time datetime=\"{utc}\" title=\"{utc}\">{}</time> <span class=\"ago\">({})</span>",
            escape(&self.at(ts)),
            self.relative(ts),
            utc = whole_seconds(ts)
        )
    }
}

/// An instant to the second, RFC 3339 in UTC: what the JSON pages carry.
pub(crate) fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// A stored instant (RFC 3339, any precision) to the second; text that is not one as it is.
pub(crate) fn seconds_text(text: &str) -> String {
    text.parse::<Timestamp>().map(|t| whole_seconds(t).to_string()).unwrap_or_else(|_| text.to_owned())
}

/// `3 d 4 h`, `2 h 5 min`, `7 min`: the two largest units, rounded down to the minute.
pub(crate) fn span_words(d: SignedDuration) -> String {
    let mins = d.as_secs().max(0) / 60;
    let (days, hours, min) = (mins / 1440, (mins / 60) % 24, mins % 60);
    if days > 0 {
        if hours > 0 { format!("{days} d {hours} h") } else { format!("{days} d") }
    } else if hours > 0 {
        if min > 0 { format!("{hours} h {min} min") } else { format!("{hours} h") }
    } else {
        format!("{min} min")
    }
}

/// The filters and page of a dashboard address: `?state=failed&component=mod_quiz&q=univ-&page=2`.
/// Unknown parameters are ignored; a value is at most 100 bytes, trimmed, empty meaning none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Filters {
    pub state: Option<String>,
    pub component: Option<String>,
    pub q: Option<String>,
    pub page: usize,
    pub fix_page: usize,
    pub bundle_page: usize,
}

impl Filters {
    pub fn parse(query: Option<&str>) -> Filters {
        let mut f = Filters { page: 1, fix_page: 1, bundle_page: 1, ..Filters::default() };
        let text = |v: &str| Some(v.trim()).filter(|v| !v.is_empty() && v.len() <= 100).map(str::to_owned);
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*k {
                "state" => f.state = text(&v),
                "component" => f.component = text(&v),
                "q" => f.q = text(&v),
                "page" => f.page = v.parse().unwrap_or(1),
                "fix_page" => f.fix_page = v.parse().unwrap_or(1),
                "bundle_page" => f.bundle_page = v.parse().unwrap_or(1),
                _ => {}
            }
        }
        f.page = f.page.max(1);
        f.fix_page = f.fix_page.max(1);
        f.bundle_page = f.bundle_page.max(1);
        f
    }

    /// Whether `name` matches the search (`q`, a case-insensitive substring).
    pub fn matches(&self, name: &str) -> bool {
        self.q.as_deref().is_none_or(|q| name.to_lowercase().contains(&q.to_lowercase()))
    }

    /// The query string of these filters and pages (`?...`, empty when all are defaults).
    pub fn query(&self) -> String {
        let mut parts = Vec::new();
        for (k, v) in [("state", &self.state), ("component", &self.component), ("q", &self.q)] {
            if let Some(v) = v {
                parts.push(format!("{k}={}", encode(v)));
            }
        }
        for (k, n) in [("page", self.page), ("fix_page", self.fix_page), ("bundle_page", self.bundle_page)] {
            if n > 1 {
                parts.push(format!("{k}={n}"));
            }
        }
        if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
    }

    /// The query string of these filters changed by `change`.
    pub fn with(&self, change: impl FnOnce(&mut Filters)) -> String {
        let mut f = self.clone();
        change(&mut f);
        f.query()
    }

    /// The same filters with another `state` (none: all), from the first pages.
    pub fn with_state(&self, state: Option<&str>) -> String {
        self.with(|f| {
            f.state = state.map(str::to_owned);
            (f.page, f.fix_page, f.bundle_page) = (1, 1, 1);
        })
    }

    /// Whether any filter is set.
    pub fn any(&self) -> bool {
        self.state.is_some() || self.component.is_some() || self.q.is_some()
    }
}

/// One page of a list: its rows, which page, how many.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Paged<T> {
    pub total: usize,
    pub page: usize,
    pub pages: usize,
    pub rows: Vec<T>,
}

impl<T: Clone> Paged<T> {
    /// Page `page` (from 1, clamped) of `rows`, [`PAGE_ROWS`] a page.
    pub fn of(rows: &[T], page: usize) -> Paged<T> {
        let pages = rows.len().div_ceil(PAGE_ROWS).max(1);
        let page = page.clamp(1, pages);
        let start = ((page - 1) * PAGE_ROWS).min(rows.len());
        let end = (start + PAGE_ROWS).min(rows.len());
        Paged { total: rows.len(), page, pages, rows: rows[start..end].to_vec() }
    }
}

impl<T> Paged<T> {
    /// The pager line (empty when there is one page): links keep the filters.
    pub fn pager(&self, link: impl Fn(usize) -> String) -> String {
        if self.pages <= 1 {
            return String::new();
        }
        let mut out = format!("<p class=\"pager\">page {} of {} ({} rows)", self.page, self.pages, self.total);
        if self.page > 1 {
            let _ = write!(out, " <a rel=\"prev\" href=\"{}\">previous</a>", link(self.page - 1));
        }
        if self.page < self.pages {
            let _ = write!(out, " <a rel=\"next\" href=\"{}\">next</a>", link(self.page + 1));
        }
        out.push_str("</p>\n");
        out
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1rem 1.5rem;color:#222}h1{font-size:1.3rem;margin:.3rem 0}\
h2{font-size:1.05rem;margin:1.4rem 0 .4rem}nav{font-size:.9rem;display:flex;gap:1rem;align-items:center;flex-wrap:wrap}\
nav form{display:flex;gap:.3rem;margin-left:auto}table{border-collapse:collapse;width:100%;font-size:.85rem}\
th,td{border-bottom:1px solid #ddd;padding:.3rem .45rem;text-align:left;vertical-align:top}th{background:#f3f3f3}\
.state-active{color:#176317}.state-halted{color:#a35a00;font-weight:bold}.state-yanked{color:#a00;font-weight:bold}\
.outcome-applied,.fleet-installed{color:#176317}.outcome-rolled-back,.outcome-failed,.fleet-failed,.fleet-rolled-back{color:#a00;font-weight:bold}\
.fleet-held,.fleet-needs-intervention{color:#a35a00;font-weight:bold}.muted,.ago{color:#777}.num{text-align:right}\
.problem{color:#a00}.pager{font-size:.85rem}.counts{display:flex;gap:.5rem;flex-wrap:wrap;margin:.4rem 0}\
.count{border:1px solid #ccc;border-radius:4px;padding:.25rem .6rem;font-size:.85rem;text-decoration:none;color:#222}\
.count b{font-size:1.05rem}.count.bad{border-color:#a00;color:#a00}.bar{display:inline-block;width:8rem;height:.6rem;\
background:#eee;vertical-align:middle;margin-right:.4rem}.bar span{display:block;height:100%;background:#2a8a2a}\
pre{white-space:pre-wrap;font-size:.8rem;background:#f7f7f7;margin:.2rem 0;padding:.3rem;max-height:12rem;overflow:auto}\
dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem;font-size:.9rem}dt{color:#555}dd{margin:0}";

/// The whole page: title, navigation with the search form, `body`, reloaded every
/// [`REFRESH_SECS`] (the browser keeps the scroll position of a reload).
pub(crate) fn page(title: &str, times: &Times, filters: &Filters, body: &str) -> String {
    let mut h = String::with_capacity(body.len() + 4096);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <title>{} - palier</title><style>{STYLE}</style></head><body>\n<nav><a href=\"/\">Overview</a>\
         <span class=\"muted\">as of {}, times in {}</span>\
         <form method=\"get\" action=\"/\"><input name=\"q\" placeholder=\"platform or bundle\" value=\"{}\" size=\"18\">\
         <button>Search</button></form></nav>\n<h1>{}</h1>\n",
        escape(title),
        escape(&times.at(times.now)),
        escape(times.tz.iana_name().unwrap_or("UTC")),
        escape(filters.q.as_deref().unwrap_or_default()),
        escape(title),
    );
    h.push_str(body);
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(escape("<script>alert('x')</script> & \"y\""), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;");
        assert_eq!(class("outcome", "rolled-back\"><x"), "outcome-rolled-backx");
        assert_eq!(encode("a b/\"<c>"), "a%20b%2F%22%3Cc%3E");
        assert_eq!(platform_link("univ-<a>"), "<a href=\"/platforms/univ-%3Ca%3E\">univ-&lt;a&gt;</a>");
    }

    #[test]
    fn times_are_to_the_minute_in_the_zone_with_ago() {
        let times = Times { now: "2026-03-02T10:30:59.123456789Z".parse().unwrap(), tz: TimeZone::get("Europe/Paris").unwrap() };
        let past: Timestamp = "2026-03-02T08:15:42.987654321Z".parse().unwrap();
        assert_eq!(times.at(past), "2026-03-02 09:15 CET");
        assert_eq!(times.relative(past), "2 h 15 min ago");
        assert_eq!(times.relative("2026-03-05T11:00:00Z".parse().unwrap()), "in 3 d");
        assert_eq!(times.relative("2026-03-02T10:30:30Z".parse().unwrap()), "just now");
        let cell = times.cell(Some("2026-03-02T08:15:42.987654321Z"));
        assert!(cell.contains("2026-03-02 09:15 CET") && cell.contains("2026-03-02T08:15:42Z"), "{cell}");
        assert!(!cell.contains("987654321"), "no nanoseconds: {cell}");
        assert_eq!(times.cell(Some("<b>")), "&lt;b&gt;");
        assert_eq!(seconds_text("2026-03-02T08:15:42.5Z"), "2026-03-02T08:15:42Z");
    }

    #[test]
    fn filters_round_trip_through_the_address() {
        let f = Filters::parse(Some("state=failed&component=mod_quiz&q=univ-%22x&page=3&junk=1&fix_page=0"));
        assert_eq!(f.state.as_deref(), Some("failed"));
        assert_eq!(f.q.as_deref(), Some("univ-\"x"));
        assert_eq!((f.page, f.fix_page, f.bundle_page), (3, 1, 1));
        assert_eq!(f.with(|f| f.page = 2), "?state=failed&component=mod_quiz&q=univ-%22x&page=2");
        let g = Filters { page: 2, fix_page: 4, bundle_page: 5, ..f.clone() };
        assert_eq!(Filters::parse(Some(&g.query()[1..])), g);
        assert!(f.matches("UNIV-\"x1") && !f.matches("college"));
        assert_eq!(f.with_state(None), "?component=mod_quiz&q=univ-%22x");
    }

    #[test]
    fn pages_of_fifty() {
        let rows: Vec<usize> = (0..120).collect();
        let p = Paged::of(&rows, 3);
        assert_eq!((p.total, p.page, p.pages, p.rows.len(), p.rows[0]), (120, 3, 3, 20, 100));
        assert_eq!(Paged::of(&rows, 99).page, 3);
        let pager = Paged::of(&rows, 2).pager(|n| format!("?page={n}"));
        assert!(pager.contains("href=\"?page=1\"") && pager.contains("href=\"?page=3\""), "{pager}");
        assert!(Paged::of(&rows[..10], 1).pager(|_| String::new()).is_empty());
    }
}
