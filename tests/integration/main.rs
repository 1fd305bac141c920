//! The integration tests that need neither real-time pacing to themselves
//! nor a machine of their own, in one binary: one link instead of one per
//! file (each binary links the whole of voxpipe and its dependencies, about
//! 150 MB unoptimised). One file per feature, as before; run one with
//! `cargo test --test integration FILE::`.
//!
//! Tests whose timing depends on having the machine to themselves (calls
//! paced in real time, browsers, Redis failovers, the soak) stay binaries
//! of their own in `tests/`, so that the harness runs them apart.

#[path = "../support/mod.rs"]
mod support;

mod agent_memory;
mod agent_pipeline;
mod analytics;
mod audio_mulaw;
mod audio_opus;
mod audio_resample;
mod audio_wav;
mod bot_speaking;
mod campaign_bounds;
mod campaign_idempotency;
mod campaigns;
mod chat_api;
mod check_validation;
mod cli;
mod cli_agent;
mod cli_context;
mod client_tools;
mod config_errors;
mod context_aggregators;
mod context_lost_sessions;
mod context_outbox;
mod context_session;
mod context_store;
mod deploy;
mod evaluator;
mod extraction;
mod false_interruption;
mod file_session;
mod fuzz_corpus;
mod hostile_http;
mod layering;
mod learning_skills;
mod llm_errors;
mod llm_read_timeout;
mod llm_stream_refusals;
mod llm_tools;
mod log_escaping;
mod lost_sessions;
mod message_notes;
mod message_status;
mod object_storage;
mod optimiser_outage;
mod optimiser_workers;
mod outbound_calls;
mod outbound_restart;
mod outbound_token;
mod output_transport;
mod parallel;
mod phone_salt;
mod pipeline_contract;
mod preemptive_replies;
mod prompt_optimiser;
mod prompt_versions_store;
mod recording;
mod reflection;
mod router_agents;
mod rtvi_bad_input;
mod rtvi_word_progress;
mod sales_agent;
mod serve_cli;
mod serve_context;
mod server_http;
mod server_sessions;
mod side_refusals;
mod skills;
mod stream_auth;
mod stt_outage;
mod stt_services;
mod tactics_bounds;
mod text_end_claims;
mod text_ends;
mod text_keys;
mod text_sessions;
mod text_touch;
mod tts_cartesia;
mod tts_services;
mod twilio_messaging;
mod webhook;
