//! What a machine answering an outbound call calls for, under the
//! pipeline's `machine_detection` policy: nothing, a hang-up, or a
//! voicemail left once the greeting is over.

use crate::store::CallRecord;

use super::config::MachinePolicy;
use super::twilio_dialer::TwilioDialer;

/// What a machine's answer calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MachineAction {
    /// Nothing (a person, no detection, or not yet the beep).
    None,
    /// Hang up.
    HangUp,
    /// Speak this into the call, then hang up.
    LeaveVoicemail(String),
}

impl MachinePolicy {
    /// Whether an `AnsweredBy` value says a machine (or a fax) answered.
    pub fn is_machine(answered_by: &str) -> bool {
        answered_by.starts_with("machine") || answered_by == "fax"
    }

    /// Whether an `AnsweredBy` value says the machine's greeting is over
    /// (the moment to leave a message).
    pub fn is_message_end(answered_by: &str) -> bool {
        answered_by.starts_with("machine_end")
    }
}

impl TwilioDialer {
    /// What to do now that `call`'s answerer is known, under the pipeline's
    /// policy; each call's voicemail is left once per process.
    pub fn machine_action(&self, call: &CallRecord) -> MachineAction {
        let answered_by = call
            .outbound
            .as_ref()
            .and_then(|outbound| outbound.answered_by.as_deref())
            .unwrap_or("");
        if !MachinePolicy::is_machine(answered_by) || call.status.is_final() {
            return MachineAction::None;
        }
        match &self.section.machine_detection {
            MachinePolicy::Off => MachineAction::None,
            // A fax takes no voicemail and hears no agent.
            _ if answered_by == "fax" => MachineAction::HangUp,
            MachinePolicy::HangUp => MachineAction::HangUp,
            MachinePolicy::Voicemail { message } if MachinePolicy::is_message_end(answered_by) => {
                let first = self
                    .voicemails
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(call.call_id.clone());
                if first {
                    MachineAction::LeaveVoicemail(message.clone())
                } else {
                    MachineAction::None
                }
            }
            MachinePolicy::Voicemail { .. } => MachineAction::None,
        }
    }

    /// Lets `call_id`'s voicemail be tried again (its session was not here).
    pub fn voicemail_not_left(&self, call_id: &str) {
        self.voicemails
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(call_id);
    }
}
