//! A learned skill: an objection (the trigger), the rebuttal that worked,
//! and the trigger's embedding. Stored as the hash `skill:{hash}` with the
//! fields `trigger`, `rebuttal` and `vector` (little-endian packed f32, as
//! Python's `struct.pack("<768f", ...)` writes it).

use super::tactics::tactic_identity;

/// Skills kept: the newest stored (a skill stored again counts as new);
/// older ones are deleted as new ones come, so what calls teach cannot
/// grow the store, and each index refresh, without bound.
pub const MAX_SKILLS_KEPT: usize = 10_000;

/// One skill.
#[derive(Debug, Clone, PartialEq)]
pub struct Skill {
    /// The key suffix: a hash of the trigger.
    pub hash: String,
    /// The customer's objection.
    pub trigger: String,
    /// What to answer.
    pub rebuttal: String,
    /// The trigger's embedding.
    pub vector: Vec<f32>,
}

impl Skill {
    /// A skill keyed by the hash of its trigger, so storing the same
    /// objection again replaces it.
    pub fn new(trigger: impl Into<String>, rebuttal: impl Into<String>, vector: Vec<f32>) -> Self {
        let trigger = trigger.into();
        Skill {
            hash: trigger_hash(&trigger),
            trigger,
            rebuttal: rebuttal.into(),
            vector,
        }
    }
}

impl Skill {
    /// A skill read back from its hash fields.
    pub fn from_fields(
        hash: &str,
        trigger: &[u8],
        rebuttal: &[u8],
        vector: &[u8],
    ) -> Result<Skill, String> {
        let text = |name: &str, bytes: &[u8]| {
            String::from_utf8(bytes.to_vec()).map_err(|_| format!("`{name}` is not UTF-8"))
        };
        let vector = unpack_vector(vector)
            .ok_or_else(|| format!("`vector` has {} bytes, not a multiple of 4", vector.len()))?;
        if vector.is_empty() {
            return Err("`vector` is empty".into());
        }
        Ok(Skill {
            hash: hash.to_owned(),
            trigger: text("trigger", trigger)?,
            rebuttal: text("rebuttal", rebuttal)?,
            vector,
        })
    }
}

/// 32 hex digits of the SHA-256 of the trigger's identity (case and spacing
/// do not matter).
pub fn trigger_hash(trigger: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, tactic_identity(trigger).as_bytes());
    digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A vector as little-endian f32 bytes.
pub fn pack_vector(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Little-endian f32 bytes as a vector; `None` when the length is not a
/// multiple of 4.
pub fn unpack_vector(bytes: &[u8]) -> Option<Vec<f32>> {
    let chunks = bytes.chunks_exact(4);
    if !chunks.remainder().is_empty() {
        return None;
    }
    Some(
        chunks
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_and_hashes_ignore_spelling() {
        let v = vec![0.5, -1.25, 3.0e-7];
        let bytes = pack_vector(&v);
        assert_eq!(bytes.len(), 12);
        assert_eq!(&bytes[..4], &0.5f32.to_le_bytes());
        assert_eq!(unpack_vector(&bytes), Some(v));
        assert_eq!(unpack_vector(&[0, 0, 0]), None);
        assert_eq!(
            trigger_hash("Too  expensive"),
            trigger_hash("too expensive ")
        );
        assert_ne!(trigger_hash("too expensive"), trigger_hash("too cheap"));
        assert_eq!(trigger_hash("x").len(), 32);
    }
}
