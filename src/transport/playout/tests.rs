use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn chunk() -> AudioFrame {
    AudioFrame::from_samples(&[1; 320], 16_000, 1, Duration::ZERO)
}

fn drain(p: &mut Playout, now: Duration) -> Vec<PlayoutEvent> {
    std::iter::from_fn(|| p.poll(now)).collect()
}

#[test]
fn audio_leaves_at_its_time_and_speaking_follows_it() {
    let mut p = Playout::new();
    for _ in 0..3 {
        p.schedule(chunk(), ms(100));
    }
    assert!(drain(&mut p, ms(90)).is_empty());
    let events = drain(&mut p, ms(100));
    assert_eq!(events[0], PlayoutEvent::Started(ms(100)));
    assert!(matches!(&events[1], PlayoutEvent::Audio(a) if a.pts == ms(100)));
    assert_eq!(events.len(), 2);
    assert_eq!(drain(&mut p, ms(120)).len(), 1);
    assert_eq!(drain(&mut p, ms(140)).len(), 1);
    assert!(p.is_speaking());
    assert_eq!(drain(&mut p, ms(160)), [], "more may come: hang over");
    assert_eq!(
        drain(&mut p, ms(360)),
        [PlayoutEvent::Sent(ms(160)), PlayoutEvent::Stopped(ms(160))]
    );
    assert!(!p.is_speaking());
}

#[test]
fn a_complete_utterance_stops_as_soon_as_it_has_played() {
    let mut p = Playout::new();
    p.schedule(chunk(), ms(0));
    p.mark_utterance_complete();
    drain(&mut p, ms(0));
    assert_eq!(
        drain(&mut p, ms(10)),
        [],
        "audio leaving at its time ends when played"
    );
    assert_eq!(
        drain(&mut p, ms(20)),
        [PlayoutEvent::Sent(ms(20)), PlayoutEvent::Stopped(ms(20))]
    );
}

#[test]
fn a_short_gap_between_sentences_keeps_the_bot_speaking() {
    let mut p = Playout::new();
    p.schedule(chunk(), ms(0));
    p.schedule(
        AudioFrame::from_samples(&[1; 320], 16_000, 1, Duration::ZERO),
        ms(0),
    );
    drain(&mut p, ms(20));
    // More audio arrives 100 ms after the first ended.
    p.schedule(chunk(), ms(140));
    assert!(
        drain(&mut p, ms(60)).is_empty(),
        "still speaking across the gap"
    );
    let events = drain(&mut p, ms(140));
    assert!(matches!(&events[..], [PlayoutEvent::Audio(_)]));
}

#[test]
fn interrupt_drops_queued_audio_and_reports_what_was_heard() {
    let mut p = Playout::new();
    for _ in 0..50 {
        p.schedule(chunk(), ms(0)); // one second of audio
    }
    drain(&mut p, ms(300));
    let cut = p.interrupt(ms(310));
    assert!(cut.was_speaking);
    assert_eq!(cut.played, ms(310));
    assert_eq!(cut.cut, ms(690));
    assert!(!p.is_speaking());
    assert_eq!(drain(&mut p, ms(400)), []);
    // New audio after the interruption plays at once.
    p.schedule(chunk(), ms(400));
    assert_eq!(drain(&mut p, ms(400))[0], PlayoutEvent::Started(ms(400)));
}

fn ahead() -> Playout {
    Playout::with_send_ahead(SendAhead {
        most: ms(100),
        refill_below: ms(60),
    })
}

fn released(events: &[PlayoutEvent]) -> Vec<Duration> {
    events
        .iter()
        .filter_map(|e| match e {
            PlayoutEvent::Audio(a) => Some(a.pts),
            _ => None,
        })
        .collect()
}

#[test]
fn audio_continuing_playback_leaves_ahead_and_speaking_follows_playing_time() {
    let mut p = ahead();
    for _ in 0..10 {
        p.schedule(chunk(), ms(0));
    }
    p.mark_utterance_complete();
    let events = drain(&mut p, ms(0));
    assert_eq!(events[0], PlayoutEvent::Started(ms(0)));
    // The first frame at its time, then what ends within 100 ms of now.
    assert_eq!(released(&events), [0, 20, 40, 60, 80].map(ms));
    // The pacer comes back once less than 60 ms is left to play (a poll
    // in between sends what ends within 100 ms).
    assert_eq!(p.next_due(), Some(ms(40)));
    assert_eq!(released(&drain(&mut p, ms(40))), [100, 120].map(ms));
    assert_eq!(p.next_due(), Some(ms(80)));
    assert_eq!(released(&drain(&mut p, ms(80))), [140, 160].map(ms));
    let last = drain(&mut p, ms(120));
    assert_eq!(released(&last), [180].map(ms));
    // All sent by 120 ms, and said so with the last audio (the sink
    // sends its tail then); the bot speaks until it has played, at 200.
    assert_eq!(last.last(), Some(&PlayoutEvent::Sent(ms(200))));
    assert!(p.is_speaking());
    assert!(drain(&mut p, ms(199)).is_empty());
    assert_eq!(drain(&mut p, ms(200)), [PlayoutEvent::Stopped(ms(200))]);
}

