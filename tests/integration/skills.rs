//! Skills and the `search_context` tool: embedded through a fake
//! OpenAI-compatible `/embeddings` server, stored in Redis, found by cosine
//! similarity from the in-memory index.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::sync::Arc;

use redis::AsyncCommands;
use serde_json::json;
use support::fake::openai::{DIMS, FakeOpenAi, embed};
use support::redis_server::RedisServer;
use support::rng::Rng;
use voxpipe::agent::eval::ApiEndpoint;
use voxpipe::agent::skills::{
    IndexError, OpenAiEmbedder, SEARCH_CONTEXT, SkillError, SkillIndex, SkillLibrary,
    search_context_parameters,
};
use voxpipe::services::{ApiKey, Connection};
use voxpipe::store::pack_vector;
use voxpipe::store::{RedisStore, Store, StoreSettings};

async fn library(redis: &RedisServer, openai: &FakeOpenAi) -> (Arc<dyn Store>, SkillLibrary) {
    let store: Arc<dyn Store> =
        Arc::new(RedisStore::connect(&redis.url(), "REDIS_URL", StoreSettings::default()).unwrap());
    let endpoint = ApiEndpoint {
        base_url: openai.base_url.clone(),
        api_key: Some(ApiKey::new("sk-test")),
        connection: Connection::default(),
        provider: "embeddings",
    };
    let embedder = OpenAiEmbedder::new(endpoint, "embed-1", Some(DIMS as u32));
    let library = SkillLibrary::new(store.clone(), Arc::new(embedder), 512, 2);
    (store, library)
}

#[tokio::test]
async fn search_context_returns_the_closest_rebuttals() {
    let redis = RedisServer::start();
    let openai = FakeOpenAi::judge().await;
    let (store, library) = library(&redis, &openai).await;
    library
        .add("It is too expensive for us", "Walk them through the ROI")
        .await
        .unwrap();
    library
        .add("We have no time this quarter", "Offer a two week pilot")
        .await
        .unwrap();
    library
        .add("We already use a competitor", "Ask what they miss in it")
        .await
        .unwrap();

    let request = &openai.embedding_requests()[0];
    assert_eq!(request["model"], "embed-1");
    assert_eq!(request["dimensions"], DIMS);
    assert_eq!(request["input"][0], "It is too expensive for us");
    assert_eq!(store.skill_hashes().await.unwrap().len(), 3);

    let answer: serde_json::Value = serde_json::from_str(
        &library
            .search_context(json!({"query": "that is too expensive"}))
            .await
            .unwrap(),
    )
    .unwrap();
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "top_k from the library's default");
    assert_eq!(results[0]["rebuttal"], "Walk them through the ROI");
    assert_eq!(results[0]["objection"], "It is too expensive for us");
    assert!(
        results[0]["similarity"].as_f64().unwrap() > results[1]["similarity"].as_f64().unwrap()
    );

    let one: serde_json::Value = serde_json::from_str(
        &library
            .search_context(json!({"query": "no time", "top_k": 1}))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(one["results"][0]["rebuttal"], "Offer a two week pilot");
    assert!(matches!(
        library.search_context(json!({"q": "x"})).await,
        Err(SkillError::Arguments(_))
    ));
    assert_eq!(SEARCH_CONTEXT, "search_context");
    assert_eq!(search_context_parameters()["required"][0], "query");
}

#[tokio::test]
async fn the_index_follows_skills_other_programs_write_and_delete() {
    let redis = RedisServer::start();
    let openai = FakeOpenAi::judge().await;
    let (_, library) = library(&redis, &openai).await;
    let mut client = redis.client().await;
    // The learning loop's own write: a hash with a packed f32 vector.
    let vector = pack_vector(&embed("prices went up again"));
    let _: () = client
        .hset_multiple(
            "skill:external",
            &[
                ("trigger", b"prices went up again".as_slice()),
                ("rebuttal", b"Lock in this year's price"),
                ("vector", &vector),
            ],
        )
        .await
        .unwrap();
    assert!(
        library
            .search("prices went up", 1)
            .await
            .unwrap()
            .is_empty(),
        "not refreshed yet"
    );
    let refresh = library.refresh().await.unwrap();
    assert_eq!((refresh.added, refresh.removed, refresh.total), (1, 0, 1));
    let hits = library.search("prices went up", 1).await.unwrap();
    assert_eq!(&*hits[0].rebuttal, "Lock in this year's price");

    let _: () = client.del("skill:external").await.unwrap();
    let refresh = library.refresh().await.unwrap();
    assert_eq!((refresh.added, refresh.removed, refresh.total), (0, 1, 0));
    assert!(
        library
            .search("prices went up", 1)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_query_of_other_dimensions_than_the_skills_is_an_error_not_no_match() {
    let redis = RedisServer::start();
    let openai = FakeOpenAi::judge().await;
    let (_, library) = library(&redis, &openai).await;
    // Stored with another embedding model: three dimensions.
    let vector = pack_vector(&[1.0, 0.0, 0.0]);
    let _: () = redis
        .client()
        .await
        .hset_multiple(
            "skill:older",
            &[
                ("trigger", b"too expensive".as_slice()),
                ("rebuttal", b"Show the ROI"),
                ("vector", &vector),
            ],
        )
        .await
        .unwrap();
    assert_eq!(library.refresh().await.unwrap().total, 1);
    let err = library
        .search_context(json!({"query": "too expensive"}))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SkillError::Index(IndexError::QueryDimensions { expected: 3, got }) if got == DIMS
        ),
        "{err}"
    );
}

#[test]
fn two_stage_search_finds_what_an_exact_scan_finds() {
    // Embedding-like data: 10,000 vectors of 128 dimensions around 200
    // topics, queried with noisy versions of stored vectors; only 64
    // candidates (0.64 %) reach the exact stage.
    let (dims, topics, n) = (128, 200, 10_000);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let centres: Vec<Vec<f32>> = (0..topics)
        .map(|_| (0..dims).map(|_| rng.next()).collect())
        .collect();
    let mut index = SkillIndex::new(64);
    let mut stored = Vec::new();
    for i in 0..n {
        let centre = &centres[i % topics];
        let v: Vec<f32> = centre.iter().map(|c| c + 1.0 * rng.next()).collect();
        let skill = voxpipe::store::Skill::new(
            format!("objection {i}"),
            format!("rebuttal {i}"),
            v.clone(),
        );
        index.insert(&skill).unwrap();
        stored.push(v);
    }
    let (k, queries) = (5, 100);
    let mut found = 0;
    for q in 0..queries {
        let query: Vec<f32> = stored[q * 97 % n]
            .iter()
            .map(|x| x + 0.3 * rng.next())
            .collect();
        let exact = index.search_exact(&query, k);
        let fast = index.search(&query, k);
        assert_eq!(fast.len(), k);
        found += fast
            .iter()
            .filter(|hit| exact.iter().any(|e| e.hash == hit.hash))
            .count();
        // Scores are exact cosines: the best hit agrees to float precision.
        if fast[0].hash == exact[0].hash {
            assert!((fast[0].similarity - exact[0].similarity).abs() < 1e-6);
        }
    }
    let recall = found as f64 / (k * queries) as f64;
    println!("recall@{k} with 64 candidates of {n}: {recall:.3}");
    assert!(recall >= 0.95, "recall@{k} = {recall}");
}
