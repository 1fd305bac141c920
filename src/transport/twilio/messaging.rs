//! Twilio Messaging (SMS and WhatsApp) without I/O: an incoming message's
//! webhook form, and answers cut to what a message may hold.
//!
//! Twilio posts an incoming message as a form (`MessageSid`, `AccountSid`,
//! `From`, `To`, `Body`, `NumMedia`, `MediaUrl{N}`, and for WhatsApp
//! `ProfileName` and `WaId`); WhatsApp addresses are `whatsapp:+E.164`. A
//! message body holds at most 1,600 characters as Twilio counts them, in
//! UTF-16 code units (an emoji outside the Basic Multilingual Plane is
//! two), so a longer answer goes out as several messages, cut between
//! words where it can be.

/// The most characters one message body may hold, counted as Twilio
/// counts them: UTF-16 code units (see [`utf16_len`]).
pub const MAX_MESSAGE_CHARS: usize = 1_600;

/// Twilio's opt-out keywords: a message that is one of them (any case,
/// trimmed) unsubscribes its sender, and Twilio refuses further messages
/// to them (error 21610) until they opt back in.
const OPT_OUT_KEYWORDS: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "OPTOUT",
    "REVOKE",
];

/// A message that is one of the keywords Twilio answers itself (its
/// default opt-out handling, or Advanced Opt-Out), so no agent should.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Keyword {
    /// The sender opts out: Twilio refuses further messages to them
    /// (error 21610) until they opt back in.
    OptOut,
    /// The sender opts back in.
    OptIn,
    /// The sender asks for help.
    Help,
}

/// An incoming message, as the webhook's form gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMessage {
    /// `MessageSid`: the message's id, the same on every retry.
    pub message_sid: String,
    /// `AccountSid`.
    pub account_sid: Option<String>,
    /// `From`: the user's address (`+1…` or `whatsapp:+1…`).
    pub from: String,
    /// `To`: the agent's address.
    pub to: String,
    /// `Body`: the text (may be empty).
    pub body: String,
    /// `NumMedia`: how many media items came with it.
    pub num_media: usize,
    /// `OptOutType` (Twilio's Advanced Opt-Out: `STOP`, `START`, `HELP`).
    pub opt_out_type: Option<String>,
}

/// Why a webhook form is not an incoming message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the form has no `{0}`")]
pub struct MissingField(pub &'static str);

impl IncomingMessage {
    /// The message a webhook `form` describes.
    pub fn from_form(form: &[(String, String)]) -> Result<Self, MissingField> {
        let field = |name: &str| {
            form.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        let required = |name: &'static str| {
            field(name)
                .filter(|v| !v.trim().is_empty())
                .map(str::to_owned)
                .ok_or(MissingField(name))
        };
        Ok(IncomingMessage {
            message_sid: required("MessageSid")?,
            account_sid: field("AccountSid").map(str::to_owned),
            from: required("From")?,
            to: required("To")?,
            body: field("Body").unwrap_or_default().to_owned(),
            num_media: field("NumMedia")
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0),
            opt_out_type: field("OptOutType").map(str::to_owned),
        })
    }

    /// The keyword Twilio answers this message with itself, if it is one:
    /// Advanced Opt-Out's `OptOutType` (`STOP`, `START`, `HELP`), or, for
    /// SMS (where Twilio handles the keywords by default), a message that
    /// is one of Twilio's keywords alone (any case, trimmed). No agent
    /// should answer: Twilio sends its own compliance answer (and would
    /// refuse an answer to an opted-out sender anyway). WhatsApp has no
    /// default keyword handling: there "End", "Cancel" or "Help" may be an
    /// answer, so only `OptOutType` counts.
    pub fn keyword(&self) -> Option<Keyword> {
        let flagged = self.opt_out_type.as_deref().and_then(|kind| {
            let kind = kind.trim();
            [
                ("STOP", Keyword::OptOut),
                ("START", Keyword::OptIn),
                ("HELP", Keyword::Help),
            ]
            .into_iter()
            .find(|(name, _)| kind.eq_ignore_ascii_case(name))
            .map(|(_, keyword)| keyword)
        });
        if flagged.is_some() || self.is_whatsapp() {
            return flagged;
        }
        // By its body alone only the opt-out words: after one, Twilio
        // refuses every message to the sender. An opt-in or help word
        // (YES, START, HELP) is the agent's to answer unless Twilio flagged
        // it: it is handled by Twilio only on some number types, and "yes"
        // is as often the answer to the agent's question.
        let body = self.body.trim();
        OPT_OUT_KEYWORDS
            .iter()
            .any(|k| body.eq_ignore_ascii_case(k))
            .then_some(Keyword::OptOut)
    }

    /// Whether the sender is opting out ([`Keyword::OptOut`]).
    pub fn is_opt_out(&self) -> bool {
        self.keyword() == Some(Keyword::OptOut)
    }

    /// Whether it came through WhatsApp.
    pub fn is_whatsapp(&self) -> bool {
        self.from.starts_with("whatsapp:")
    }
}

