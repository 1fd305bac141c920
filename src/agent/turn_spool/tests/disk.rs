//! The replayer on a disk that hangs: FIFOs no one writes to stand for
//! files whose read never returns, until the test opens and closes their
//! other end. A blocking read stops paused time's auto-advance, so the
//! tests move the clock past the disk limit themselves.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::*;

/// A FIFO at `path`: a read of it waits for a writer, then for its end.
fn fifo(path: &Path) -> PathBuf {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success());
    path.to_owned()
}

/// Opens `fifo`'s other end: returns once a read of it has begun, and
/// holds that read until the file is dropped.
async fn hold_read(fifo: &Path) -> File {
    let fifo = fifo.to_owned();
    tokio::task::spawn_blocking(move || std::fs::OpenOptions::new().write(true).open(fifo))
        .await
        .unwrap()
        .unwrap()
}

/// True while some process (or pass) holds the owner directory's lock.
fn locked(owner: &Path) -> bool {
    let lock_file = File::open(owner.join(LOCK)).unwrap();
    match lock_file.try_lock() {
        Ok(()) => false,
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(std::fs::TryLockError::Error(err)) => panic!("{err}"),
    }
}

fn replaying(
    spool: &Arc<TurnSpool>,
    store: &Arc<MemoryStore>,
) -> tokio::task::JoinHandle<ReplayReport> {
    let (spool, store) = (Arc::clone(spool), Arc::clone(store));
    tokio::spawn(async move {
        let (_, hooks) = hooks();
        spool.replay(&*store, &hooks).await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_disk_ends_the_pass_and_the_next_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let spool =
        Arc::new(TurnSpool::new(dir.path(), STORE).with_disk_limit(Duration::from_millis(200)));
    left_by_a_writer(&spool, &whole_call("call-12"));
    // An older file whose read never returns: a FIFO no one writes to.
    let hung = fifo(&spool.own_dir().unwrap().join("0000000000001-hung.json"));
    let store = MemoryStore::new(StoreSettings::default());
    let (_, hooks) = hooks();

    let report = tokio::time::timeout(Duration::from_secs(30), spool.replay(&store, &hooks))
        .await
        .expect("the pass ends though the disk hangs");
    assert_eq!((report.written, report.waiting), (0, 2));
    assert!(store.call("call-12").await.unwrap().is_none());
    // Until the hung read returns, no pass starts.
    assert_eq!(spool.replay(&store, &hooks).await, ReplayReport::default());

    // The disk answers: the read gets the end of the FIFO.
    drop(hold_read(&hung).await);
    spool.disk_settled().await;
    std::fs::remove_file(&hung).unwrap();
    let report = spool.replay(&store, &hooks).await;
    assert_eq!((report.written, report.waiting), (1, 0));
    assert_eq!(texts(&store, "call-12").await.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_pass_holds_a_stopped_owners_lock_until_its_disk_work_ends() {
    let dir = tempfile::tempdir().unwrap();
    // A process that stopped during an outage, leaving a call and an older
    // file whose read hangs.
    let stopped = spool(dir.path());
    left_by_a_writer(&stopped, &whole_call("call-13"));
    let owner = stopped.own_dir().unwrap();
    let hung = fifo(&owner.join("0000000000001-hung.json"));
    drop(stopped);
    let this = spool(dir.path());
    let store = Arc::new(MemoryStore::new(StoreSettings::default()));

    let pass = replaying(&this, &store);
    let feed = hold_read(&hung).await;
    tokio::time::advance(DISK_LIMIT).await;
    let report = pass.await.unwrap();
    assert_eq!((report.written, report.waiting), (0, 2));
    // The pass has ended, but its read goes on and may still touch the
    // owner's files: no other process may take them yet.
    assert!(locked(&owner), "the lock went with the pass");

    // The read returns: the lock goes with it, and the next pass (here,
    // or another process's) writes the call.
    drop(feed);
    this.disk_settled().await;
    assert!(!locked(&owner), "the lock outlived the disk work");
    std::fs::remove_file(&hung).unwrap();
    let (_, hooks) = hooks();
    assert_eq!(this.replay(&*store, &hooks).await.written, 1);
    assert_eq!(texts(&*store, "call-13").await.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn every_piece_of_disk_work_given_up_on_holds_off_the_next_pass() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool(dir.path());
    let own = spool.own_dir().unwrap();
    let store = Arc::new(MemoryStore::new(StoreSettings::default()));
    // Two passes at once (the runtime's and an operator's `replay_spool`),
    // each stalled on a read of its own, the second given up on last.
    let first = fifo(&own.join("0000000000001-first.json"));
    let first_pass = replaying(&spool, &store);
    let first_feed = hold_read(&first).await;
    tokio::time::advance(DISK_LIMIT / 2).await;
    let second = fifo(&own.join("0000000000002-second.json"));
    let second_pass = replaying(&spool, &store);
    let second_feed = hold_read(&second).await;
    tokio::time::advance(DISK_LIMIT / 2).await;
    assert_eq!(first_pass.await.unwrap().waiting, 1);
    tokio::time::advance(DISK_LIMIT / 2).await;
    assert_eq!(second_pass.await.unwrap().waiting, 1);

    // The second read returns; the first still hangs.
    drop(second_feed);
    spool.disk_work.one_settled().await;
    assert!(
        spool.disk_stalled(),
        "only the last piece given up on was kept"
    );
    let (_, hooks) = hooks();
    assert_eq!(spool.replay(&*store, &hooks).await, ReplayReport::default());

    drop(first_feed);
    spool.disk_settled().await;
    assert!(!spool.disk_stalled());
    for fifo in [first, second] {
        std::fs::remove_file(fifo).unwrap();
    }
    assert_eq!(spool.replay(&*store, &hooks).await, ReplayReport::default());
}

#[tokio::test(start_paused = true)]
async fn at_most_a_bounded_number_of_pieces_of_disk_work_run_at_once() {
    use super::super::disk_work::{DiskWork, MAX_DISK_WORK, NotDone};
    let work = Arc::new(DiskWork::new(DISK_LIMIT));
    let (started, mut running) = tokio::sync::mpsc::unbounded_channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let released = Arc::new(std::sync::Mutex::new(released));
    let mut pieces = Vec::new();
    for _ in 0..MAX_DISK_WORK {
        let (work, started, released) = (Arc::clone(&work), started.clone(), Arc::clone(&released));
        pieces.push(tokio::spawn(async move {
            work.run(move || {
                started.send(()).unwrap();
                // Blocks until the test lets go (the sender dropped).
                let _ = released.lock().unwrap().recv();
            })
            .await
        }));
    }
    for _ in 0..MAX_DISK_WORK {
        running.recv().await.unwrap();
    }
    // One more would make the pieces given up on more than the bound.
    assert_eq!(work.run(|| ()).await, Err(NotDone::Refused));
    drop(release);
    for piece in pieces {
        assert_eq!(piece.await.unwrap(), Ok(()));
    }
    assert_eq!(work.run(|| 7).await, Ok(7));
}
