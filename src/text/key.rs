//! [`ConversationKey`]: which conversation a message belongs to.

use std::fmt;

use ring::digest;

use crate::store::PhoneHasher;

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
/// `{channel}:{hash}` (32 hex digits), so that neither store keys nor logs
/// carry a phone number.
///
/// With the deployment's phone-hash salt ([`ConversationKey::keyed`]) the
/// hash is an HMAC-SHA-256 of the participants under the salt: it cannot
/// be turned back into the numbers by hashing every number without the
/// salt. Without a salt it is their plain SHA-256 ([`ConversationKey::new`]),
/// which a reader of the store can reverse for phone numbers (their
/// keyspace is small). A keyed key also carries that unsalted one as its
/// [`legacy`](ConversationKey::legacy) key, under which a conversation
/// opened before salting was stored: the store moves such a conversation
/// to the keyed key at its next message.
#[derive(Clone, PartialEq, Eq)]
pub struct ConversationKey {
    channel: Channel,
    key: String,
    legacy: Option<String>,
}

/// What the keyed hash is of: the participants of a text conversation
/// (never equal to what the same salt hashes for another use).
const DOMAIN: &str = "voxpipe text conversation";

impl ConversationKey {
    /// The conversation between `participants` (e.g. the user's and the
    /// agent's addresses) on `channel`, unsalted (a deployment without a
    /// phone-hash salt; see [`keyed`](Self::keyed)).
    pub fn new(channel: Channel, participants: &[&str]) -> Self {
        let mut ctx = digest::Context::new(&digest::SHA256);
        for participant in participants {
            ctx.update(participant.as_bytes());
            ctx.update(b"\n");
        }
        ConversationKey {
            channel,
            key: key_of(channel, ctx.finish().as_ref()),
            legacy: None,
        }
    }

    /// The conversation between `participants` on `channel`, keyed with
    /// `hasher` (the deployment's phone-hash salt) when there is one, its
    /// unsalted key kept as the [`legacy`](Self::legacy) one; without a
    /// hasher, as [`new`](Self::new).
    pub fn keyed(channel: Channel, participants: &[&str], hasher: Option<&PhoneHasher>) -> Self {
        let unsalted = ConversationKey::new(channel, participants);
        let Some(hasher) = hasher else {
            return unsalted;
        };
        let tag = hasher.keyed(DOMAIN, participants);
        ConversationKey {
            channel,
            key: key_of(channel, tag.as_ref()),
            legacy: Some(unsalted.key),
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

    /// The unsalted `{channel}:{hash}` of a keyed key: where a conversation
    /// opened before the deployment's keys were salted is stored, until its
    /// next message moves it. `None` for an unsalted key.
    pub fn legacy(&self) -> Option<&str> {
        self.legacy.as_deref()
    }
}

/// `{channel}:{hash}`, the hash the first 32 hex digits of `digest`.
fn key_of(channel: Channel, digest: &[u8]) -> String {
    let hash: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}:{hash}", channel.name())
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
        assert_eq!(a.legacy(), None);
    }

    const PARTIES: [&str; 2] = ["whatsapp:+15551234567", "whatsapp:+15557654321"];

    #[test]
    fn a_salted_key_is_not_the_unsalted_hash_and_keeps_it_as_its_legacy_key() {
        let unsalted = ConversationKey::new(Channel::WhatsApp, &PARTIES);
        let hasher = PhoneHasher::new(b"pepper");
        let salted = ConversationKey::keyed(Channel::WhatsApp, &PARTIES, Some(&hasher));
        assert_ne!(salted.as_str(), unsalted.as_str());
        assert!(salted.as_str().starts_with("whatsapp:"));
        assert_eq!(salted.as_str().len(), unsalted.as_str().len());
        assert_eq!(salted.legacy(), Some(unsalted.as_str()));
        // Stable: the same salt and participants, the same key.
        let again = ConversationKey::keyed(Channel::WhatsApp, &PARTIES, Some(&hasher));
        assert_eq!(again, salted);
    }

    #[test]
    fn two_salts_give_two_keys_and_no_salt_gives_the_unsalted_one() {
        let a = PhoneHasher::new(b"deployment-a");
        let b = PhoneHasher::new(b"deployment-b");
        let key_a = ConversationKey::keyed(Channel::Sms, &PARTIES, Some(&a));
        let key_b = ConversationKey::keyed(Channel::Sms, &PARTIES, Some(&b));
        assert_ne!(key_a.as_str(), key_b.as_str());
        assert_eq!(key_a.legacy(), key_b.legacy());
        let plain = ConversationKey::keyed(Channel::Sms, &PARTIES, None);
        assert_eq!(plain, ConversationKey::new(Channel::Sms, &PARTIES));
        assert_eq!(plain.legacy(), None);
    }
}
