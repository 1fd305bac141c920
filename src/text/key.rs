//! [`ConversationKey`]: which conversation a message belongs to.

use std::fmt;

use ring::digest;

/// Where a text conversation happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// SMS through Twilio.
    Sms,
    /// WhatsApp through Twilio (`whatsapp:+…` addresses).
    WhatsApp,
    /// `POST /api/chat` and `voxpipe chat`.
    Chat,
}

impl Channel {
    /// The name stored as the call's transport: `sms`, `whatsapp`, `chat`.
    pub fn name(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::WhatsApp => "whatsapp",
            Channel::Chat => "chat",
        }
    }
}

/// A conversation's identity: its channel and participants, as
/// `{channel}:{hash}` (32 hex digits of the SHA-256 of the participants),
/// so that neither store keys nor logs carry a phone number.
#[derive(Clone, PartialEq, Eq)]
pub struct ConversationKey {
    channel: Channel,
    key: String,
}

impl ConversationKey {
    /// The conversation between `participants` (e.g. the user's and the
    /// agent's addresses) on `channel`.
    pub fn new(channel: Channel, participants: &[&str]) -> Self {
        let mut ctx = digest::Context::new(&digest::SHA256);
        for participant in participants {
            ctx.update(participant.as_bytes());
            ctx.update(b"\n");
        }
        let hash: String = ctx.finish().as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        ConversationKey {
            channel,
            key: format!("{}:{hash}", channel.name()),
        }
    }

    /// The channel.
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// `{channel}:{hash}`.
    pub fn as_str(&self) -> &str {
        &self.key
    }
}

impl fmt::Debug for ConversationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_the_channel_and_hide_the_participants() {
        let a = ConversationKey::new(
            Channel::WhatsApp,
            &["whatsapp:+15551234567", "whatsapp:+1555"],
        );
        let b = ConversationKey::new(
            Channel::WhatsApp,
            &["whatsapp:+15551234567", "whatsapp:+1555"],
        );
        let c = ConversationKey::new(Channel::Sms, &["whatsapp:+15551234567", "whatsapp:+1555"]);
        assert_eq!(a, b);
        assert_ne!(a.as_str(), c.as_str());
        assert!(a.as_str().starts_with("whatsapp:"));
        assert!(!a.as_str().contains("555"));
        assert_eq!(a.as_str().len(), "whatsapp:".len() + 32);
    }
}
