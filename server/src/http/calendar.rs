//! `GET /calendar/{platform}/{secret}.ics`: a platform's coming interventions and users'
//! notices as an iCalendar feed a calendar application subscribes to (wire contract 4).
//!
//! Built from the latest plan the platform's agent reported, with
//! [`palier_policy::ical_out`] (the writer `palier-agent calendar` uses): UIDs that no time
//! goes into, interventions as long as their window or slot (`slot_end`). The URL's secret is
//! the platform's own (`platform add` and `platform calendar NAME` print the URL); a wrong
//! secret, an unknown platform or a malformed path all get the same 404, so the feed tells
//! nothing of which platforms exist.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use palier_policy::ical_out;
use palier_policy::{Level, Plan};

use super::app::AppState;
use super::error::AppError;
use crate::store::{Platform, StoredPlan};

/// The URL path of `platform`'s calendar.
pub fn path(platform: &str, secret: &str) -> String {
    format!("/calendar/{platform}/{secret}.ics")
}

/// A secret as the store makes them: 64 lowercase hex digits.
fn well_formed(secret: &str) -> bool {
    secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub(crate) async fn feed(State(state): State<AppState>, Path((platform, file)): Path<(String, String)>, uri: axum::http::Uri) -> Result<Response, AppError> {
    let not_found = || AppError::not_found(uri.path());
    let Some(secret) = file.strip_suffix(".ics").filter(|s| well_formed(s)).map(str::to_owned) else { return Err(not_found()) };
    let Some(store) = state.store().cloned() else { return Err(not_found()) };
    let found = tokio::task::spawn_blocking(move || -> crate::Result<Option<(Platform, Option<StoredPlan>)>> {
        let Some(name) = store.calendar_platform(&secret)? else { return Ok(None) };
        let Some(record) = store.platform(&name)? else { return Ok(None) };
        Ok(Some((record, store.plan(&name)?)))
    })
    .await
    .map_err(AppError::internal)?
    .map_err(AppError::internal)?;
    let Some((record, plan)) = found.filter(|(p, _)| p.name == platform) else { return Err(not_found()) };
    let now = state.clock().now();
    let events = match plan.as_ref().and_then(|p| as_plan(&record, p)) {
        Some(plan) => ical_out::from_plan(&plan, &record.name, now, ical_out::FEED_HORIZON),
        None => Vec::new(),
    };
    let text = ical_out::calendar(&record.name, now, &events);
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/calendar; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache")),
        ],
        text,
    )
        .into_response())
}

/// The stored plan as the policy's [`Plan`], with the stability level the agent reports (or
/// the registered one); `None` when neither is known.
fn as_plan(record: &Platform, stored: &StoredPlan) -> Option<Plan> {
    let level = |reported: Option<u8>, registered: Option<u8>| reported.or(registered).and_then(|n| Level::new(i64::from(n)).ok());
    let contract = record.contract.as_ref();
    Some(Plan {
        platform: palier_bundle::PlatformId::new(&record.name).ok()?,
        now: stored.now.to_zoned(jiff::tz::TimeZone::UTC),
        improvement_level: level(record.improvement_level, contract.map(|c| c.improvement))?,
        stability_level: level(record.stability_level, contract.map(|c| c.stability))?,
        bundles: stored.bundles.clone(),
    })
}
