//! Text conversations: a pipeline's text path serving SMS, WhatsApp, the
//! chat API and the terminal chat.
//!
//! The text path is the pipeline's processors minus its audio ones
//! ([`text_path`]): what lies between speech-to-text and text-to-speech
//! (the user aggregator, the LLM with its tools, anything another part put
//! there) and the assistant aggregator. A text conversation is long-lived
//! and identified by its channel and participants ([`ConversationKey`]);
//! between two messages it is only a store record (`call:{id}` and its
//! transcript, `{text:active}:conversation:{key}`, its place in `text:active`), never
//! a running pipeline. Each message runs the text path once
//! ([`TextConversations::message`]): the history is read back from the
//! stored turns into the shared conversation, the message goes in as a
//! final transcript, the pipeline ends when the answer is done, and its
//! turns are written by the same session writer as a call's. The idle
//! sweep ([`TextConversations::run_sweeper`]) ends a conversation that has
//! heard nothing for `[text] idle_timeout_secs`: the call is completed and
//! its after-call hooks run (evaluation, extraction, webhook), as for a
//! call.

mod config;
mod conversations;
mod ends;
mod history;
mod key;
mod path;
mod reply;
mod tap;

pub use config::TextSection;
pub use conversations::{ConversationTurn, Inbound, TextConversations, TextError};
pub use ends::MAX_END_ATTEMPTS;
pub use history::{context_of, latest};
pub use key::{Channel, ConversationKey};
pub use path::{AUDIO_PROCESSOR_TYPES, text_path};
pub use reply::{Reply, TextEvent};
