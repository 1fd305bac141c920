//! [`CallStats`]: what the calls of a time range add up to, for
//! `GET /api/analytics` and `voxpipe calls stats`.
//!
//! The calls are found through the `calls:by_created` index
//! ([`CallStore::calls_between`]), never by scanning the store, and read with
//! their transcripts (whose assistant turns carry their voice-to-voice
//! latency). [`CallStatsBuilder`] is the arithmetic alone, tested without a
//! store: counts by status (every [`CallStatus`], zeros included), by outcome
//! and by direction, the success rate among evaluated calls, the mean
//! score, and nearest-rank percentiles of call durations and turn latencies.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use futures_util::{StreamExt, stream};
use serde::Serialize;

use super::api::CallStore;
use super::call::{CallDirection, CallRecord, Outcome, Segment};
use super::call_status::CallStatus;
use super::error::StoreError;
use super::interaction::Interaction;
use super::time::parse_rfc3339;

/// Transcripts read at once while gathering.
const TRANSCRIPTS_IN_FLIGHT: usize = 16;

/// Which calls: created in `[from_ms, to_ms]`, of `segment` (all when
/// `None`), at most `limit` of them (the earliest), looking at no more
/// than `max_scanned` calls of the range to find them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsQuery {
    /// Unix ms, included.
    pub from_ms: u64,
    /// Unix ms, included.
    pub to_ms: u64,
    /// Only the calls of this segment.
    pub segment: Option<SegmentFilter>,
    /// The most calls counted.
    pub limit: usize,
    /// The most calls of the range read, of the segment or not (a rare
    /// segment over a busy range stops here, not at the range's end).
    pub max_scanned: usize,
}

/// Which calls of a [`StatsQuery`] the stats cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// Every call of the range in the segment.
    Complete,
    /// The earliest `limit`: the range held more of the segment.
    Limited,
    /// Those created before `next_ms`: `max_scanned` calls of the range
    /// were read, and the one created at `next_ms` was not.
    Scanned {
        /// The creation time (Unix ms) of the first call not read.
        next_ms: u64,
    },
}

impl Coverage {
    /// Calls of the range in the segment may be left out.
    pub fn truncated(self) -> bool {
        self != Coverage::Complete
    }
}

/// A segment to filter calls by, written `COUNTRY:INDUSTRY` (`US:healthcare`),
/// `COUNTRY` alone, or with `*` for either part (`*:healthcare`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFilter {
    /// The country code, or any.
    pub country: Option<String>,
    /// The industry, or any.
    pub industry: Option<String>,
}

/// Why a segment filter cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a segment; write COUNTRY:INDUSTRY (e.g. US:healthcare), COUNTRY, or * for either part"
)]
pub struct BadSegment(pub String);

impl FromStr for SegmentFilter {
    type Err = BadSegment;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let part = |p: &str| -> Result<Option<String>, BadSegment> {
            let p = p.trim();
            match p {
                "*" => Ok(None),
                "" => Err(BadSegment(text.to_owned())),
                // What a stored segment may hold (`real estate` included).
                _ if !super::call::is_segment_part(p) => Err(BadSegment(text.to_owned())),
                _ => Ok(Some(p.to_owned())),
            }
        };
        let (country, industry) = match text.split_once(':') {
            Some((country, industry)) => (part(country)?, part(industry)?),
            None => (part(text)?, None),
        };
        Ok(SegmentFilter { country, industry })
    }
}

impl SegmentFilter {
    /// Whether a call of `segment` is one of these (countries compared
    /// without case, as stored prompts are looked up).
    pub fn matches(&self, segment: &Segment) -> bool {
        let same = |want: &Option<String>, have: &Option<String>| match (want, have) {
            (None, _) => true,
            (Some(want), Some(have)) => want.eq_ignore_ascii_case(have),
            (Some(_), None) => false,
        };
        same(&self.country, &segment.country) && same(&self.industry, &segment.industry)
    }
}

