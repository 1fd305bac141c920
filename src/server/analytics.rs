//! `GET /api/analytics?from=RFC3339&to=RFC3339&segment=US:healthcare`: what
//! the calls created in a time range add up to (see
//! [`CallStats`](crate::store::CallStats)), from the context store's
//! `calls:by_created` index. A management API route: it takes the bearer
//! key of `[server] api_token_env`.
//!
//! `to` defaults to now and `from` to a day before `to`. A range wider
//! than [`MAX_RANGE_MS`] (31 days) is narrowed to the 31 days that end at
//! `to` (the newest calls are the ones still stored) and the answer says
//! `"capped": true`; at most [`MAX_CALLS`] calls are counted, the earliest
//! of the range in the segment, found among at most [`MAX_SCANNED`] calls
//! of the range (a rare segment over a busy range stops there). When
//! calls may be left out, `"truncated": true`: more than `MAX_CALLS`
//! matched, or, with `"scan_capped": true`, `MAX_SCANNED` calls were read
//! before the range ended and `"scanned_to"` is the creation time of the
//! first call not read (ask again from there for the rest; calls of that
//! millisecond may then be counted twice). A parameter that cannot be read
//! is a 400 naming it; an offset whose `+` arrived as a space (an
//! unencoded query string) is read as `+`.
//!
//! ```json
//! {"from": "2026-01-15T00:00:00.000Z", "to": "2026-01-16T00:00:00.000Z",
//!  "capped": false, "truncated": false, "scan_capped": false,
//!  "scanned_to": null, "segment": "US:healthcare",
//!  "calls": 2, "by_status": {"queued": 0, …, "completed": 2, …},
//!  "by_outcome": {"success": 1, "failure": 0, "unevaluated": 1},
//!  "by_direction": {"inbound": 1, "outbound": 1},
//!  "success_rate": 1.0, "mean_score": 0.9,
//!  "duration_secs": {"count": 2, "p50": 31.2, "p90": 64.0, "p99": 64.0},
//!  "turn_latency_ms": {"count": 9, "p50": 820.0, "p90": 1210.0, "p99": 1300.0}}
//! ```

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::api_access::ApiAuthorized;
use super::state::ServerState;
use crate::store::time::{parse_rfc3339, rfc3339, unix_ms};
use crate::store::{CallStore, Coverage, SegmentFilter, StatsQuery, StoreError, gather_call_stats};

/// The widest range answered: 31 days.
pub const MAX_RANGE_MS: u64 = 31 * DAY_MS;

/// The most calls one answer counts.
pub const MAX_CALLS: usize = 10_000;

/// The most calls of the range one answer reads to find those of its
/// segment (fifty pages of the index; their records are read to match
/// the segment).
pub const MAX_SCANNED: usize = 50_000;

const DAY_MS: u64 = 86_400_000;

/// An analytics query as understood (from the HTTP query string, or
/// `voxpipe calls stats`' flags): the calls to read, and whether its range
/// was narrowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyticsQuery {
    /// The calls to read.
    pub stats: StatsQuery,
    /// The segment as written, if any.
    pub segment: Option<String>,
    /// The range was wider than [`MAX_RANGE_MS`] and was narrowed.
    pub capped: bool,
}

/// A parameter that cannot be used: 400, naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BadParameter {
    /// `from`, `to`, `segment`, or the unknown parameter's name.
    pub parameter: String,
    /// What is wrong with it.
    pub message: String,
}

impl BadParameter {
    fn new(parameter: &str, message: String) -> Self {
        BadParameter {
            parameter: parameter.to_owned(),
            message,
        }
    }
}

