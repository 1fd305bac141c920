//! The create answers, the form, and answers cut short.

use super::*;
use std::sync::Arc;

#[test]
fn sids_are_two_letters_and_32_hex_digits() {
    assert!(is_sid("CA7c4b5e3e9a0e4c2b8f5d1a6e3c9b0a7f"));
    assert!(is_sid("ACd5a6a5c1b9f6a1e6f6bc2c7e4a1b8e3f"));
    assert!(!is_sid("CA7c4b5e3e9a0e4c2b8f5d1a6e3c9b0a7"));
    assert!(!is_sid("CA7c4b5e3e9a0e4c2b8f5d1a6e3c9b0a7/"));
    assert!(!is_sid("../../../etc/passwd/aaaaaaaaaaaaaaaaaa"));
}

#[test]
fn the_create_form_names_every_parameter_twilio_documents() {
    let call = CreateCall {
        to: "+15551234567",
        from: "+15557654321",
        twiml: "<Response/>",
        status_callback: "https://voice.example.com/twilio/status",
        timeout_secs: 30,
        machine_detection: Some("DetectMessageEnd"),
        async_amd_callback: Some("https://voice.example.com/twilio/amd"),
    };
    let form = call.form();
    let values = |name: &str| {
        form.iter()
            .filter(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(values("To"), ["+15551234567"]);
    assert_eq!(values("From"), ["+15557654321"]);
    assert_eq!(values("Twiml"), ["<Response/>"]);
    assert_eq!(
        values("StatusCallbackEvent"),
        ["initiated", "ringing", "answered", "completed"]
    );
    assert_eq!(values("StatusCallbackMethod"), ["POST"]);
    assert_eq!(values("Timeout"), ["30"]);
    assert_eq!(values("MachineDetection"), ["DetectMessageEnd"]);
    assert_eq!(values("AsyncAmd"), ["true"]);
    assert_eq!(
        values("AsyncAmdStatusCallback"),
        ["https://voice.example.com/twilio/amd"]
    );
    let plain = CreateCall {
        machine_detection: None,
        ..call
    };
    assert!(
        plain
            .form()
            .iter()
            .all(|(key, _)| !key.contains("Amd") && *key != "MachineDetection")
    );
}

#[test]
fn answers_become_a_sid_or_the_kind_of_failure() {
    let sid = "CA7c4b5e3e9a0e4c2b8f5d1a6e3c9b0a7f";
    assert_eq!(
        created_call(
            201,
            None,
            &format!(r#"{{"sid":"{sid}","status":"queued"}}"#)
        ),
        Ok(sid.to_owned())
    );
    assert_eq!(
        created_call(429, Some(Duration::from_secs(2)), r#"{"code":20429}"#),
        Err(CreateCallError::RateLimited {
            retry_after: Some(Duration::from_secs(2))
        })
    );
    assert_eq!(
        created_call(
            400,
            None,
            r#"{"code":21211,"message":"Invalid 'To' Phone Number","status":400}"#
        ),
        Err(CreateCallError::Refused {
            status: 400,
            code: Some(21211),
            message: "Invalid 'To' Phone Number".to_owned()
        })
    );
    for status in [500, 502, 503, 504] {
        assert_eq!(
            created_call(status, None, ""),
            Err(CreateCallError::ServerError { status })
        );
    }
    // Created, its SID unknown: not to be tried again.
    assert!(matches!(
        created_call(201, None, r#"{"sid":"nope"}"#),
        Err(CreateCallError::Uncertain(_))
    ));
}

#[test]
fn retry_after_is_capped() {
    use reqwest::header::HeaderValue;
    let parse = |v: &'static str| retry_after(Some(&HeaderValue::from_static(v)));
    assert_eq!(parse("2"), Some(Duration::from_secs(2)));
    assert_eq!(parse(" 7 "), Some(Duration::from_secs(7)));
    assert_eq!(parse("86400"), Some(MAX_RETRY_AFTER));
    assert_eq!(parse("18446744073709551615"), Some(MAX_RETRY_AFTER));
    assert_eq!(parse("soon"), None);
    assert_eq!(retry_after(None), None);
}

/// A server that answers every request with `head` and then `partial`, a
/// body shorter than its `Content-Length`, and closes the connection.
async fn cut_short(head: &'static str, partial: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                // The whole request (small: one read is enough here).
                let mut buf = vec![0; 64 * 1024];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(partial.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

const ACCOUNT: &str = "ACd5a6a5c1b9f6a1e6f6bc2c7e4a1b8e3f";

async fn create_against(base: &str) -> Result<String, CreateCallError> {
    let rest = TwilioRest::new(base, "token".to_owned()).unwrap();
    let call = CreateCall {
        to: "+15551234567",
        from: "+15557654321",
        twiml: "<Response/>",
        status_callback: "https://voice.example.com/twilio/status",
        timeout_secs: 30,
        machine_detection: None,
        async_amd_callback: None,
    };
    rest.create_call(ACCOUNT, &call).await
}

#[tokio::test]
async fn a_5xx_whose_body_is_cut_short_is_still_a_server_error() {
    // Before: `Unavailable`, which lets the number go and dials again,
    // though a 500 may come after Twilio took the call.
    for (head, status) in [
        (
            "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n",
            500,
        ),
        (
            "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 200\r\n\r\n",
            502,
        ),
    ] {
        let base = cut_short(head, r#"{"code": 20500, "mess"#).await;
        assert_eq!(
            create_against(&base).await,
            Err(CreateCallError::ServerError { status })
        );
    }
    // A message goes through the same answer.
    let base = cut_short(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 200\r\n\r\n",
        "{",
    )
    .await;
    let rest = TwilioRest::new(&base, "token".to_owned()).unwrap();
    let message = CreateMessage {
        to: "+15551234567",
        from: "+15557654321",
        body: "hello",
        status_callback: None,
    };
    assert_eq!(
        rest.create_message(ACCOUNT, &message).await,
        Err(CreateCallError::ServerError { status: 500 })
    );
}

#[tokio::test]
async fn other_answers_cut_short_keep_their_meaning() {
    let created = cut_short(
        "HTTP/1.1 201 Created\r\nContent-Length: 200\r\n\r\n",
        r#"{"sid": "CA7c4b"#,
    )
    .await;
    assert!(matches!(
        create_against(&created).await,
        Err(CreateCallError::Uncertain(_))
    ));
    let limited = cut_short(
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 86400\r\nContent-Length: 200\r\n\r\n",
        "{",
    )
    .await;
    assert_eq!(
        create_against(&limited).await,
        Err(CreateCallError::RateLimited {
            retry_after: Some(MAX_RETRY_AFTER)
        })
    );
    let unavailable = cut_short(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 200\r\n\r\n",
        "{",
    )
    .await;
    assert_eq!(
        create_against(&unavailable).await,
        Err(CreateCallError::ServerError { status: 503 })
    );
}

#[test]
fn only_a_cancel_answered_in_progress_leaves_the_call_going() {
    let answer = |status: &str| format!(r#"{{"sid": "CA1", "status": "{status}"}}"#);
    assert!(still_in_progress(EndCall::Cancel, &answer("in-progress")));
    assert!(!still_in_progress(EndCall::Cancel, &answer("canceled")));
    assert!(!still_in_progress(EndCall::Cancel, &answer("ringing")));
    assert!(!still_in_progress(
        EndCall::Complete,
        &answer("in-progress")
    ));
    assert!(!still_in_progress(EndCall::Cancel, "not json"));
}

/// A Calls resource whose one call was answered: it answers a cancel as
/// Twilio does (the call left in progress) and a hang-up as completed,
/// and keeps the `Status` of each update.
async fn answered_call() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let updates = Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::clone(&updates);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0; 4096];
                // Headers, then the form (its `Content-Length`).
                loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if body.len() >= length {
                            let status = if body.contains("Status=canceled") {
                                "in-progress"
                            } else {
                                "completed"
                            };
                            seen.lock().unwrap().push(body.to_owned());
                            let answer = format!(r#"{{"sid": "CA1", "status": "{status}"}}"#);
                            let response = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                                answer.len()
                            );
                            let _ = socket.write_all(response.as_bytes()).await;
                            let _ = socket.shutdown().await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), updates)
}

#[tokio::test]
async fn a_cancel_that_finds_the_call_answered_hangs_it_up() {
    let (base, updates) = answered_call().await;
    let rest = TwilioRest::new(&base, "token".to_owned()).unwrap();
    let call_sid = "CA7c4b5e3e9a0e4c2b8f5d1a6e3c9b0a7f";
    let ended = rest.end_call(ACCOUNT, call_sid, EndCall::Cancel).await;
    assert_eq!(ended.unwrap(), HangUp::Completed);
    assert_eq!(
        *updates.lock().unwrap(),
        ["Status=canceled", "Status=completed"],
        "a cancel alone leaves an answered call going"
    );
}

#[test]
fn a_read_call_is_its_status_duration_and_verdict_or_none_when_twilio_has_none() {
    // As Twilio's Calls resource answers a fetch (most fields left out).
    let body = r#"{"sid": "CA0000000000000000000000000000001f", "status": "no-answer",
        "duration": "0", "answered_by": null, "end_time": "Fri, 04 Dec 2026 10:00:00 +0000"}"#;
    assert_eq!(
        fetched_call(200, body).unwrap(),
        Some(CallResource {
            status: "no-answer".into(),
            duration: Some(0),
            answered_by: None,
        })
    );
    let answered = r#"{"status": "completed", "duration": "42", "answered_by": "human"}"#;
    let call = fetched_call(200, answered).unwrap().unwrap();
    assert_eq!(
        (call.duration, call.answered_by.as_deref()),
        (Some(42), Some("human"))
    );
    let ringing = r#"{"status": "ringing", "duration": null}"#;
    assert_eq!(fetched_call(200, ringing).unwrap().unwrap().duration, None);
    let missing =
        r#"{"code": 20404, "message": "The requested resource was not found", "status": 404}"#;
    assert_eq!(fetched_call(404, missing).unwrap(), None);
    // A 5xx is transient (tried again); an answer that is not a call, or a
    // refusal, is an error with the start of its body.
    let down = fetched_call(503, "busy").unwrap_err();
    assert!(down.is_transient(), "{down}");
    assert!(matches!(
        fetched_call(200, "<html>"),
        Err(HangUpError::Status { status: 200, .. })
    ));
    let refused = fetched_call(401, r#"{"code": 20003}"#).unwrap_err();
    assert!(!refused.is_transient());
}
