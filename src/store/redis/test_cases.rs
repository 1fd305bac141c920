//! `test_cases:list` in Redis.

use async_trait::async_trait;

use super::scripts::ADD_TEST_CASES;
use super::store::RedisStore;
use crate::store::codec::{decode_test_cases, encode};
use crate::store::{MAX_TEST_CASES_KEPT, StoreError, TestCase, TestCaseStore};

#[async_trait]
impl TestCaseStore for RedisStore {
    async fn add_test_cases(&self, cases: &[TestCase]) -> Result<usize, StoreError> {
        if cases.is_empty() {
            return Ok(0);
        }
        let key = self.settings.keys.test_cases();
        let mut add = ADD_TEST_CASES.key(&key);
        add.arg(MAX_TEST_CASES_KEPT);
        for case in cases {
            add.arg(case.identity()).arg(encode(&key, case)?);
        }
        self.invoke(&add).await
    }

    async fn test_cases(&self) -> Result<Vec<TestCase>, StoreError> {
        let key = self.settings.keys.test_cases();
        let entries: Vec<String> = self
            .query(redis::cmd("LRANGE").arg(&key).arg(0).arg(-1))
            .await?;
        Ok(decode_test_cases(&key, &entries))
    }
}