impl AnalyticsQuery {
    /// Reads the query string's `params` (`from`, `to`, `segment`) at
    /// `now_ms`.
    pub fn parse(
        params: impl IntoIterator<Item = (String, String)>,
        now_ms: u64,
    ) -> Result<Self, BadParameter> {
        let (mut from, mut to, mut segment) = (None, None, None);
        for (name, value) in params {
            let slot = match name.as_str() {
                "from" => &mut from,
                "to" => &mut to,
                "segment" => &mut segment,
                _ => {
                    return Err(BadParameter::new(
                        &name,
                        format!("unknown parameter `{name}`; expected from, to, segment"),
                    ));
                }
            };
            if slot.replace(value).is_some() {
                return Err(BadParameter::new(&name, format!("`{name}` is given twice")));
            }
        }
        let instant = |name: &str, value: Option<String>| {
            match value {
            None => Ok(None),
            Some(text) => parse_rfc3339(&plus_restored(&text)).map(Some).ok_or_else(|| {
                BadParameter::new(
                    name,
                    format!(
                        "`{name}` is not an RFC 3339 date-time (e.g. 2026-01-15T10:30:00Z): {text:?}"
                    ),
                )
            }),
        }
        };
        let to_ms = instant("to", to)?.unwrap_or(now_ms);
        let from_ms = instant("from", from)?.unwrap_or(to_ms.saturating_sub(DAY_MS));
        if from_ms > to_ms {
            return Err(BadParameter::new(
                "from",
                format!(
                    "`from` ({}) is after `to` ({})",
                    rfc3339(from_ms),
                    rfc3339(to_ms)
                ),
            ));
        }
        let capped = to_ms - from_ms > MAX_RANGE_MS;
        let from_ms = from_ms.max(to_ms.saturating_sub(MAX_RANGE_MS));
        let filter = segment
            .as_deref()
            .map(str::parse::<SegmentFilter>)
            .transpose()
            .map_err(|e| BadParameter::new("segment", e.to_string()))?;
        Ok(AnalyticsQuery {
            stats: StatsQuery {
                from_ms,
                to_ms,
                segment: filter,
                limit: MAX_CALLS,
                max_scanned: MAX_SCANNED,
            },
            segment,
            capped,
        })
    }
}

/// `GET /api/analytics`.
pub(crate) async fn analytics(
    _authorized: ApiAuthorized,
    State(state): State<Arc<ServerState>>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()).into_owned();
    let query = match AnalyticsQuery::parse(params, unix_ms()) {
        Ok(query) => query,
        Err(bad) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": bad.message, "parameter": bad.parameter})),
            )
                .into_response();
        }
    };
    let Some(agent) = &state.agent else {
        return unavailable("this server keeps no calls: it has no context store".into());
    };
    match analytics_report(agent.store().as_ref(), &query).await {
        Ok(report) => Json(report).into_response(),
        Err(error) => {
            tracing::warn!(%error, "analytics: the store did not answer");
            unavailable(format!("the context store did not answer: {error}"))
        }
    }
}

/// The answer to `query` (the JSON of the module docs), read from `store`.
pub async fn analytics_report(
    store: &dyn CallStore,
    query: &AnalyticsQuery,
) -> Result<Value, StoreError> {
    let (stats, coverage) = gather_call_stats(store, &query.stats).await?;
    let scanned_to = match coverage {
        Coverage::Scanned { next_ms } => {
            tracing::info!(
                max_scanned = query.stats.max_scanned,
                "analytics: the scan cap was reached before the range ended"
            );
            Some(rfc3339(next_ms))
        }
        Coverage::Complete | Coverage::Limited => None,
    };
    let mut report = json!({
        "from": rfc3339(query.stats.from_ms),
        "to": rfc3339(query.stats.to_ms),
        "capped": query.capped,
        "truncated": coverage.truncated(),
        "scan_capped": scanned_to.is_some(),
        "scanned_to": scanned_to,
        "segment": query.segment,
    });
    let stats = serde_json::to_value(&stats).map_err(|source| StoreError::Encode {
        key: "analytics".into(),
        source,
    })?;
    if let (Value::Object(report), Value::Object(stats)) = (&mut report, stats) {
        report.extend(stats);
    }
    Ok(report)
}

fn unavailable(error: String) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": error })),
    )
        .into_response()
}