/// Counts by status, every status in rank order (a JSON object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCounts(pub Vec<(&'static str, u64)>);

impl StatusCounts {
    /// The count of `status` (`completed`, `no-answer`, ...).
    pub fn get(&self, status: &str) -> u64 {
        self.0
            .iter()
            .find(|(name, _)| *name == status)
            .map_or(0, |(_, n)| *n)
    }
}

impl Serialize for StatusCounts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (status, count) in &self.0 {
            map.serialize_entry(status, count)?;
        }
        map.end()
    }
}

/// Counts by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutcomeCounts {
    /// Judged a success.
    pub success: u64,
    /// Judged a failure.
    pub failure: u64,
    /// Not (or not yet) judged.
    pub unevaluated: u64,
}

/// Counts by direction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DirectionCounts {
    /// Calls that came in (records without a direction included).
    pub inbound: u64,
    /// Calls voxpipe placed.
    pub outbound: u64,
}

/// Nearest-rank percentiles of some values; `None` without values.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// How many values.
    pub count: u64,
    /// The median.
    pub p50: Option<f64>,
    /// The 90th percentile.
    pub p90: Option<f64>,
    /// The 99th percentile.
    pub p99: Option<f64>,
}

impl Percentiles {
    /// The percentiles of `values` (any order).
    pub fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        let rank = |q: f64| -> Option<f64> {
            let n = values.len();
            // Nearest rank: the smallest value with at least q of them at or
            // below it.
            let at = ((q * n as f64).ceil() as usize).clamp(1, n.max(1)) - 1;
            values.get(at).copied()
        };
        Percentiles {
            count: values.len() as u64,
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
        }
    }
}

/// What the calls of a range add up to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallStats {
    /// How many calls.
    pub calls: u64,
    /// By status: every status, in rank order, zeros included.
    pub by_status: StatusCounts,
    /// By the evaluator's outcome.
    pub by_outcome: OutcomeCounts,
    /// Inbound and outbound.
    pub by_direction: DirectionCounts,
    /// Successes among the evaluated calls (0 to 1); `None` when none was.
    pub success_rate: Option<f64>,
    /// The mean evaluation score (0 to 1); `None` when none was scored.
    pub mean_score: Option<f64>,
    /// Connected time of the calls that connected and ended, in seconds.
    pub duration_secs: Percentiles,
    /// Voice-to-voice latency of the assistant turns that answered the
    /// user, in milliseconds.
    pub turn_latency_ms: Percentiles,
}

/// Adds calls up into [`CallStats`]. See the module docs.
#[derive(Debug, Default)]
pub struct CallStatsBuilder {
    calls: u64,
    by_status: HashMap<CallStatus, u64>,
    by_outcome: OutcomeCounts,
    by_direction: DirectionCounts,
    scores: Vec<f64>,
    durations: Vec<f64>,
    latencies: Vec<f64>,
}

impl CallStatsBuilder {
    /// Nothing added yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one call and its transcript.
    pub fn add(&mut self, record: &CallRecord, turns: &[Interaction]) {
        self.calls += 1;
        *self.by_status.entry(record.status).or_default() += 1;
        match record.outcome {
            Some(Outcome::Success) => self.by_outcome.success += 1,
            Some(Outcome::Failure) => self.by_outcome.failure += 1,
            None => self.by_outcome.unevaluated += 1,
        }
        match record.direction {
            Some(CallDirection::Outbound) => self.by_direction.outbound += 1,
            Some(CallDirection::Inbound) | None => self.by_direction.inbound += 1,
        }
        if let Some(score) = record.score.filter(|s| s.is_finite()) {
            self.scores.push(score);
        }
        if let Some(secs) = duration_secs(record) {
            self.durations.push(secs);
        }
        self.latencies.extend(
            turns
                .iter()
                .filter_map(|t| t.latency_ms)
                .map(|ms| ms as f64),
        );
    }