#[test]
fn audio_after_silence_or_a_gap_leaves_at_its_time() {
    let mut p = ahead();
    p.schedule(chunk(), ms(50));
    assert!(drain(&mut p, ms(0)).is_empty(), "nothing is playing yet");
    assert_eq!(p.next_due(), Some(ms(50)));
    drain(&mut p, ms(50));
    // The next piece comes after a 100 ms gap in the schedule: sent
    // early, the far end would play it straight after the first.
    p.schedule(chunk(), ms(170));
    assert!(released(&drain(&mut p, ms(100))).is_empty());
    assert_eq!(p.next_due(), Some(ms(170)));
    assert_eq!(released(&drain(&mut p, ms(170))), [ms(170)]);
}

#[test]
fn an_interruption_counts_audio_sent_ahead_but_not_played_as_cut() {
    let mut p = ahead();
    for _ in 0..10 {
        p.schedule(chunk(), ms(0));
    }
    drain(&mut p, ms(0));
    let cut = p.interrupt(ms(30));
    assert_eq!(cut.played, ms(30));
    assert_eq!(cut.cut, ms(170), "70 ms sent ahead and 100 ms queued");
}

#[test]
fn without_send_ahead_next_due_is_the_audio_time() {
    let mut p = Playout::new();
    p.schedule(chunk(), ms(0));
    p.schedule(chunk(), ms(0));
    drain(&mut p, ms(0));
    assert_eq!(p.next_due(), Some(ms(20)));
    assert!(released(&drain(&mut p, ms(19))).is_empty());
}

#[test]
fn a_top_up_may_wait_past_its_due_time_until_its_audio_plays() {
    let mut p = ahead();
    assert_eq!(p.next_deadline(), None);
    for _ in 0..10 {
        p.schedule(chunk(), ms(0));
    }
    // Not started: the first frame is due at its time, no later.
    assert_eq!(
        (p.next_due(), p.next_deadline()),
        (Some(ms(0)), Some(ms(0)))
    );
    // 100 ms sent ahead: the next top-up is due once 60 ms are left
    // (at 40 ms), and nothing is late until its own time (100 ms).
    assert_eq!(released(&drain(&mut p, ms(0))).len(), 5);
    assert_eq!(
        (p.next_due(), p.next_deadline()),
        (Some(ms(40)), Some(ms(100)))
    );
    // The next frame (100 to 120 ms) may leave once it ends within
    // 100 ms of now.
    assert!(!p.releasable(ms(19)));
    assert!(p.releasable(ms(20)));
    assert_eq!(ahead().send_ahead.refill(), ms(40));
}

#[test]
fn audio_longer_than_the_lead_is_sent_ahead_in_pieces() {
    let mut p = Playout::with_send_ahead(SendAhead {
        most: ms(500),
        refill_below: ms(460),
    });
    p.schedule(chunk(), ms(0));
    // A second of speech in one frame, after the first 20 ms.
    let second = AudioFrame::from_samples(&[1; 16_000], 16_000, 1, Duration::ZERO);
    p.schedule(second, ms(0));
    let out = drain(&mut p, ms(0));
    let pieces = released(&out);
    // The first 20 ms and the second's first 480 ms leave at once.
    assert_eq!(pieces.len(), 25, "{pieces:?}");
    assert_eq!(pieces[1], ms(20));
    assert_eq!(pieces[24], ms(480));
    assert_eq!(p.scheduled_until(), ms(1_020));
    // The rest follows as the lead allows, every sample of it.
    let mut total = 25;
    for now in (20..=1_020).step_by(20) {
        total += released(&drain(&mut p, ms(now))).len();
    }
    assert_eq!(total, 51);
}

#[test]
fn without_send_ahead_a_long_frame_stays_whole() {
    let mut p = Playout::new();
    let second = AudioFrame::from_samples(&[1; 16_000], 16_000, 1, Duration::ZERO);
    p.schedule(second, ms(0));
    assert_eq!(released(&drain(&mut p, ms(0))), [ms(0)]);
}