/// `text` with a `+` put back before a trailing ` HH:MM` offset: an
/// unencoded `+01:00` in a query string arrives as ` 01:00` (form decoding
/// reads `+` as a space).
fn plus_restored(text: &str) -> std::borrow::Cow<'_, str> {
    let b = text.as_bytes();
    let offset = b.len().checked_sub(6).map(|at| &b[at..]);
    match offset {
        Some([b' ', h1, h2, b':', m1, m2])
            if [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()) =>
        {
            let at = b.len() - 6;
            format!("{}+{}", &text[..at], &text[at + 1..]).into()
        }
        _ => text.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_705_314_600_000; // 2024-01-15T10:30:00Z

    fn parse(query: &[(&str, &str)]) -> Result<AnalyticsQuery, BadParameter> {
        AnalyticsQuery::parse(
            query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            NOW,
        )
    }

    #[test]
    fn the_default_range_is_the_last_day() {
        let query = parse(&[]).unwrap();
        assert_eq!(query.stats.to_ms, NOW);
        assert_eq!(query.stats.from_ms, NOW - DAY_MS);
        assert!(!query.capped);
        assert_eq!(query.stats.segment, None);
        assert_eq!(query.stats.limit, MAX_CALLS);
        assert_eq!(query.stats.max_scanned, MAX_SCANNED);
    }

    #[tokio::test]
    async fn an_answer_cut_by_the_scan_cap_says_so_and_where() {
        use std::collections::BTreeMap;

        use crate::store::{CallRecord, MemoryStore, Segment};
        let store = MemoryStore::new(Default::default());
        // Recent: the index drops calls older than their TTL.
        let base = unix_ms() - 3_600_000;
        for (n, country) in ["DE", "DE", "DE", "US"].into_iter().enumerate() {
            let segment = Segment {
                country: Some(country.into()),
                industry: None,
            };
            let at = base + n as u64;
            let record =
                CallRecord::pending(format!("c{n}"), "twilio", segment, BTreeMap::new(), at);
            assert!(store.create_call(&record).await.unwrap());
        }
        let mut query = parse(&[("segment", "US")]).unwrap();
        query.stats.from_ms = base;
        query.stats.to_ms = base + 10;
        let whole = analytics_report(&store, &query).await.unwrap();
        assert_eq!(whole["calls"], 1);
        assert_eq!(whole["truncated"], false);
        assert_eq!(whole["scan_capped"], false);
        assert_eq!(whole["scanned_to"], Value::Null);
        query.stats.max_scanned = 2;
        let cut = analytics_report(&store, &query).await.unwrap();
        assert_eq!(cut["calls"], 0);
        assert_eq!(cut["truncated"], true);
        assert_eq!(cut["scan_capped"], true);
        assert_eq!(cut["scanned_to"], rfc3339(base + 2));
    }

    #[test]
    fn a_range_over_31_days_keeps_its_newest_31() {
        let query = parse(&[
            ("from", "2023-01-01T00:00:00Z"),
            ("to", "2024-01-15T10:30:00Z"),
        ])
        .unwrap();
        assert!(query.capped);
        assert_eq!(query.stats.to_ms, NOW);
        assert_eq!(query.stats.from_ms, NOW - MAX_RANGE_MS);
    }

    #[test]
    fn an_offset_whose_plus_was_decoded_to_a_space_is_read() {
        // `?from=2024-01-15T11:30:00+01:00` sent unencoded.
        let query = parse(&[
            ("from", "2024-01-15T11:30:00 01:00"),
            ("to", "2024-01-15T12:30:00.000 01:00"),
        ])
        .unwrap();
        assert_eq!(query.stats.from_ms, NOW);
        assert_eq!(query.stats.to_ms, NOW + 3_600_000);
        let minus = parse(&[("from", "2024-01-15T09:30:00-01:00")]).unwrap();
        assert_eq!(minus.stats.from_ms, NOW);
    }

    #[test]
    fn a_bad_parameter_is_named() {
        let bad = parse(&[("from", "yesterday")]).unwrap_err();
        assert_eq!(bad.parameter, "from");
        assert!(bad.message.contains("RFC 3339"), "{bad}");
        assert_eq!(parse(&[("to", "2024-01-15")]).unwrap_err().parameter, "to");
        let reversed = parse(&[
            ("from", "2024-01-15T00:00:00Z"),
            ("to", "2024-01-14T00:00:00Z"),
        ])
        .unwrap_err();
        assert_eq!(reversed.parameter, "from");
        assert_eq!(
            parse(&[("segment", "US:")]).unwrap_err().parameter,
            "segment"
        );
        assert_eq!(parse(&[("form", "x")]).unwrap_err().parameter, "form");
        assert!(
            parse(&[
                ("to", "2024-01-15T00:00:00Z"),
                ("to", "2024-01-15T00:00:00Z")
            ])
            .unwrap_err()
            .message
            .contains("twice")
        );
    }
}