    /// The totals.
    pub fn finish(self) -> CallStats {
        let evaluated = self.by_outcome.success + self.by_outcome.failure;
        CallStats {
            calls: self.calls,
            by_status: StatusCounts(
                CallStatus::ALL
                    .iter()
                    .map(|s| (s.as_str(), self.by_status.get(s).copied().unwrap_or(0)))
                    .collect(),
            ),
            success_rate: (evaluated > 0)
                .then(|| self.by_outcome.success as f64 / evaluated as f64),
            mean_score: (!self.scores.is_empty())
                .then(|| self.scores.iter().sum::<f64>() / self.scores.len() as f64),
            by_outcome: self.by_outcome,
            by_direction: self.by_direction,
            duration_secs: Percentiles::of(self.durations),
            turn_latency_ms: Percentiles::of(self.latencies),
        }
    }
}

/// How long the call was connected: from the pipeline's start to its end,
/// else Twilio's `CallDuration`; `None` for a call that never connected or
/// has not ended.
fn duration_secs(record: &CallRecord) -> Option<f64> {
    let stamped = |at: &Option<String>| at.as_deref().and_then(parse_rfc3339);
    match (stamped(&record.started_at), stamped(&record.ended_at)) {
        (Some(start), Some(end)) if end >= start => Some((end - start) as f64 / 1000.0),
        _ => record
            .outbound
            .as_ref()
            .and_then(|o| o.call_duration_secs)
            .map(|secs| secs as f64),
    }
}

/// The stats of the calls `query` asks for, read from `store`: the
/// earliest `query.limit` calls of the range in the segment (the segment
/// is matched before the limit, so a segment's calls are all counted up to
/// the limit however many other calls the range holds, within the first
/// `query.max_scanned` of the range), and which calls they cover.
pub async fn gather_call_stats(
    store: &dyn CallStore,
    query: &StatsQuery,
) -> Result<(CallStats, Coverage), StoreError> {
    let (records, coverage) = matching_calls(store, query).await?;
    let ids: Vec<String> = records.iter().map(|r| r.call_id.clone()).collect();
    let mut transcripts = stream::iter(ids)
        .map(|id| async move { store.turns(&id).await })
        .buffered(TRANSCRIPTS_IN_FLIGHT);
    let mut builder = CallStatsBuilder::new();
    for record in &records {
        let turns = transcripts.next().await.transpose()?.unwrap_or_default();
        builder.add(record, &turns);
    }
    Ok((builder.finish(), coverage))
}

/// The calls read at once from the index.
const PAGE: usize = 1_000;