#[test]
fn a_refill_one_frame_below_the_bound_sends_one_frame_per_wake_up() {
    let mut p = Playout::with_send_ahead(SendAhead {
        most: ms(100),
        refill_below: ms(80),
    });
    for _ in 0..10 {
        p.schedule(chunk(), ms(0));
    }
    assert_eq!(released(&drain(&mut p, ms(0))), [0, 20, 40, 60, 80].map(ms));
    for step in 1..=5u64 {
        let due = p.next_due().unwrap();
        assert_eq!(due, ms(20 * step));
        assert_eq!(released(&drain(&mut p, due)), [ms(80 + 20 * step)]);
    }
}

#[test]
fn an_utterance_marked_complete_after_its_audio_left_is_sent_at_once() {
    let mut p = ahead();
    p.schedule(chunk(), ms(0));
    p.schedule(chunk(), ms(0));
    assert_eq!(released(&drain(&mut p, ms(0))), [0, 20].map(ms));
    assert!(drain(&mut p, ms(5)).is_empty(), "more may come");
    p.mark_utterance_complete();
    assert_eq!(drain(&mut p, ms(5)), [PlayoutEvent::Sent(ms(40))]);
    assert_eq!(drain(&mut p, ms(40)), [PlayoutEvent::Stopped(ms(40))]);
}

#[test]
fn each_utterance_is_sent_once_even_when_the_next_continues_it() {
    let mut p = ahead();
    p.schedule(chunk(), ms(0));
    p.mark_utterance_complete();
    assert_eq!(
        drain(&mut p, ms(0)),
        [
            PlayoutEvent::Started(ms(0)),
            PlayoutEvent::Audio(at(ms(0))),
            PlayoutEvent::Sent(ms(20)),
        ]
    );
    // The next utterance comes while the first still plays.
    p.schedule(chunk(), ms(10));
    p.mark_utterance_complete();
    assert_eq!(
        drain(&mut p, ms(10)),
        [PlayoutEvent::Audio(at(ms(20))), PlayoutEvent::Sent(ms(40))]
    );
    assert_eq!(drain(&mut p, ms(40)), [PlayoutEvent::Stopped(ms(40))]);
}

#[test]
fn audio_after_a_long_gap_owes_a_sent_of_its_own_and_the_first_is_not_repeated() {
    let mut p = ahead();
    p.schedule(chunk(), ms(0));
    p.mark_utterance_complete();
    assert_eq!(
        drain(&mut p, ms(0)).last(),
        Some(&PlayoutEvent::Sent(ms(20)))
    );
    p.schedule(chunk(), ms(500));
    assert_eq!(drain(&mut p, ms(20)), [PlayoutEvent::Stopped(ms(20))]);
    assert_eq!(drain(&mut p, ms(500))[0], PlayoutEvent::Started(ms(500)));
    // Not marked complete: its end is reported when it stops.
    assert_eq!(drain(&mut p, ms(600)), []);
    assert_eq!(
        drain(&mut p, ms(720)),
        [PlayoutEvent::Sent(ms(520)), PlayoutEvent::Stopped(ms(520))]
    );
}

#[test]
fn audio_sent_ahead_but_never_marked_complete_is_reported_at_the_stop() {
    let mut p = ahead();
    p.schedule(chunk(), ms(0));
    p.schedule(chunk(), ms(0));
    assert_eq!(released(&drain(&mut p, ms(0))), [0, 20].map(ms));
    assert_eq!(drain(&mut p, ms(200)), [], "more may come: hang over");
    assert_eq!(
        drain(&mut p, ms(240)),
        [PlayoutEvent::Sent(ms(40)), PlayoutEvent::Stopped(ms(40))]
    );
}

#[test]
fn an_interruption_owes_no_sent_and_the_next_reply_gets_its_own() {
    let mut p = ahead();
    p.schedule(chunk(), ms(0));
    p.schedule(chunk(), ms(0));
    drain(&mut p, ms(0));
    p.interrupt(ms(10));
    assert_eq!(drain(&mut p, ms(300)), [], "nothing left to report");
    p.schedule(chunk(), ms(300));
    p.mark_utterance_complete();
    assert_eq!(
        drain(&mut p, ms(300)),
        [
            PlayoutEvent::Started(ms(300)),
            PlayoutEvent::Audio(at(ms(300))),
            PlayoutEvent::Sent(ms(320)),
        ]
    );
    assert_eq!(drain(&mut p, ms(320)), [PlayoutEvent::Stopped(ms(320))]);
}

fn at(pts: Duration) -> AudioFrame {
    AudioFrame { pts, ..chunk() }
}
