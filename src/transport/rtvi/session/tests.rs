//! `RtviSession` from the messages a client sends and the events a
//! pipeline makes.

use super::*;
use crate::transport::rtvi::parse_rtvi;

mod resumed;

fn inbound(s: &str) -> RtviInbound {
    parse_rtvi(&serde_json::from_str(s).unwrap()).unwrap()
}

fn drain(session: &mut RtviSession) -> Vec<Value> {
    std::iter::from_fn(|| session.poll_transmit())
        .map(|m| serde_json::from_str(&m).unwrap())
        .collect()
}

const READY: &str = r#"{"label":"rtvi-ai","type":"client-ready","id":"r1","data":{"version":"2.1.0","about":{"library":"@pipecat-ai/client-js","library_version":"1.13.1"}}}"#;

#[test]
fn client_ready_is_answered_with_bot_ready_then_what_came_before() {
    let mut session = RtviSession::new("s1".into());
    session.handle_event("bot_started_speaking", &json!({}), 0);
    assert!(drain(&mut session).is_empty(), "silent before client-ready");
    assert_eq!(
        session.handle_inbound(inbound(READY), Duration::ZERO),
        RtviAction::None
    );
    let sent = drain(&mut session);
    assert_eq!(sent[0]["type"], "bot-ready");
    assert_eq!(sent[0]["id"], "r1");
    assert_eq!(sent[0]["data"]["version"], PROTOCOL_VERSION);
    assert_eq!(
        sent[1]["type"], "bot-started-speaking",
        "the greeting's start"
    );
    assert_eq!(sent.len(), 2);
    session.handle_event("bot_stopped_speaking", &json!({}), 0);
    assert_eq!(drain(&mut session)[0]["type"], "bot-stopped-speaking");
}

