//! What `run` and `serve` would refuse across a file's sections when they
//! set up the agent runtime, the dialler or WebRTC, found at load instead,
//! so that `voxpipe check` refuses it too and every refusal names the file,
//! the line and the key: [`section_problems`] when the file is parsed,
//! [`start_problems`] when it is probed (as `check`, `run` and `serve` do).
//! Only the file is judged: a `*_env` variable that is not set is left to
//! the start, as secrets are not needed to check.

use crate::pipeline::BuildError;

use super::config::{PipelineConfig, Sections};

/// One refusal: the dotted key to blame and why.
pub(super) struct Problem {
    pub(super) key: String,
    pub(super) message: String,
}

impl Problem {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Everything the start would refuse in `sections`, in the file's order of
/// sections.
pub(super) fn section_problems(sections: &Sections) -> Vec<Problem> {
    let mut found = Vec::new();
    webrtc(sections, &mut found);
    agent(sections, &mut found);
    outbound(sections, &mut found);
    found
}

/// `[transport.webrtc] ice_servers`: each entry's credential keys.
fn webrtc(sections: &Sections, found: &mut Vec<Problem>) {
    for (index, server) in sections.transport.webrtc.ice_servers.iter().enumerate() {
        if !server.credentials_fit() {
            found.push(Problem::new(
                "transport.webrtc.ice_servers",
                format!(
                    "entry {index}: a TURN server needs `username` and one of `credential_env` \
                     or `secret_env`, and no entry may set both"
                ),
            ));
        }
    }
}

/// The agent's sections: `[learning]` embeds with `[context.skills]`, the
/// optimiser acts on the evaluator's verdicts, and every model endpoint's
/// `connection` table is usable.
fn agent(sections: &Sections, found: &mut Vec<Problem>) {
    let prefix = &sections.context.prefix;
    if sections.context.cluster && !braces_close(prefix) {
        // Redis Cluster hashes the part between a key's first `{` and the
        // next `}`: an unclosed brace would tag some keys and not others,
        // and a script's keys would land in different slots. (A closed
        // pair puts every key in one slot: unbalanced, but it works; the
        // runtime warns.)
        found.push(Problem::new(
            "context.prefix",
            format!(
                "{prefix:?} has a brace without its pair: in a Redis Cluster it would put keys a \
                 script needs together in different slots"
            ),
        ));
    }
    if sections
        .context
        .path
        .as_ref()
        .is_some_and(|path| path.as_os_str().is_empty())
    {
        found.push(Problem::new(
            "context.path",
            "expected a file for the embedded store, not an empty path",
        ));
    }
    if let Some(problem) = sections
        .storage
        .as_ref()
        .and_then(crate::objects::endpoint_problem)
    {
        found.push(Problem::new("storage.endpoint", problem));
    }
    let min_calls = sections.context.tactic_min_calls;
    if min_calls > crate::store::MAX_CALLS_NOTED_PER_TACTIC as u64 {
        // Only this many calls are noted a tactic: a higher bar is never
        // reached, and every winning tactic would leave the prompts.
        found.push(Problem::new(
            "context.tactic_min_calls",
            format!(
                "{min_calls} can never be reached: a tactic notes at most {} calls",
                crate::store::MAX_CALLS_NOTED_PER_TACTIC
            ),
        ));
    }
    if let Some(learning) = &sections.learning
        && let Err(problem) = learning.check(sections.context.skills.is_some())
    {
        found.push(Problem::new(problem.key, problem.message));
    }
    let evaluator = sections.evaluator.as_ref().filter(|e| e.enabled);
    let optimiser = sections.optimiser.as_ref().filter(|o| o.enabled);
    let mut endpoint = |section: &str, built: Result<_, BuildError>| {
        if let Err(err) = built {
            found.push(Problem::new(
                format!("{section}.connection"),
                err.to_string(),
            ));
        }
    };
    if let Some(section) = evaluator {
        endpoint("evaluator", section.endpoint(None).map(drop));
    }
    if let Some(section) = optimiser {
        endpoint("optimiser", section.endpoint(None).map(drop));
    }
    if let Some(section) = &sections.context.skills {
        endpoint("context.skills", section.endpoint(None).map(drop));
    }
    if let Some(section) = sections.learning.as_ref().filter(|l| l.enabled) {
        endpoint("learning", section.endpoint(None).map(drop));
    }
    if let Some(section) = sections.extraction.as_ref().filter(|e| e.enabled) {
        endpoint("extraction", section.endpoint(None).map(drop));
    }
}

/// Whether every `{` in `prefix` is closed by a later `}` and no `}` comes
/// first.
fn braces_close(prefix: &str) -> bool {
    let mut open = false;
    for c in prefix.chars() {
        match c {
            '{' if open => return false,
            '{' => open = true,
            '}' if !open => return false,
            '}' => open = false,
            _ => {}
        }
    }
    !open
}

/// `[outbound]`: a call's lost-session end waits for a live writer's last
/// retries.
fn outbound(sections: &Sections, found: &mut Vec<Problem>) {
    if let Some(outbound) = &sections.outbound
        && let Some(message) =
            outbound.grace_problem(sections.context.flush_timeout_secs.duration())
    {
        found.push(Problem::new("outbound.lost_session_grace_secs", message));
    }
}

/// What the start of `run`, `serve` or `call` refuses in a file that
/// parses, for sections a program may complete itself when it uses the
/// library (its own public host, its own judge): the optimiser acts on the
/// evaluator's verdicts; the dialler places calls through Twilio's REST API
/// with the account's credentials and gives Twilio this server's public
/// host for the call's webhooks.
pub(super) fn start_problems(config: &PipelineConfig) -> Vec<Problem> {
    let mut found = Vec::new();
    let judged = config.evaluator.as_ref().is_some_and(|e| e.enabled);
    if config.optimiser.as_ref().is_some_and(|o| o.enabled) && !judged {
        found.push(Problem::new(
            "optimiser.enabled",
            "[optimiser] needs an enabled [evaluator]: it acts on failed verdicts",
        ));
    }
    if config.outbound.is_none() {
        return found;
    }
    if config.server.public_host.is_none() {
        found.push(Problem::new(
            "outbound",
            "[outbound] needs `[server] public_host`: the host Twilio reaches this server at",
        ));
    }
    let twilio = &config.transport.twilio;
    for (key, set) in [
        ("account_sid_env", twilio.account_sid_env.is_some()),
        ("auth_token_env", twilio.auth_token_env.is_some()),
    ] {
        if !set {
            found.push(Problem::new(
                "outbound",
                format!(
                    "[outbound] needs `[transport.twilio] {key}`: calls are placed and verified \
                     with the account's credentials"
                ),
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::braces_close;

    #[test]
    fn a_prefix_s_braces_close_in_pairs() {
        for closed in ["", "acme:", "{acme}:", "a{b}c{d}:"] {
            assert!(braces_close(closed), "{closed}");
        }
        for open in ["acme{", "}acme", "{a{b}}", "a}b{"] {
            assert!(!braces_close(open), "{open}");
        }
    }
}
