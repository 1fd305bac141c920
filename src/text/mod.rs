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
//!
//! A message is first admitted ([`TextConversations::admit`]), without
//! waiting: it takes its place in its conversation's line then, so the
//! messages of a conversation are answered one at a time in the order
//! they were admitted, and a message past the bounds (8 waiting in its
//! conversation, `[text] max_messages_in_flight` in the process) is
//! refused at once rather than queued.

mod config;
mod conversations;
mod ends;
mod error;
mod history;
mod key;
mod path;
mod queue;
mod reply;
mod run;
mod tap;

pub use config::TextSection;
pub use conversations::{
    Admitted, ConversationTurn, Inbound, MAX_WAITING_PER_CONVERSATION, TextConversations,
};
pub use ends::MAX_END_ATTEMPTS;
pub use error::TextError;
pub use history::{context_of, latest};
pub use key::{Channel, ConversationKey};
pub use path::{AUDIO_PROCESSOR_TYPES, text_path};
pub use queue::Overloaded;
pub use reply::{Reply, TextEvent};