#[test]
fn client_ready_without_a_readable_version_is_answered_as_the_current_protocol() {
    for data in ["{}", r#"{"version":"latest"}"#] {
        let mut session = RtviSession::new("s1".into());
        let ready =
            format!(r#"{{"label":"rtvi-ai","type":"client-ready","id":"r","data":{data}}}"#);
        session.handle_inbound(inbound(&ready), Duration::ZERO);
        assert!(session.is_active(), "{data}");
        let sent = drain(&mut session);
        assert_eq!(sent[0]["type"], "bot-ready", "{data}");
        assert_eq!(sent[0]["id"], "r");
        assert_eq!(sent[0]["data"]["version"], PROTOCOL_VERSION);
    }
}

#[test]
fn what_comes_before_client_ready_is_kept_within_a_bound() {
    let mut session = RtviSession::new("s1".into());
    for _ in 0..MAX_BACKLOG + 10 {
        session.handle_event("bot_started_speaking", &json!({}), 0);
    }
    session.handle_inbound(inbound(READY), Duration::ZERO);
    assert_eq!(drain(&mut session).len(), 1 + MAX_BACKLOG);
}

fn request(session: &mut RtviSession, id: &str, t: &str, now: Duration) -> RtviAction {
    let json = format!(
        r#"{{"label":"rtvi-ai","type":"client-message","id":"{id}","data":{{"t":"{t}","d":{{"x":1}}}}}}"#
    );
    session.handle_inbound(inbound(&json), now)
}

#[test]
fn a_client_message_is_answered_by_a_processor_or_left_to_the_client() {
    let mut session = RtviSession::new("s1".into());
    session.handle_inbound(inbound(READY), Duration::ZERO);
    drain(&mut session);
    let action = request(&mut session, "m1", "weather", Duration::ZERO);
    let RtviAction::Request(asked) = action else {
        panic!("{action:?}")
    };
    assert_eq!((&*asked.id, asked.kind.as_str()), ("m1", "weather"));
    request(&mut session, "m2", "weather", Duration::from_secs(1));
    assert_eq!(session.poll_timeout(), Some(REQUEST_TIMEOUT));
    session.handle_event(
        "client_response",
        &json!({"id": "m1", "type": "weather", "data": {"sunny": true}}),
        0,
    );
    assert_eq!(
        drain(&mut session),
        [
            json!({"label": "rtvi-ai", "type": "server-response", "id": "m1",
            "data": {"t": "weather", "d": {"sunny": true}}})
        ]
    );
    session.handle_timeout(REQUEST_TIMEOUT + Duration::from_secs(1));
    assert!(
        drain(&mut session).is_empty(),
        "no answer of its own: a fire-and-forget message gets none"
    );
    assert_eq!(session.poll_timeout(), None, "m2 is forgotten");
    // A late answer is dropped.
    session.handle_event(
        "client_response",
        &json!({"id": "m2", "type": "weather", "data": 1}),
        0,
    );
    assert!(drain(&mut session).is_empty());
}

#[test]
fn session_info_is_answered_here() {
    let mut session = RtviSession::new("s9".into());
    assert_eq!(
        request(&mut session, "m1", SESSION_INFO, Duration::ZERO),
        RtviAction::None
    );
    let sent = drain(&mut session);
    assert_eq!(sent[0]["data"]["d"]["session_id"], "s9");
}

#[test]
fn pending_requests_are_bounded_and_every_message_goes_on() {
    let mut session = RtviSession::new("s1".into());
    for n in 0..MAX_PENDING + 5 {
        let action = request(&mut session, &format!("m{n}"), "x", Duration::ZERO);
        assert!(matches!(action, RtviAction::Request(_)), "{n}");
    }
    assert_eq!(session.pending.len(), MAX_PENDING);
    assert!(drain(&mut session).is_empty());
    // The oldest were forgotten: an answer to one is dropped; the newest
    // is answered.
    session.handle_event(
        "client_response",
        &json!({"id": "m0", "type": "x", "data": 1}),
        0,
    );
    assert!(drain(&mut session).is_empty());
    let newest = format!("m{}", MAX_PENDING + 4);
    session.handle_event(
        "client_response",
        &json!({"id": newest, "type": "x", "data": 1}),
        0,
    );
    assert_eq!(drain(&mut session)[0]["id"], newest.as_str());
}

#[test]
fn rejections_answer_by_id_or_as_an_error() {
    let mut session = RtviSession::new("s1".into());
    session.reject(&Rejected {
        id: Some("7".into()),
        error: "no".into(),
    });
    session.reject(&Rejected {
        id: None,
        error: "no".into(),
    });
    let sent = drain(&mut session);
    assert_eq!(
        sent[0],
        json!({"label": "rtvi-ai", "type": "error-response", "id": "7", "data": {"error": "no"}})
    );
    assert_eq!(
        sent[1],
        json!({"label": "rtvi-ai", "type": "error", "data": {"error": "no", "fatal": false}})
    );
}

#[test]
fn function_call_results_become_text() {
    let mut session = RtviSession::new("s1".into());
    let action = session.handle_inbound(
        inbound(r#"{"label":"rtvi-ai","type":"llm-function-call-result","id":"f","data":{"function_name":"where","tool_call_id":"call_1","arguments":{},"result":{"city":"Oslo"}}}"#),
        Duration::ZERO,
    );
    assert_eq!(
        action,
        RtviAction::FunctionCallResult {
            tool_call_id: "call_1".into(),
            result: r#"{"city":"Oslo"}"#.into()
        }
    );
}

#[test]
fn a_word_timing_tts_gives_a_protocol_2_client_sentences_and_their_progress_as_heard() {
    let word = |text: &str| json!({"text": text, "timing": "word"});
    let heard = |text: &str| json!({ "text": text });
    // (status, text, accumulated) of each `bot-output`.
    let outputs = |session: &mut RtviSession| -> Vec<(String, String, String)> {
        drain(session)
            .into_iter()
            .filter(|m| m["type"] == "bot-output")
            .map(|m| {
                let status = m["data"]["spoken_status"].as_str().unwrap_or("1.x");
                let heard = &m["data"]["spoken_progress"]["accumulated_text"];
                let text = m["data"]["text"].as_str().unwrap();
                let spoken = m["data"]["spoken"].as_bool().map(|s| s.to_string());
                let heard = heard.as_str().map(str::to_owned).or(spoken).unwrap();
                (status.to_owned(), text.to_owned(), heard)
            })
            .collect()
    };
    let out = |status: &str, text: &str, heard: &str| (status.into(), text.into(), heard.into());
    let mut session = RtviSession::new("s1".into());
    session.handle_inbound(inbound(READY), Duration::ZERO);
    drain(&mut session);
    for text in ["Hello!", "How", "can", "I"] {
        session.handle_event("tts_text", &word(text), 0);
    }
    // Announced once the next sentence starts; nothing heard yet.
    assert_eq!(outputs(&mut session), [out("new", "Hello!", "")]);
    session.handle_event("bot_started_speaking", &json!({}), 0);
    session.handle_event("bot_word_heard", &heard("Hello!"), 0);
    assert_eq!(
        outputs(&mut session),
        [out("completed", "Hello!", "Hello!")]
    );
    // Heard before its sentence is known: it waits for the `new`.
    session.handle_event("bot_word_heard", &heard("How"), 0);
    assert_eq!(outputs(&mut session), []);
    session.handle_event("tts_text", &word("help?"), 0);
    session.handle_event("tts_stopped", &json!({}), 0);
    assert_eq!(
        outputs(&mut session),
        [
            out("new", "How can I help?", ""),
            out("in-progress", "How can I help?", "How")
        ]
    );
    session.handle_event("bot_word_heard", &heard("can"), 0);
    assert_eq!(
        outputs(&mut session),
        [out("in-progress", "How can I help?", "How can")]
    );
    for text in ["I", "help?"] {
        session.handle_event("bot_word_heard", &heard(text), 0);
    }
    assert_eq!(
        outputs(&mut session),
        [
            out("in-progress", "How can I help?", "How can I"),
            out("completed", "How can I help?", "How can I help?")
        ]
    );
    // Marked spoken by their words, not again when the bot stops.
    session.handle_event("bot_stopped_speaking", &json!({}), 0);
    assert_eq!(outputs(&mut session), []);

    // Words an interruption cut are never heard, their sentence never
    // spoken.
    for text in ["Well,", "let", "me.", "So"] {
        session.handle_event("tts_text", &word(text), 0);
    }
    session.handle_event("bot_word_heard", &heard("Well,"), 0);
    assert_eq!(
        outputs(&mut session),
        [
            out("new", "Well, let me.", ""),
            out("in-progress", "Well, let me.", "Well,")
        ]
    );
    session.handle_event("interruption", &json!({}), 0);
    session.handle_event("bot_word_heard", &heard("let"), 0);
    session.handle_event("bot_stopped_speaking", &json!({}), 0);
    assert_eq!(outputs(&mut session), []);

    // A 1.x client gets the words, spoken when the bot stops, as Pipecat
    // sends them to it, and no progress.
    let mut legacy = RtviSession::new("s2".into());
    legacy.handle_inbound(
        inbound(r#"{"label":"rtvi-ai","type":"client-ready","id":"r","data":{"version":"1.0.0"}}"#),
        Duration::ZERO,
    );
    drain(&mut legacy);
    legacy.handle_event("tts_text", &word("Hello!"), 0);
    legacy.handle_event("bot_word_heard", &heard("Hello!"), 0);
    assert_eq!(outputs(&mut legacy), [out("1.x", "Hello!", "false")]);
    legacy.handle_event("bot_stopped_speaking", &json!({}), 0);
    assert_eq!(outputs(&mut legacy), [out("1.x", "Hello!", "true")]);
}

#[test]
fn words_heard_before_client_ready_follow_bot_ready() {
    let mut session = RtviSession::new("s1".into());
    for text in ["Hi", "there."] {
        session.handle_event("tts_text", &json!({"text": text, "timing": "word"}), 0);
        session.handle_event("bot_word_heard", &json!({ "text": text }), 0);
    }
    session.handle_event("tts_stopped", &json!({}), 0);
    session.handle_event("bot_stopped_speaking", &json!({}), 0);
    session.handle_inbound(inbound(READY), Duration::ZERO);
    let statuses: Vec<Value> = drain(&mut session)
        .into_iter()
        .filter(|m| m["type"] == "bot-output")
        .map(|m| m["data"]["spoken_status"].clone())
        .collect();
    assert_eq!(statuses, ["new", "in-progress", "completed"]);
}

#[test]
fn the_users_turn_and_the_bots_sentences_go_out_as_pipecat_sends_them() {
    let mut session = RtviSession::new("s1".into());
    session.handle_inbound(inbound(READY), Duration::ZERO);
    drain(&mut session);
    let turn = |role: &str, text: &str| json!({"index": 0, "role": role, "text": text, "interrupted": false});
    session.handle_event("turn_completed", &turn("user", "Where am I?"), 0);
    session.handle_event("turn_completed", &turn("assistant", "Oslo."), 0);
    session.handle_event("turn_completed", &turn("tool", "{}"), 0);
    assert_eq!(
        drain(&mut session),
        [json!({"label": "rtvi-ai", "type": "user-llm-text", "data": {"text": "Where am I?"}})]
    );

    let transcripts = |session: &mut RtviSession| -> Vec<String> {
        drain(session)
            .into_iter()
            .filter(|m| m["type"] == "bot-transcription")
            .map(|m| m["data"]["text"].as_str().unwrap().to_owned())
            .collect()
    };
    for token in ["You are", " in Oslo.", " It is", " sunny"] {
        session.handle_event("llm_text", &json!({ "text": token }), 0);
    }
    assert_eq!(transcripts(&mut session), ["You are in Oslo."]);
    session.handle_event("llm_response_ended", &json!({}), 0);
    assert_eq!(transcripts(&mut session), ["It is sunny"]);

    // What an interruption cut is never sent.
    session.handle_event("llm_text", &json!({"text": "Let me"}), 0);
    session.handle_event("interruption", &json!({}), 0);
    session.handle_event("llm_response_ended", &json!({}), 0);
    assert!(transcripts(&mut session).is_empty());

    // A tool call ends what was said before it.
    session.handle_event("llm_text", &json!({"text": "Let me check"}), 0);
    session.handle_event(
        "tool_call",
        &json!({"id": "c", "name": "where", "arguments": "{}"}),
        0,
    );
    session.handle_event("llm_text", &json!({"text": "You are in Oslo"}), 0);
    session.handle_event("llm_response_ended", &json!({}), 0);
    assert_eq!(
        transcripts(&mut session),
        ["Let me check", "You are in Oslo"]
    );
}

#[test]
fn a_preemptive_reply_is_shown_only_once_confirmed() {
    let mut session = RtviSession::new("s1".into());
    session.handle_inbound(inbound(READY), Duration::ZERO);
    drain(&mut session);
    let types = |session: &mut RtviSession| -> Vec<String> {
        drain(session)
            .iter()
            .map(|m| m["type"].as_str().unwrap().to_owned())
            .collect()
    };
    let reply = |session: &mut RtviSession, text: &str| {
        session.handle_event("preemptive_reply_started", &json!({}), 0);
        // Announced again by the LLM as it takes the context.
        session.handle_event("preemptive_reply_started", &json!({}), 0);
        session.handle_event("llm_response_started", &json!({}), 0);
        session.handle_event("llm_text", &json!({ "text": text }), 0);
        session.handle_event("llm_response_ended", &json!({}), 0);
        session.handle_event("tts_text", &json!({"text": text, "timing": "sentence"}), 0);
    };
    // The user went on speaking: nothing of it is ever seen.
    reply(&mut session, "Sure.");
    session.handle_event("user_started_speaking", &json!({}), 0);
    session.handle_event("preemptive_reply_discarded", &json!({}), 0);
    assert_eq!(types(&mut session), ["user-started-speaking"]);

    // What the discarded reply still produces before it is stopped is
    // dropped, until the next reply starts.
    session.handle_event("llm_text", &json!({"text": " More."}), 0);
    session.handle_event(
        "tts_text",
        &json!({"text": "More.", "timing": "sentence"}),
        0,
    );
    assert!(types(&mut session).is_empty());
    session.handle_event("llm_response_started", &json!({}), 0);
    session.handle_event("llm_text", &json!({"text": "Hello."}), 0);
    session.handle_event("llm_response_ended", &json!({}), 0);
    assert_eq!(
        types(&mut session),
        [
            "bot-llm-started",
            "bot-llm-text",
            "bot-llm-stopped",
            "bot-transcription"
        ]
    );

    // Confirmed: the user's turn, then the reply.
    reply(&mut session, "Yes, we are open.");
    let turn = json!({"index": 2, "role": "user", "text": "Are you open?", "interrupted": false});
    session.handle_event("turn_completed", &turn, 0);
    assert_eq!(types(&mut session), ["user-llm-text"]);
    session.handle_event("preemptive_reply_confirmed", &json!({}), 0);
    assert_eq!(
        types(&mut session),
        [
            "bot-llm-started",
            "bot-llm-text",
            "bot-llm-stopped",
            "bot-transcription",
            "bot-tts-text",
            "bot-output"
        ]
    );
}

#[test]
fn spoken_text_is_announced_then_spoken_when_the_bot_stops_and_a_cut_stays_unspoken() {
    let spoken = |text: &str| json!({"text": text, "timing": "sentence"});
    let mut session = RtviSession::new("s1".into());
    session.handle_inbound(inbound(READY), Duration::ZERO);
    drain(&mut session);
    session.handle_event("tts_text", &spoken("Hello there."), 0);
    session.handle_event("tts_text", &spoken("How are you?"), 0);
    let announced = drain(&mut session);
    let types: Vec<&str> = announced
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["bot-tts-text", "bot-output", "bot-tts-text", "bot-output"]
    );
    let new = &announced[1]["data"];
    assert_eq!(new["spoken_status"], "new");
    assert_eq!(new["spoken_progress"]["remaining_text"], "Hello there.");
    assert_ne!(
        announced[3]["data"]["segment_id"], new["segment_id"],
        "one id a segment"
    );

    session.handle_event("bot_stopped_speaking", &json!({}), 0);
    let spoken_out = drain(&mut session);
    let done = &spoken_out[0]["data"];
    assert_eq!(done["spoken_status"], "completed");
    assert_eq!(done["segment_id"], new["segment_id"]);
    assert_eq!(done["spoken_progress"]["accumulated_text"], "Hello there.");
    assert_eq!(done["spoken_progress"]["remaining_text"], "");
    assert_eq!(spoken_out[1]["data"]["text"], "How are you?");
    assert_eq!(spoken_out[2]["type"], "bot-stopped-speaking");

    // Cut by the user: never marked spoken.
    session.handle_event("tts_text", &spoken("Let me explain."), 0);
    session.handle_event("interruption", &json!({}), 0);
    session.handle_event("bot_stopped_speaking", &json!({}), 0);
    let after = drain(&mut session);
    assert!(
        after
            .iter()
            .all(|m| m["data"]["spoken_status"] != "completed"),
        "{after:?}"
    );

    // A 1.x client: its version back, and `spoken` false then true.
    let mut legacy = RtviSession::new("s2".into());
    legacy.handle_event("tts_text", &spoken("Hi."), 0);
    legacy.handle_inbound(
        inbound(r#"{"label":"rtvi-ai","type":"client-ready","id":"r1","data":{"version":"1.4.0","about":{}}}"#),
        Duration::ZERO,
    );
    legacy.handle_event("bot_stopped_speaking", &json!({}), 0);
    let sent = drain(&mut legacy);
    assert_eq!(sent[0]["data"]["version"], "1.4.0");
    assert_eq!(sent[2]["data"]["spoken"], false, "{sent:?}");
    assert_eq!(sent[3]["data"]["spoken"], true);
    assert!(sent[3]["data"].get("spoken_status").is_none());
}

#[test]
fn a_long_greeting_before_client_ready_keeps_its_start() {
    let mut session = RtviSession::new("s1".into());
    session.handle_event("llm_response_started", &json!({}), 0);
    session.handle_event("bot_started_speaking", &json!({}), 0);
    for _ in 0..500 {
        session.handle_event("llm_text", &json!({"text": "word "}), 0);
        session.handle_event("interim_transcription", &json!({"text": "hm"}), 0);
    }
    session.handle_inbound(inbound(READY), Duration::ZERO);
    let sent = drain(&mut session);
    assert_eq!(sent[1]["type"], "bot-llm-started");
    assert_eq!(sent[2]["type"], "bot-started-speaking");
}

#[test]
fn only_a_preemptive_replys_own_tool_results_are_held_or_dropped() {
    let mut session = RtviSession::new("s1".into());
    session.handle_inbound(inbound(READY), Duration::ZERO);
    drain(&mut session);
    let call = |id: &str| json!({"id": id, "name": "lookup", "arguments": "{}"});
    let result = |id: &str| json!({"id": id, "name": "lookup", "result": "{}"});
    let stopped = |session: &mut RtviSession| -> Vec<String> {
        drain(session)
            .into_iter()
            .filter(|m| m["type"] == "llm-function-call-stopped")
            .map(|m| m["data"]["tool_call_id"].as_str().unwrap().to_owned())
            .collect()
    };
    session.handle_event("preemptive_reply_started", &json!({}), 0);
    session.handle_event("tool_call", &call("early"), 0);
    // An earlier reply's tool, not cancelled by the interruption, answers
    // while the preemptive reply is held: it goes out.
    session.handle_event("tool_result", &result("earlier"), 0);
    assert_eq!(stopped(&mut session), ["earlier"]);
    session.handle_event("preemptive_reply_discarded", &json!({}), 0);
    // The discarded reply's own tool answers late: never shown.
    session.handle_event("tool_result", &result("early"), 0);
    session.handle_event("tool_result", &result("earlier-2"), 0);
    assert_eq!(stopped(&mut session), ["earlier-2"]);
}

#[test]
fn a_discarded_replys_tool_results_never_go_out_however_late() {
    let mut session = RtviSession::new("s1".into());
    session.handle_inbound(inbound(READY), Duration::ZERO);
    drain(&mut session);
    let call = |id: &str| json!({"id": id, "name": "lookup", "arguments": "{}"});
    let result = |id: &str| json!({"id": id, "name": "lookup", "result": "{}"});
    let stopped = |session: &mut RtviSession| -> Vec<String> {
        drain(session)
            .into_iter()
            .filter(|m| m["type"] == "llm-function-call-stopped")
            .map(|m| m["data"]["tool_call_id"].as_str().unwrap().to_owned())
            .collect()
    };
    // A preemptive reply calls two slow tools, then is discarded.
    session.handle_event("preemptive_reply_started", &json!({}), 0);
    session.handle_event("llm_response_started", &json!({}), 0);
    session.handle_event("tool_call", &call("slow-1"), 0);
    session.handle_event("tool_call", &call("slow-2"), 0);
    session.handle_event("preemptive_reply_discarded", &json!({}), 0);
    // The next reply starts, and is answered.
    session.handle_event("llm_response_started", &json!({}), 0);
    session.handle_event("tool_call", &call("next"), 0);
    // The discarded reply's tool answers only now.
    session.handle_event("tool_result", &result("slow-1"), 0);
    session.handle_event("tool_result", &result("next"), 0);
    session.handle_event("llm_response_ended", &json!({"failed": false}), 0);
    assert_eq!(stopped(&mut session), ["next"]);
    // Later still, after another preemptive reply was confirmed.
    session.handle_event("preemptive_reply_started", &json!({}), 0);
    session.handle_event("llm_response_started", &json!({}), 0);
    session.handle_event("preemptive_reply_confirmed", &json!({}), 0);
    session.handle_event("tool_result", &result("slow-2"), 0);
    assert_eq!(stopped(&mut session), Vec::<String>::new());
}

#[test]
fn a_discarded_tool_id_taken_and_discarded_again_is_kept_until_it_is_the_oldest() {
    let mut discarded = DiscardedTools::default();
    discarded.insert("again".to_owned());
    assert!(discarded.take("again"));
    discarded.insert("again".to_owned());
    assert_eq!(discarded.order.len(), 1, "named once");
    // Enough newer ids to evict the first naming of it, not the second.
    for n in 1..MAX_DISCARDED_TOOLS {
        discarded.insert(format!("other-{n}"));
    }
    assert!(discarded.take("again"), "forgotten while still live");
    assert!(!discarded.take("again"), "taken once");
    // Full: the oldest goes first (the taken one's place, then other-1).
    discarded.insert("newest".to_owned());
    assert!(discarded.take("newest"));
    discarded.insert("newer".to_owned());
    assert!(!discarded.take("other-1"));
    assert!(discarded.take("other-2"));
}
