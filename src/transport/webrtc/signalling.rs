//! The signalling messages, as Pipecat's SmallWebRTC clients send them.
//!
//! `POST /api/offer` carries an [`OfferRequest`] and is answered with an
//! [`Answer`]; `PATCH /api/offer` carries a [`PatchRequest`] of trickled
//! candidates. A session started by the server's `POST /start` offers the
//! same messages on its own path (`/sessions/{sessionId}/api/offer`). Field names are Pipecat's (`pc_id`, `restart_pc`,
//! `request_data`, also accepted as `requestData`; candidates with `sdp_mid`
//! and `sdp_mline_index`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The largest SDP accepted, in bytes. Browser offers are a few kilobytes.
pub const MAX_SDP_BYTES: usize = 64 * 1024;

/// The most candidates one `PATCH` may carry.
pub const MAX_PATCH_CANDIDATES: usize = 64;

/// `POST /api/offer`: a browser's offer.
#[derive(Debug, Clone, Deserialize)]
pub struct OfferRequest {
    /// The offer's SDP.
    pub sdp: String,
    /// Must be `offer`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The connection this offer renegotiates, from an earlier answer.
    #[serde(default)]
    pub pc_id: Option<String>,
    /// Replace the connection `pc_id` names with a new one (the browser
    /// made a new `RTCPeerConnection`); the session goes on.
    #[serde(default)]
    pub restart_pc: Option<bool>,
    /// Anything the page wants the session to know (a user, a segment);
    /// reaches processors as [`SessionSetup::custom_parameters`](crate::pipeline::SessionSetup).
    #[serde(default, alias = "requestData")]
    pub request_data: Option<Value>,
}

/// The answer to an offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The answer's SDP, with the server's candidates.
    pub sdp: String,
    /// Always `answer`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Names the connection in later requests.
    pub pc_id: String,
}

impl Answer {
    pub(crate) fn new(sdp: String, pc_id: &str) -> Self {
        Answer {
            sdp,
            kind: "answer".to_owned(),
            pc_id: pc_id.to_owned(),
        }
    }
}

/// `PATCH /api/offer`: candidates the browser found after its offer.
#[derive(Debug, Clone, Deserialize)]
pub struct PatchRequest {
    /// The connection, from the answer.
    pub pc_id: String,
    /// The candidates.
    pub candidates: Vec<CandidatePatch>,
}

/// One trickled ICE candidate.
#[derive(Debug, Clone, Deserialize)]
pub struct CandidatePatch {
    /// The `candidate:` attribute; empty for end-of-candidates.
    pub candidate: String,
    /// The media section's `mid`.
    #[serde(default)]
    pub sdp_mid: Option<String>,
    /// The media section's index.
    #[serde(default)]
    pub sdp_mline_index: Option<u16>,
}

/// A signalling request that cannot be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignallingError {
    /// The request is malformed (HTTP 400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No connection has this `pc_id` (HTTP 404).
    #[error("no peer connection `{0}`")]
    UnknownPeer(String),
    /// The offer could not be negotiated: no Opus audio, bad SDP (HTTP 400).
    #[error("the offer could not be negotiated: {0}")]
    Negotiation(String),
    /// The connection could not be set up on this side (HTTP 500).
    #[error("the connection could not be set up: {0}")]
    Internal(String),
}

impl OfferRequest {
    /// Checks what can be checked before negotiating.
    ///
    /// # Errors
    /// [`SignallingError::BadRequest`] for a type other than `offer`, an
    /// empty or oversized SDP.
    pub fn validate(&self) -> Result<(), SignallingError> {
        if self.kind != "offer" {
            return Err(SignallingError::BadRequest(format!(
                "type must be `offer`, not `{}`",
                self.kind
            )));
        }
        if self.sdp.trim().is_empty() {
            return Err(SignallingError::BadRequest("the SDP is empty".into()));
        }
        if self.sdp.len() > MAX_SDP_BYTES {
            return Err(SignallingError::BadRequest(format!(
                "the SDP is {} bytes, over the limit of {MAX_SDP_BYTES}",
                self.sdp.len()
            )));
        }
        Ok(())
    }

    /// `request_data` as session parameters (see [`session_parameters`]).
    pub fn custom_parameters(&self) -> BTreeMap<String, String> {
        session_parameters(self.request_data.as_ref())
    }
}

/// What a page sent (`request_data`, or the `body` of `POST /start`) as
/// session parameters: an object's members by name (strings as they are,
/// other values as JSON), anything else under `request_data`.
pub fn session_parameters(data: Option<&Value>) -> BTreeMap<String, String> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match data {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(members)) => members.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        Some(other) => BTreeMap::from([("request_data".to_owned(), text(other))]),
    }
}

impl PatchRequest {
    /// Checks the request's size.
    ///
    /// # Errors
    /// [`SignallingError::BadRequest`] for more than
    /// [`MAX_PATCH_CANDIDATES`] candidates.
    pub fn validate(&self) -> Result<(), SignallingError> {
        if self.candidates.len() > MAX_PATCH_CANDIDATES {
            return Err(SignallingError::BadRequest(format!(
                "{} candidates, over the limit of {MAX_PATCH_CANDIDATES}",
                self.candidates.len()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipecat_offer_with_camel_case_request_data() {
        let request: OfferRequest = serde_json::from_str(
            r#"{"sdp":"v=0\r\n","type":"offer","pc_id":null,"restart_pc":false,
                "requestData":{"user":"ada","segment":{"country":"FR"},"vip":true}}"#,
        )
        .unwrap();
        request.validate().unwrap();
        let params = request.custom_parameters();
        assert_eq!(params["user"], "ada");
        assert_eq!(params["segment"], r#"{"country":"FR"}"#);
        assert_eq!(params["vip"], "true");
    }

    #[test]
    fn a_scalar_request_data_is_kept_whole() {
        let request: OfferRequest =
            serde_json::from_str(r#"{"sdp":"v=0","type":"offer","request_data":"abc"}"#).unwrap();
        assert_eq!(request.custom_parameters()["request_data"], "abc");
    }

    #[test]
    fn bad_offers_are_refused_before_negotiating() {
        let answer: OfferRequest =
            serde_json::from_str(r#"{"sdp":"v=0","type":"answer"}"#).unwrap();
        assert!(matches!(
            answer.validate(),
            Err(SignallingError::BadRequest(_))
        ));
        let empty: OfferRequest = serde_json::from_str(r#"{"sdp":" ","type":"offer"}"#).unwrap();
        assert!(empty.validate().is_err());
        let huge = OfferRequest {
            sdp: "a".repeat(MAX_SDP_BYTES + 1),
            ..empty
        };
        assert!(huge.validate().is_err());
    }

    #[test]
    fn pipecat_patch_request() {
        let patch: PatchRequest = serde_json::from_str(
            r#"{"pc_id":"abc","candidates":[{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host","sdp_mid":"0","sdp_mline_index":0}]}"#,
        )
        .unwrap();
        patch.validate().unwrap();
        assert_eq!(patch.candidates[0].sdp_mid.as_deref(), Some("0"));
    }

    #[test]
    fn the_answer_serializes_as_pipecat_expects() {
        let answer = Answer::new("v=0".into(), "pc");
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            serde_json::json!({"sdp": "v=0", "type": "answer", "pc_id": "pc"})
        );
    }
}
