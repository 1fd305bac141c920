//! `[outbound]`: placing calls from this pipeline.
//!
//! ```toml
//! [outbound]
//! from = "+15557654321"              # the caller id (E.164), unless a call names its own
//! timeout_secs = 30                  # ring this long before no-answer (Twilio's `Timeout`; 5 to 600)
//! machine_detection = "voicemail"    # "off" (default), "hang_up" or "voicemail"
//! voicemail_message = "Hi, this is Acme. Please call us back."
//! amd = "sync"                       # "sync" (default) or "async" (AsyncAmd)
//! phone_hash_salt_env = "VOXPIPE_PHONE_SALT"
//! rate_limit_hours = 24              # one connected call per number per this long; 0: no limit
//! lost_session_grace_secs = 150      # a final status for a started call nobody ended: wait this long, then end it here
//!
//! [transport.twilio]
//! account_sid_env = "TWILIO_ACCOUNT_SID"
//! auth_token_env = "TWILIO_AUTH_TOKEN"
//! ```
//!
//! The ring timeout defaults to 30 s, not Twilio's 60: most voicemail boxes
//! answer after 20 to 30 s of ringing, and a call left ringing longer mostly
//! reaches them. Without `phone_hash_salt_env`, the auth token salts the
//! phone hashes: every server of a deployment shares it, so their hashes
//! (and rate-limit keys) agree; rotating it starts new hashes. A
//! `phone_hash_salt_env` naming a variable that is not set is refused at
//! start, by the dialler and the agent runtime alike (both read it through
//! [`PhoneSalt`](crate::store::PhoneSalt)), never replaced by the token.
//!
//! The lost-session grace must be at least `[context] flush_timeout_secs`
//! (a pipeline file setting less is refused): a live session's writer
//! retries its last turns and its end for that long after the call ends
//! (a store blip at the call's end), and a call ended before it finishes
//! would be judged and posted with a truncated transcript. The default is
//! the default flush timeout (120 s) and a 30 s margin.

use serde::Deserialize;

use crate::config::Seconds;

use super::phone::PhoneNumber;

/// `[outbound]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawOutbound")]
pub struct OutboundSection {
    /// The caller id.
    pub from: PhoneNumber,
    /// How long Twilio lets the phone ring, in whole seconds.
    pub timeout_secs: u32,
    /// What a machine answering means.
    pub machine_detection: MachinePolicy,
    /// How detection runs, when it does.
    pub amd: AmdMode,
    /// The variable holding the phone hashes' salt.
    pub phone_hash_salt_env: Option<String>,
    /// How long a number that was reached is not called again, in hours
    /// (0: only one live call at a time).
    pub rate_limit_hours: u32,
    /// How long a final status callback for a call that started but was
    /// never ended (its server died mid-call) waits for a live session
    /// elsewhere to end it, before this server ends it and queues its
    /// after-call work.
    pub lost_session_grace: std::time::Duration,
}

/// What to do when a machine answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachinePolicy {
    /// No detection: whoever answers gets the agent.
    Off,
    /// Detect, and hang up on a machine (`MachineDetection=Enable`).
    HangUp,
    /// Detect, wait for the beep (`MachineDetection=DetectMessageEnd`),
    /// speak the message through the TTS, hang up.
    Voicemail {
        /// What to leave.
        message: String,
    },
}

impl MachinePolicy {
    /// Twilio's `MachineDetection` for this policy.
    pub fn twilio_mode(&self) -> Option<&'static str> {
        match self {
            MachinePolicy::Off => None,
            MachinePolicy::HangUp => Some("Enable"),
            MachinePolicy::Voicemail { .. } => Some("DetectMessageEnd"),
        }
    }
}

