//! `test_cases:list` in the embedded store.

use std::collections::HashSet;

use async_trait::async_trait;

use super::keyspace::Op;
use super::store::MemoryStore;
use crate::store::codec::{decode_test_cases, encode};
use crate::store::{MAX_TEST_CASES_KEPT, StoreError, TestCase, TestCaseStore};

#[async_trait]
impl TestCaseStore for MemoryStore {
    async fn add_test_cases(&self, cases: &[TestCase]) -> Result<usize, StoreError> {
        let key = self.settings.keys.test_cases();
        let encoded = cases
            .iter()
            .map(|case| Ok((case.identity(), encode(&key, case)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.write(|ks, now| {
            let mut seen: HashSet<String> = decode_test_cases(&key, ks.list(&key, now))
                .iter()
                .map(TestCase::identity)
                .collect();
            let new: Vec<String> = encoded
                .into_iter()
                .filter(|(identity, _)| !identity.is_empty() && seen.insert(identity.clone()))
                .map(|(_, json)| json)
                .collect();
            let added = new.len();
            if new.is_empty() {
                return (Vec::new(), 0);
            }
            let listed = ks.list(&key, now);
            if listed.len() + added <= MAX_TEST_CASES_KEPT {
                return (vec![Op::Push { key, values: new }], added);
            }
            // Over the bound: the newest kept, as Redis's LTRIM.
            let mut all: Vec<String> = listed.iter().cloned().chain(new).collect();
            all.drain(..all.len() - MAX_TEST_CASES_KEPT);
            (
                vec![Op::Del { key: key.clone() }, Op::Push { key, values: all }],
                added,
            )
        })
    }

    async fn test_cases(&self) -> Result<Vec<TestCase>, StoreError> {
        let key = self.settings.keys.test_cases();
        let items = self.read(|ks, now| ks.list(&key, now).to_vec())?;
        Ok(decode_test_cases(&key, &items))
    }
}