/// How long `text` is as Twilio counts a message body: in UTF-16 code
/// units.
pub fn utf16_len(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// `text` as message bodies of at most `max` UTF-16 code units each (as
/// Twilio counts them), cut at the last whitespace before the limit when
/// there is one in its second half (else mid-word, never inside a
/// character), every part trimmed and none empty.
pub fn split_message(text: &str, max: usize) -> Vec<String> {
    let max = max.max(2);
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        // The byte where the part must end: after the last character that
        // fits.
        let mut units = 0;
        let limit = rest.char_indices().find_map(|(at, c)| {
            units += c.len_utf16();
            (units > max).then_some(at)
        });
        let Some(limit) = limit else {
            parts.push(rest.to_owned());
            break;
        };
        let head = &rest[..limit];
        let cut = head
            .rfind(char::is_whitespace)
            .filter(|&at| utf16_len(&head[..at]) >= max / 2)
            .unwrap_or(limit);
        parts.push(rest[..cut].trim_end().to_owned());
        rest = rest[cut..].trim_start();
    }
    parts
}

/// A message to send (`POST …/Messages.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateMessage<'a> {
    /// The recipient (`+1…` or `whatsapp:+1…`).
    pub to: &'a str,
    /// The sender: the number (or WhatsApp sender) the message came to.
    pub from: &'a str,
    /// The text, at most [`MAX_MESSAGE_CHARS`] UTF-16 code units.
    pub body: &'a str,
    /// Where Twilio reports the message's status (`StatusCallback`): how a
    /// message it took and then failed to deliver becomes known.
    pub status_callback: Option<&'a str>,
}

