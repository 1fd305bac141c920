//! Call recording (`[recording]`, off by default): a stereo WAV per call,
//! the caller on the left and the bot on the right, at the pipeline's
//! rate, with the bot as the caller heard it.
//!
//! # Design
//!
//! The two channels come from the two ends of the session. The caller's
//! audio is taken as it enters, from the frames the transport input pushes
//! (an observer: [`Recorder::observer`]). The bot's is taken as it leaves
//! the transport output, which schedules it on the session clock, releases
//! it in real time and knows what an interruption cut (a
//! [`PlaybackListener`](crate::transport::PlaybackListener):
//! [`Recorder::listener`]): each frame is placed at its session time and
//! silenced from the time of a cut, so the right channel is what was heard,
//! not what was synthesized. Gaps are silence; both channels stay aligned
//! with session time.
//!
//! The audio path only clones a frame (reference-counted bytes) into a
//! bounded channel with `try_send`. One thread per call (`writer`) places
//! the audio (`mixer`, sans-IO) and streams it to
//! `{dir}/{call_id}.wav.part` (`spool`, through hound), a block at a time,
//! so memory per call stays flat however long the call. When the writer
//! falls behind, audio is dropped (counted, and the recording marked
//! degraded) rather than held. At the end of the session the header is
//! fixed, the file synced and renamed to `{dir}/{call_id}.wav`: a file
//! under that name is always complete (another process uploads them). A
//! full disk or an unwritable directory fails the recording, not the
//! call: the partial file is removed and the outcome says why.
//!
//! The outcome ([`CallRecording`](crate::store::CallRecording)) goes to the
//! call record through the session's call writer, before the call is
//! marked completed.
//!
//! | file | what |
//! |---|---|
//! | `recorder` | [`Recorder`]: what the session holds; the feed the audio path calls |
//! | `mixer` | the two channels on the session timeline (sans-IO) |
//! | `spool` | the WAV on disk: `.wav.part`, then renamed |
//! | `writer` | the thread that does the file I/O |

mod mixer;
mod recorder;
mod spool;
mod writer;

pub use recorder::Recorder;