/// Reads the range a page at a time, keeping the calls of the segment,
/// until `query.limit` of them (and one more, to know there were more),
/// `query.max_scanned` calls read, or the end of the range.
async fn matching_calls(
    store: &dyn CallStore,
    query: &StatsQuery,
) -> Result<(Vec<CallRecord>, Coverage), StoreError> {
    let mut matching = Vec::new();
    let mut scanned = 0;
    // The calls of the previous page's last millisecond, where this page
    // starts: read again, counted once.
    let mut repeated: HashSet<String> = HashSet::new();
    let mut from = query.from_ms;
    loop {
        let page = store.calls_between(from, query.to_ms, PAGE).await?;
        let last = page.last().and_then(|c| parse_rfc3339(&c.created_at));
        let seen = std::mem::take(&mut repeated);
        for record in page {
            if seen.contains(&record.call_id) {
                continue;
            }
            if scanned == query.max_scanned {
                let next_ms = parse_rfc3339(&record.created_at).unwrap_or(from);
                return Ok((matching, Coverage::Scanned { next_ms }));
            }
            scanned += 1;
            if last.is_some() && parse_rfc3339(&record.created_at) == last {
                repeated.insert(record.call_id.clone());
            }
            if query
                .segment
                .as_ref()
                .is_none_or(|s| s.matches(&record.segment))
            {
                if matching.len() == query.limit {
                    return Ok((matching, Coverage::Limited));
                }
                matching.push(record);
            }
        }
        // One past the last millisecond when the page began there, so
        // every step moves on.
        match last {
            Some(last) if last < query.to_ms => from = if last > from { last } else { last + 1 },
            _ => return Ok((matching, Coverage::Complete)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::conversation::Role;
    use crate::store::CallChange;
    use crate::store::Evaluation;
    use crate::store::time::rfc3339;

    fn call(id: &str, status: CallStatus, connected_secs: Option<u64>) -> CallRecord {
        let mut record = CallRecord::pending(id, "twilio", Segment::default(), BTreeMap::new(), 0);
        if let Some(secs) = connected_secs {
            record.apply(&CallChange::Started { at_ms: 1_000 }, 0);
            record.apply(
                &CallChange::Ended {
                    reason: "hangup".into(),
                    at_ms: 1_000 + secs * 1000,
                },
                0,
            );
        }
        record.status = status;
        record
    }

    fn judged(mut record: CallRecord, outcome: Outcome, score: f64) -> CallRecord {
        record.apply(
            &CallChange::Evaluated(Evaluation::Evaluated {
                outcome,
                score,
                tactics: Vec::new(),
                reason: String::new(),
                model: "m".into(),
                at: rfc3339(0),
            }),
            0,
        );
        record
    }

    fn answer(latency_ms: Option<u64>) -> Interaction {
        Interaction {
            index: 0,
            role: Role::Assistant,
            text: "Hi".into(),
            timestamp: rfc3339(0),
            session_ms: 0,
            interrupted: false,
            tool_calls: Vec::new(),
            latency_ms,
            agent: None,
            reflection: None,
        }
    }

    #[test]
    fn calls_add_up_by_status_outcome_and_direction() {
        let mut builder = CallStatsBuilder::new();
        builder.add(
            &judged(
                call("a", CallStatus::Completed, Some(30)),
                Outcome::Success,
                0.9,
            ),
            &[answer(Some(700)), answer(None), answer(Some(900))],
        );
        builder.add(
            &judged(
                call("b", CallStatus::Completed, Some(10)),
                Outcome::Failure,
                0.3,
            ),
            &[answer(Some(800))],
        );
        let mut busy = call("c", CallStatus::Busy, None);
        busy.direction = Some(CallDirection::Outbound);
        builder.add(&busy, &[]);
        let stats = builder.finish();

        assert_eq!(stats.calls, 3);
        assert_eq!(stats.by_status.0.len(), CallStatus::ALL.len());
        assert_eq!(stats.by_status.get("completed"), 2);
        assert_eq!(stats.by_status.get("busy"), 1);
        assert_eq!(stats.by_status.get("no-answer"), 0);
        let json = serde_json::to_value(&stats).unwrap();
        let order: Vec<&String> = json["by_status"].as_object().unwrap().keys().collect();
        assert_eq!(order[0], "queued");
        assert_eq!(order[9], "canceled");
        assert_eq!(
            stats.by_outcome,
            OutcomeCounts {
                success: 1,
                failure: 1,
                unevaluated: 1
            }
        );
        assert_eq!(stats.by_direction.inbound, 2);
        assert_eq!(stats.by_direction.outbound, 1);
        assert_eq!(stats.success_rate, Some(0.5));
        assert!((stats.mean_score.unwrap() - 0.6).abs() < 1e-9);
        assert_eq!(stats.duration_secs.count, 2);
        assert_eq!(stats.duration_secs.p50, Some(10.0));
        assert_eq!(stats.duration_secs.p99, Some(30.0));
        assert_eq!(stats.turn_latency_ms.count, 3);
        assert_eq!(stats.turn_latency_ms.p50, Some(800.0));
    }

    #[test]
    fn no_calls_is_zeros_and_nothing_to_rate() {
        let stats = CallStatsBuilder::new().finish();
        assert_eq!(stats.calls, 0);
        assert!(stats.by_status.0.iter().all(|(_, n)| *n == 0));
        assert_eq!(stats.success_rate, None);
        assert_eq!(stats.mean_score, None);
        assert_eq!(stats.duration_secs, Percentiles::default());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let p = Percentiles::of((1..=100).rev().map(f64::from).collect());
        assert_eq!((p.p50, p.p90, p.p99), (Some(50.0), Some(90.0), Some(99.0)));
        let one = Percentiles::of(vec![4.0]);
        assert_eq!((one.p50, one.p99), (Some(4.0), Some(4.0)));
    }

    #[test]
    fn segments_are_read_and_matched() {
        let us_health: SegmentFilter = "US:healthcare".parse().unwrap();
        let any_health: SegmentFilter = "*:healthcare".parse().unwrap();
        let us: SegmentFilter = "us".parse().unwrap();
        let segment = |c: &str, i: &str| Segment {
            country: Some(c.into()),
            industry: Some(i.into()),
        };
        assert!(us_health.matches(&segment("US", "healthcare")));
        assert!(!us_health.matches(&segment("US", "retail")));
        assert!(any_health.matches(&segment("FR", "healthcare")));
        assert!(us.matches(&segment("US", "retail")));
        assert!(!us.matches(&Segment::default()));
        // A part a stored segment may hold is a part a filter may name.
        let estate: SegmentFilter = "US:real estate".parse().unwrap();
        assert!(estate.matches(&Segment {
            country: Some("US".into()),
            industry: Some("real estate".into()),
        }));
        for bad in ["", ":", "US:", "US:{a}", "US:a:b", "U*"] {
            assert!(bad.parse::<SegmentFilter>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_segment_is_matched_before_the_limit_across_pages() {
        use crate::store::{CallStore, MemoryStore};
        let store = MemoryStore::new(Default::default());
        // Recent: the index drops calls older than their TTL.
        let base = crate::store::time::unix_ms() - 3_600_000;
        let segment = |country: &str| Segment {
            country: Some(country.into()),
            industry: None,
        };
        // 1,005 calls of DE, two to a millisecond (so a page ends inside
        // one), then 2 of US.
        for n in 0..1_005u64 {
            let record = CallRecord::pending(
                format!("de{n}"),
                "twilio",
                segment("DE"),
                BTreeMap::new(),
                base + n / 2,
            );
            assert!(store.create_call(&record).await.unwrap());
        }
        for n in 0..2u64 {
            let record = CallRecord::pending(
                format!("us{n}"),
                "twilio",
                segment("US"),
                BTreeMap::new(),
                base + 5_000 + n,
            );
            assert!(store.create_call(&record).await.unwrap());
        }
        let query = |segment: Option<&str>, limit, max_scanned| StatsQuery {
            from_ms: base,
            to_ms: base + 10_000,
            segment: segment.map(|s| s.parse().unwrap()),
            limit,
            max_scanned,
        };
        let stats = async |query| gather_call_stats(&store, &query).await.unwrap();
        let (us, coverage) = stats(query(Some("US"), 10, 1_007)).await;
        assert_eq!(
            (us.calls, coverage),
            (2, Coverage::Complete),
            "every US call, past 1,005 others"
        );
        let (us, coverage) = stats(query(Some("US"), 1, 1_007)).await;
        assert_eq!((us.calls, coverage), (1, Coverage::Limited));
        let (all, coverage) = stats(query(None, 5_000, 5_000)).await;
        assert_eq!(
            (all.calls, coverage),
            (1_007, Coverage::Complete),
            "each call once"
        );
        // The scan stops after so many calls of the range, matching or not.
        let (us, coverage) = stats(query(Some("US"), 10, 1_006)).await;
        let next_ms = base + 5_001;
        assert_eq!((us.calls, coverage), (1, Coverage::Scanned { next_ms }));
        let (us, coverage) = stats(query(Some("US"), 10, 1_000)).await;
        let next_ms = base + 500; // de1000's, its pair de1001 not read either
        assert_eq!((us.calls, coverage), (0, Coverage::Scanned { next_ms }));
        assert!(coverage.truncated());
    }
}
