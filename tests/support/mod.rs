//! Shared by the server's integration tests: a fake Twilio (the media
//! streams client and the REST API), WebRTC client calls, test-only
//! processors, and a server run in-process on a free loopback port.

#![allow(dead_code)] // each test binary uses a different subset
#![allow(unreachable_pub)] // shared between test binaries, not an API

pub mod audio;
#[path = "../common/mod.rs"]
mod common;
pub mod processors;
pub mod server;
pub mod twilio_client;
pub mod twilio_rest;
pub mod webrtc;
