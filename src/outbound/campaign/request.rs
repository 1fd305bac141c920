//! `POST /api/campaigns`'s body, and the campaign it makes.

use serde::{Deserialize, Serialize};

use crate::store::NewCampaign;

use super::numbers::{CsvError, NumberItem, Numbers, RejectedRow};
use super::settings::{CampaignSettings, RetryPolicy, SettingsError};
use super::window::{CallingWindow, WindowError};

/// A campaign asked for: its numbers (`numbers`, a JSON list, or `csv`,
/// a CSV text with a `to` column) and its settings (see
/// [`CampaignSettings`] for the defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignRequest {
    /// The numbers as a list.
    #[serde(default)]
    pub numbers: Option<Vec<NumberItem>>,
    /// The numbers as CSV.
    #[serde(default)]
    pub csv: Option<String>,
    /// See [`CampaignSettings::calls_per_second`].
    #[serde(default)]
    pub calls_per_second: Option<f64>,
    /// See [`CampaignSettings::max_concurrent`].
    #[serde(default)]
    pub max_concurrent: Option<u64>,
    /// See [`CampaignSettings::retry`].
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
    /// See [`CampaignSettings::window`].
    #[serde(default)]
    pub window: Option<CallingWindow>,
    /// See [`CampaignSettings::webhook_url`].
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// See [`CampaignSettings::metadata`].
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// The most rows (numbers, duplicates and refused rows) one campaign
/// takes: all of its entries are queued in one store transaction, which a
/// million would hold past the store's timeout (and 16 MB of bare numbers
/// holds about 1.5 million).
pub const MAX_CAMPAIGN_ROWS: u64 = 100_000;

/// A campaign request that cannot be queued at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CampaignError {
    /// Neither or both of `numbers` and `csv`.
    #[error("give the numbers as either `numbers` (a list) or `csv` (a CSV text), not both")]
    Numbers,
    /// The CSV has no usable header.
    #[error(transparent)]
    Csv(#[from] CsvError),
    /// A setting is out of range.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The window cannot be used.
    #[error(transparent)]
    Window(#[from] WindowError),
    /// More rows than one campaign takes.
    #[error("{rows} rows: a campaign takes at most {MAX_CAMPAIGN_ROWS}; split it")]
    TooManyRows {
        /// The rows given.
        rows: u64,
    },
    /// No row had a usable number.
    #[error("no row has a usable number")]
    NoNumbers {
        /// The rows refused.
        rejected: Vec<RejectedRow>,
    },
}

/// What creating a campaign queued and left out: the answer to
/// `POST /api/campaigns`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CampaignCreated {
    /// The new campaign's id.
    pub campaign_id: String,
    /// Numbers queued.
    pub queued: u64,
    /// Rows whose number an earlier row has (dialled once).
    pub duplicates: u64,
    /// Rows refused, by line.
    pub rejected: Vec<RejectedRow>,
}

impl CampaignRequest {
    /// The campaign to store as `campaign_id`, created at `now_ms`, and the
    /// report on its rows.
    pub fn plan(
        self,
        campaign_id: String,
        now_ms: u64,
    ) -> Result<(NewCampaign, CampaignCreated), CampaignError> {
        let defaults = CampaignSettings::default();
        let settings = CampaignSettings {
            calls_per_second: self.calls_per_second.unwrap_or(defaults.calls_per_second),
            max_concurrent: self.max_concurrent.unwrap_or(defaults.max_concurrent),
            retry: self.retry.unwrap_or(defaults.retry),
            window: self.window,
            webhook_url: self.webhook_url,
            metadata: self.metadata,
        };
        settings.validate()?;
        if let Some(window) = &settings.window {
            window.validate()?;
        }
        let numbers = match (self.numbers, self.csv) {
            (Some(list), None) => Numbers::from_list(list),
            (None, Some(csv)) => Numbers::from_csv(&csv)?,
            _ => return Err(CampaignError::Numbers),
        };
        let rows = (numbers.entries.len() + numbers.rejected.len()) as u64 + numbers.duplicates;
        if rows > MAX_CAMPAIGN_ROWS {
            return Err(CampaignError::TooManyRows { rows });
        }
        if numbers.entries.is_empty() {
            return Err(CampaignError::NoNumbers {
                rejected: numbers.rejected,
            });
        }
        let created = CampaignCreated {
            campaign_id: campaign_id.clone(),
            queued: numbers.entries.len() as u64,
            duplicates: numbers.duplicates,
            rejected: numbers.rejected,
        };
        let campaign = NewCampaign {
            id: campaign_id,
            // A plain struct of strings and numbers: serializing cannot fail.
            settings: serde_json::to_string(&settings).unwrap_or_default(),
            entries: numbers.entries,
            rejected: created.rejected.len() as u64,
            created_ms: now_ms,
        };
        Ok((campaign, created))
    }
}