/// Whether detection holds the call (`sync`: the TwiML runs once it is
/// done) or runs beside it (`async`: the stream starts at once, the answer
/// comes to `AsyncAmdStatusCallback`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AmdMode {
    /// Twilio's default.
    #[default]
    Sync,
    /// `AsyncAmd=true`.
    Async,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PolicyName {
    #[default]
    Off,
    HangUp,
    Voicemail,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutbound {
    from: PhoneNumber,
    #[serde(default = "default_timeout")]
    timeout_secs: Seconds<5_000, 600>,
    #[serde(default)]
    machine_detection: PolicyName,
    #[serde(default)]
    voicemail_message: Option<String>,
    #[serde(default)]
    amd: AmdMode,
    #[serde(default)]
    phone_hash_salt_env: Option<String>,
    #[serde(default = "default_rate_limit_hours")]
    rate_limit_hours: u32,
    #[serde(default = "default_lost_session_grace")]
    lost_session_grace_secs: Seconds<0, 600>,
}

fn default_lost_session_grace() -> Seconds<0, 600> {
    Seconds::from_millis(150_000)
}

fn default_timeout() -> Seconds<5_000, 600> {
    Seconds::from_millis(30_000)
}

fn default_rate_limit_hours() -> u32 {
    24
}

impl TryFrom<RawOutbound> for OutboundSection {
    type Error = String;

    fn try_from(raw: RawOutbound) -> Result<Self, Self::Error> {
        let message = raw
            .voicemail_message
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty());
        let machine_detection = match (raw.machine_detection, message) {
            (PolicyName::Off, None) => MachinePolicy::Off,
            (PolicyName::HangUp, None) => MachinePolicy::HangUp,
            (PolicyName::Voicemail, Some(message)) => MachinePolicy::Voicemail { message },
            (PolicyName::Voicemail, None) => {
                return Err(
                    "machine_detection = \"voicemail\" needs a voicemail_message".to_owned(),
                );
            }
            (_, Some(_)) => {
                return Err(
                    "voicemail_message is only spoken with machine_detection = \"voicemail\""
                        .to_owned(),
                );
            }
        };
        if raw.rate_limit_hours > 24 * 365 {
            return Err("rate_limit_hours is at most a year (8760)".to_owned());
        }
        Ok(OutboundSection {
            from: raw.from,
            timeout_secs: raw
                .timeout_secs
                .duration()
                .as_secs()
                .try_into()
                .unwrap_or(600),
            machine_detection,
            amd: raw.amd,
            phone_hash_salt_env: raw.phone_hash_salt_env,
            rate_limit_hours: raw.rate_limit_hours,
            lost_session_grace: raw.lost_session_grace_secs.duration(),
        })
    }
}

impl OutboundSection {
    /// Why `lost_session_grace_secs` is too short for sessions whose
    /// writers retry for `flush_timeout` after their call ends, if it is.
    /// A flush timeout past the most the grace may be (600 s) asks only
    /// for that most.
    pub fn grace_problem(&self, flush_timeout: std::time::Duration) -> Option<String> {
        let needed = flush_timeout.min(std::time::Duration::from_secs(600));
        (self.lost_session_grace < needed).then(|| {
            format!(
                "expected at least {} s ([context] flush_timeout_secs, at most 600): a live \
                 session's writer retries its last turns for that long, and a call ended sooner \
                 would be judged with a truncated transcript",
                needed.as_secs_f64()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<OutboundSection, String> {
        toml::from_str::<OutboundSection>(toml).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_policies() {
        let section = parse(r#"from = "+15557654321""#).unwrap();
        assert_eq!(section.timeout_secs, 30);
        assert_eq!(section.machine_detection, MachinePolicy::Off);
        assert_eq!(section.amd, AmdMode::Sync);
        assert_eq!(section.rate_limit_hours, 24);
        let voicemail = parse(
            r#"from = "+15557654321"
machine_detection = "voicemail"
voicemail_message = "call us"
amd = "async""#,
        )
        .unwrap();
        assert_eq!(
            voicemail.machine_detection.twilio_mode(),
            Some("DetectMessageEnd")
        );
        assert_eq!(voicemail.amd, AmdMode::Async);
    }

    #[test]
    fn the_lost_session_grace_outlasts_a_writers_flush() {
        let flush = crate::agent::writer::WriterSettings::default().flush_timeout;
        let section = parse(r#"from = "+15557654321""#).unwrap();
        assert!(section.lost_session_grace > flush, "the default");
        assert_eq!(section.grace_problem(flush), None);
        let short = parse("from = \"+15557654321\"\nlost_session_grace_secs = 30").unwrap();
        let problem = short.grace_problem(flush).unwrap();
        assert!(problem.contains("at least 120 s"), "{problem}");
        // A flush past the grace's most asks only for the most.
        let most = parse("from = \"+15557654321\"\nlost_session_grace_secs = 600").unwrap();
        assert_eq!(
            most.grace_problem(std::time::Duration::from_secs(700)),
            None
        );
    }

    #[test]
    fn mistakes_are_named() {
        assert!(parse(r#"from = "5551234""#).unwrap_err().contains("E.164"));
        assert!(
            parse("from = \"+15557654321\"\nmachine_detection = \"voicemail\"")
                .unwrap_err()
                .contains("voicemail_message")
        );
        assert!(
            parse("from = \"+15557654321\"\ntimeout_secs = 2")
                .unwrap_err()
                .contains("timeout_secs")
        );
        assert!(
            parse("from = \"+15557654321\"\nring = 3")
                .unwrap_err()
                .contains("ring")
        );
        assert!(
            parse("from = \"+15557654321\"\nmachine_detection = \"maybe\"")
                .unwrap_err()
                .contains("maybe")
        );
    }
}
