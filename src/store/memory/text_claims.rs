//! The claims on text conversations' ends in the embedded store: a field
//! of the claims hash per end, `{until ms} {owner}`.

use std::collections::BTreeMap;

use super::keyspace::{Blob, Keyspace, Op};
use crate::store::text_store::{claim_holder, claim_owner};
use crate::store::{EndClaim, TextEnd};

/// Who holds the claim on `member` at `now`, if anyone.
pub(super) fn holder<'k>(
    ks: &'k Keyspace,
    claims: &str,
    member: &str,
    now: u64,
) -> Option<&'k str> {
    let entry = ks.hash(claims, now)?.get(member)?;
    claim_holder(std::str::from_utf8(entry).ok()?, now)
}

/// The owner the claim on `member` names, held or lapsed.
pub(super) fn owner<'k>(ks: &'k Keyspace, claims: &str, member: &str, now: u64) -> Option<&'k str> {
    let entry = ks.hash(claims, now)?.get(member)?;
    claim_owner(std::str::from_utf8(entry).ok()?)
}

/// The op that gives `claim` the claim on `end` from `now`.
pub(super) fn claimed(claims: &str, end: &TextEnd, claim: &EndClaim, now: u64) -> Op {
    let entry = format!("{} {}", now.saturating_add(claim.ttl_ms), claim.owner);
    Op::HSet {
        key: claims.to_owned(),
        fields: BTreeMap::from([(end.member(), Blob(entry.into_bytes()))]),
    }
}