/// A fresh campaign id: 16 hex digits.
pub fn new_campaign_id() -> String {
    format!("{:016x}", crate::random::random_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> Result<CampaignRequest, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn refuses_more_rows_than_a_campaign_takes() {
        let rows: Vec<String> = (0..=MAX_CAMPAIGN_ROWS)
            .map(|i| format!("+1555{:07}", i % 10_000_000))
            .collect();
        let csv = format!("to\n{}\n", rows.join("\n"));
        let body = serde_json::json!({ "csv": csv }).to_string();
        let refused = request(&body).unwrap().plan("c1".into(), 0);
        assert_eq!(
            refused.unwrap_err(),
            CampaignError::TooManyRows {
                rows: MAX_CAMPAIGN_ROWS + 1
            }
        );
        let fits = format!("to\n{}\n", rows[1..].join("\n"));
        let body = serde_json::json!({ "csv": fits }).to_string();
        let (campaign, _) = request(&body).unwrap().plan("c1".into(), 0).unwrap();
        assert_eq!(campaign.entries.len() as u64, MAX_CAMPAIGN_ROWS);
    }

    #[test]
    fn plans_the_good_rows_and_reports_the_bad() {
        let (campaign, created) = request(
            r#"{"csv": "to,country\n+15551230001,US\nbad,US\n+15551230001,US\n",
                "calls_per_second": 5, "retry": {"attempts": 2, "backoff_secs": 1}}"#,
        )
        .unwrap()
        .plan("c1".into(), 42)
        .unwrap();
        assert_eq!(campaign.entries.len(), 1);
        assert_eq!(campaign.rejected, 1);
        assert_eq!(campaign.created_ms, 42);
        assert_eq!(created.queued, 1);
        assert_eq!(created.duplicates, 1);
        assert_eq!(created.rejected[0].line, 3);
        let settings: CampaignSettings = serde_json::from_str(&campaign.settings).unwrap();
        assert_eq!(settings.calls_per_second, 5.0);
        assert_eq!(settings.retry.attempts, 2);
    }

    #[test]
    fn refuses_what_cannot_run() {
        assert!(request(r#"{"numbers": [], "colour": 1}"#).is_err());
        assert!(request(r#"{"numbers": [{"to": "+15551230001", "x": 1}]}"#).is_err());
        let plan = |json| request(json).unwrap().plan("c".into(), 0).map(|_| ());
        assert_eq!(plan(r#"{}"#), Err(CampaignError::Numbers));
        assert!(matches!(
            plan(r#"{"numbers": [{"to": "555"}]}"#),
            Err(CampaignError::NoNumbers { rejected }) if rejected.len() == 1
        ));
        assert!(matches!(
            plan(r#"{"numbers": [{"to": "+15551230001"}], "max_concurrent": 0}"#),
            Err(CampaignError::Settings(_))
        ));
        assert_eq!(
            plan(r#"{"numbers": [{"to": "+15551230001"}], "webhook_url": "file:///etc/passwd"}"#),
            Err(CampaignError::Settings(SettingsError::WebhookUrl(
                crate::outbound::BadWebhookUrl
            )))
        );
        assert_eq!(
            plan(r#"{"numbers": [{"to": "+15551230001"}], "webhook_url": "https://h.example/x"}"#),
            Ok(())
        );
        assert!(matches!(
            plan(
                r#"{"numbers": [{"to": "+15551230001"}],
                     "window": {"time_zone": "Nowhere/X", "start_hour": 9, "end_hour": 17}}"#
            ),
            Err(CampaignError::Window(_))
        ));
    }
}