impl CreateMessage<'_> {
    /// The form, as Twilio's Message resource names its parameters.
    pub fn form(&self) -> Vec<(&'static str, &str)> {
        let mut form = vec![("To", self.to), ("From", self.from), ("Body", self.body)];
        if let Some(url) = self.status_callback {
            form.push(("StatusCallback", url));
        }
        form
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::form_fields as form;

    #[test]
    fn a_whatsapp_form_becomes_a_message() {
        let message = IncomingMessage::from_form(&form(&[
            ("MessageSid", "SM123"),
            ("AccountSid", "AC1"),
            ("From", "whatsapp:+15551234567"),
            ("To", "whatsapp:+15557654321"),
            ("Body", "hello"),
            ("NumMedia", "0"),
            ("ProfileName", "Ann"),
            ("WaId", "15551234567"),
        ]))
        .unwrap();
        assert!(message.is_whatsapp());
        assert_eq!(message.body, "hello");
        assert_eq!(message.num_media, 0);
        assert_eq!(
            IncomingMessage::from_form(&form(&[("From", "+1"), ("To", "+2")])),
            Err(MissingField("MessageSid"))
        );
    }

    #[test]
    fn long_answers_are_cut_between_words() {
        assert_eq!(split_message("  short  ", 10), ["short"]);
        assert_eq!(split_message("aaaa bbbb cccc", 10), ["aaaa bbbb", "cccc"]);
        assert_eq!(split_message("abcdefghijkl", 5), ["abcde", "fghij", "kl"]);
        let long = "word ".repeat(1_000);
        let parts = split_message(&long, MAX_MESSAGE_CHARS);
        assert_eq!(parts.len(), 4);
        assert!(parts.iter().all(|p| p.chars().count() <= MAX_MESSAGE_CHARS));
        assert_eq!(parts.join(" "), long.trim());
        assert!(split_message("", 10).is_empty());
        let accents = "é".repeat(7);
        assert_eq!(split_message(&accents, 3), ["ééé", "ééé", "é"]);
    }

    #[test]
    fn parts_are_counted_in_utf16_units_as_twilio_counts_them() {
        // An emoji is one character but two units: 1,000 of them are 2,000
        // units, over one message's limit.
        let emoji = "😀".repeat(1_000);
        assert_eq!(utf16_len(&emoji), 2_000);
        let parts = split_message(&emoji, MAX_MESSAGE_CHARS);
        assert_eq!(parts.len(), 2);
        assert_eq!(utf16_len(&parts[0]), MAX_MESSAGE_CHARS);
        assert_eq!(parts.concat(), emoji);
        // Near the limit, with words: every part fits, none is cut inside
        // a character, nothing is lost.
        let answer = format!("{} {}", "a".repeat(1_500), "🍎 ".repeat(60));
        let parts = split_message(&answer, MAX_MESSAGE_CHARS);
        assert_eq!(parts.len(), 2, "{} units", utf16_len(&answer));
        assert!(parts.iter().all(|p| utf16_len(p) <= MAX_MESSAGE_CHARS));
        assert_eq!(parts.join(" "), answer.trim());
        // An odd limit never splits a pair.
        assert_eq!(split_message("😀😀😀", 3), ["😀", "😀", "😀"]);
    }

    /// A message from `from` saying `body`, flagged by Advanced Opt-Out
    /// with `flag`.
    fn message(from: &str, body: &str, flag: Option<&str>) -> IncomingMessage {
        let mut form = vec![
            ("MessageSid".to_owned(), "SM1".to_owned()),
            ("From".to_owned(), from.to_owned()),
            ("To".to_owned(), "+15557650002".to_owned()),
            ("Body".to_owned(), body.to_owned()),
        ];
        if let Some(flag) = flag {
            form.push(("OptOutType".to_owned(), flag.to_owned()));
        }
        IncomingMessage::from_form(&form).unwrap()
    }

    #[test]
    fn opt_outs_are_the_keyword_alone_by_sms_and_the_flag_by_whatsapp() {
        assert!(message("+15551230001", " Stop ", None).is_opt_out());
        assert!(message("+15551230001", "unsubscribe", None).is_opt_out());
        assert!(!message("+15551230001", "please stop calling", None).is_opt_out());
        assert!(!message("whatsapp:+15551230001", "Cancel", None).is_opt_out());
        assert!(message("whatsapp:+15551230001", "Cancel", Some("STOP")).is_opt_out());
        assert!(!message("+15551230001", "start", Some("START")).is_opt_out());
    }

    #[test]
    fn help_and_opt_in_keywords_are_twilios_only_when_it_flagged_them() {
        let message =
            |from: &str, body: &str, flag: Option<&str>| message(from, body, flag).keyword();
        let sms = "+15551230001";
        // Unflagged, they are the user's: "yes" answers the agent.
        for body in ["HELP", " info ", "Start", "unstop", "yes", "I need help"] {
            assert_eq!(message(sms, body, None), None, "{body}");
        }
        assert_eq!(message(sms, " stop ", None), Some(Keyword::OptOut));
        assert_eq!(message(sms, "HELP", Some("HELP")), Some(Keyword::Help));
        // Advanced Opt-Out's flag, whatever the body and the channel.
        assert_eq!(message(sms, "start", Some("START")), Some(Keyword::OptIn));
        let whatsapp = "whatsapp:+15551230001";
        assert_eq!(message(whatsapp, "Help", None), None);
        assert_eq!(
            message(whatsapp, "ayuda", Some("HELP")),
            Some(Keyword::Help)
        );
    }
}
