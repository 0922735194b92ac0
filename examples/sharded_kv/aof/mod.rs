//! Durability: each shard's append-only file, in the spirit of Redis's AOF.
//!
//! With `--dir DIR` every core keeps `DIR/shard-N.aof` for its shard (`N` its position among
//! the cores). A write command changes the map, then appends its [`Record`] to this core's
//! log ([`log_set`], [`log_del`]); a flusher task writes what has accumulated with one
//! `write_all_at` and, under `--appendfsync always`, one `sync_data`, which covers every record
//! of the batch: group commit, so throughput does not fall to one fsync per command. The
//! policies are Redis's:
//!
//! - `always`: a write is acknowledged once its record is synced ([`barrier`] waits for it);
//! - `everysec` (the default): a write is acknowledged once its record is written (in the page
//!   cache: a crash of the process loses no acknowledged write), and the file is synced once a
//!   second, so a crash of the machine loses at most about a second;
//! - `no`: as `everysec`, but the kernel syncs when it likes.
//!
//! On start each core replays its file ([`open`]). A record cut short at the end (the process
//! died mid-write) fails its checksum or its length: it is truncated away and reported. A bad
//! record with more after it is corruption: the start-up fails naming the file and the byte
//! offset, unless `--aof-repair` truncates the file there. When the file has grown past
//! `--aof-rewrite-min-size` and twice its size after the last rewrite, it is rewritten from the
//! live keys (`rewrite`): a new file is written beside it, synced, renamed over the old one,
//! and the directory synced, while the flusher goes on appending to the old file and copies
//! what it appends for the new one.
//!
//! Once a write or a sync fails, the log refuses further writes (they get an error reply, as
//! Redis's `MISCONF`): the file system may have dropped data, and a sync that later succeeds
//! would vouch for it wrongly (coreio's `File` keeps failing such syncs too).
//!
//! This module owns the log files; it must never acknowledge an `always` write before its sync
//! returned, nor lose a record that a rewrite did not copy.

pub mod record;

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use coreio::fs::{self, File, OpenOptions};

use crate::shard;
pub use record::Record;
use record::{Decoded, HEADER_LEN, Header};

/// When a record is made durable (`--appendfsync`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Always,
    EverySec,
    No,
}

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, String> {
        match text {
            "always" => Ok(Policy::Always),
            "everysec" => Ok(Policy::EverySec),
            "no" => Ok(Policy::No),
            other => Err(format!(
                "--appendfsync takes always, everysec or no, not {other:?}"
            )),
        }
    }
}

/// How the server persists, from the command line.
#[derive(Clone, Debug)]
pub struct Config {
    pub dir: PathBuf,
    pub policy: Policy,
    /// Truncate a corrupt file at its first bad record instead of refusing to start.
    pub repair: bool,
    /// Rewrite a file once it is at least this large (and twice its size after the last one).
    pub rewrite_min_size: u64,
}

/// Default `--aof-rewrite-min-size`, Redis's `auto-aof-rewrite-min-size`.
pub const DEFAULT_REWRITE_MIN_SIZE: u64 = 64 << 20;

/// How often `everysec` syncs.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// One core's log.
pub struct Aof {
    path: PathBuf,
    header: Header,
    dir: PathBuf,
    policy: Policy,
    rewrite_min_size: u64,
    /// The file appended to; replaced by a rewrite.
    file: RefCell<Rc<File>>,
    /// Where the next write goes.
    end: Cell<u64>,
    /// The file's size after the last rewrite (or at start).
    base_size: Cell<u64>,
    /// Records appended and not yet handed to a write.
    pending: RefCell<Vec<u8>>,
    /// Records appended so far (a sequence number).
    appended: Cell<u64>,
    /// Records written (and under `always`, synced).
    durable: Cell<u64>,
    /// Bytes written since the last sync (`everysec`).
    unsynced: Cell<bool>,
    /// Tasks waiting for `durable` to advance ([`barrier`]).
    waiters: RefCell<Vec<Waker>>,
    /// The flusher, waiting for records.
    flusher: RefCell<Option<Waker>>,
    /// A write is under way (the rewrite's switch waits for it).
    flushing: Cell<bool>,
    /// A rewrite is switching files: the flusher holds off.
    switching: Cell<bool>,
    /// While a rewrite runs: what the flusher wrote meanwhile, for the new file.
    rewrite_tail: RefCell<Option<Vec<u8>>>,
    /// Why the log stopped taking writes.
    failed: RefCell<Option<String>>,
    /// Rewrites done.
    pub rewrites: Cell<u64>,
}

thread_local! {
    /// This core's log, when the server persists.
    static CURRENT: RefCell<Option<Rc<Aof>>> = const { RefCell::new(None) };
}

/// This core's log, if any.
pub fn current() -> Option<Rc<Aof>> {
    CURRENT.with_borrow(Clone::clone)
}

/// Whether this server persists (`CONFIG GET appendonly`).
pub fn enabled() -> bool {
    CURRENT.with_borrow(Option::is_some)
}

/// Why writes are refused, once the log failed.
pub fn refusal() -> Option<String> {
    current().and_then(|aof| aof.failed.borrow().clone())
}

/// Logs `SET key value` on this core's log (nothing without one).
pub fn log_set(key: &[u8], value: &[u8]) {
    log(&Record::Set { key, value });
}

/// Logs `DEL key` on this core's log (nothing without one).
pub fn log_del(key: &[u8]) {
    log(&Record::Del { key });
}

fn log(record: &Record<'_>) {
    CURRENT.with_borrow(|aof| {
        if let Some(aof) = aof {
            record::encode(record, &mut aof.pending.borrow_mut());
            aof.appended.set(aof.appended.get() + 1);
            if let Some(waker) = aof.flusher.borrow_mut().take() {
                waker.wake();
            }
        }
    });
}

/// Waits until everything this core logged so far is written: synced under `always`, in the
/// kernel's page cache under the other policies (where a crash of the process cannot lose it,
/// as with Redis, which writes its AOF buffer before it replies). An error once the log failed.
pub async fn barrier() -> Result<(), String> {
    let Some(aof) = current() else {
        return Ok(());
    };
    let target = aof.appended.get();
    poll_fn(|cx| {
        if let Some(message) = aof.failed.borrow().clone() {
            return Poll::Ready(Err(message));
        }
        if aof.durable.get() >= target {
            return Poll::Ready(Ok(()));
        }
        aof.waiters.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    })
    .await
}

/// What opening a log found.
#[derive(Debug)]
pub struct Opened {
    pub records: u64,
    pub keys: usize,
    /// A torn or repaired tail that was cut: at which offset, how many bytes.
    pub truncated: Option<(u64, u64)>,
}

/// Opens (or creates) shard `shard`'s log of `shards` in `config.dir`, replays it into this
/// core's shard, installs it as this core's log and starts its flusher. Errors name the file.
pub async fn open(config: &Config, shard: usize, shards: usize) -> Result<Opened, String> {
    let path = config.dir.join(format!("shard-{shard}.aof"));
    let shown = path.display().to_string();
    fs::create_dir_all(&config.dir)
        .await
        .map_err(|err| format!("cannot create {}: {err}", config.dir.display()))?;
    if shard == 0 {
        // Files for shards this run does not have: the key-to-shard map would differ.
        let extra = config.dir.join(format!("shard-{shards}.aof"));
        if fs::metadata(&extra).await.is_ok() {
            return Err(format!(
                "{} holds {} from a run with more cores: start with the same --cores \
                 (a key's shard depends on the number of cores)",
                config.dir.display(),
                extra.display()
            ));
        }
    }
    let expected = Header {
        shard: shard as u32,
        shards: shards as u32,
    };
    // A rewrite the last run did not finish: the log beside it is complete without it.
    let stale = path.with_extension("aof.rewrite");
    match fs::remove_file(&stale).await {
        Ok(()) => eprintln!(
            "sharded_kv: removed {}, an unfinished rewrite",
            stale.display()
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(format!("cannot remove {}: {err}", stale.display())),
    }
    let (file, loaded) = match fs::read(&path).await {
        Ok(bytes) => replay(&path, &bytes, expected, config.repair).await?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            (create(&path, &config.dir, expected).await?, Loaded::empty())
        }
        Err(err) => return Err(format!("cannot read {shown}: {err}")),
    };
    let keys = shard::with_local(|store| store.len());
    let aof = Rc::new(Aof {
        path,
        header: expected,
        dir: config.dir.clone(),
        policy: config.policy,
        rewrite_min_size: config.rewrite_min_size,
        file: RefCell::new(Rc::new(file)),
        end: Cell::new(loaded.end),
        base_size: Cell::new(loaded.end),
        pending: RefCell::new(Vec::with_capacity(64 * 1024)),
        appended: Cell::new(0),
        durable: Cell::new(0),
        unsynced: Cell::new(false),
        waiters: RefCell::new(Vec::new()),
        flusher: RefCell::new(None),
        flushing: Cell::new(false),
        switching: Cell::new(false),
        rewrite_tail: RefCell::new(None),
        failed: RefCell::new(None),
        rewrites: Cell::new(0),
    });
    CURRENT.with_borrow_mut(|current| *current = Some(Rc::clone(&aof)));
    drop(coreio::spawn(flush_loop(Rc::clone(&aof))));
    if config.policy == Policy::EverySec {
        drop(coreio::spawn(sync_every_second(Rc::clone(&aof))));
    }
    Ok(Opened {
        records: loaded.records,
        keys,
        truncated: loaded.truncated,
    })
}

/// What a replay found.
struct Loaded {
    records: u64,
    end: u64,
    truncated: Option<(u64, u64)>,
}

impl Loaded {
    fn empty() -> Loaded {
        Loaded {
            records: 0,
            end: HEADER_LEN as u64,
            truncated: None,
        }
    }
}

/// A new log with its header, durable (file and directory entry) before any record goes in.
async fn create(path: &Path, dir: &Path, header: Header) -> Result<File, String> {
    let shown = path.display();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .await
        .map_err(|err| format!("cannot create {shown}: {err}"))?;
    let mut bytes = Vec::with_capacity(HEADER_LEN);
    header.encode(&mut bytes);
    let (written, _) = file.write_all_at(bytes, 0).await;
    written.map_err(|err| format!("cannot write {shown}: {err}"))?;
    file.sync_all()
        .await
        .map_err(|err| format!("cannot sync {shown}: {err}"))?;
    sync_dir(dir).await?;
    Ok(file)
}

/// Applies the records of `bytes` (the file at `path`) to this core's shard.
async fn replay(
    path: &Path,
    bytes: &[u8],
    expected: Header,
    repair: bool,
) -> Result<(File, Loaded), String> {
    let shown = path.display();
    let header = Header::decode(bytes).map_err(|err| format!("{shown}: {err}"))?;
    if header != expected {
        return Err(format!(
            "{shown} belongs to shard {} of {}, not {} of {}: start with the same --cores",
            header.shard, header.shards, expected.shard, expected.shards
        ));
    }
    let mut at = HEADER_LEN;
    let mut records = 0;
    let mut bad = None;
    shard::with_local(|store| {
        while at < bytes.len() {
            match record::decode(&bytes[at..]) {
                Decoded::Record(record, used) => {
                    match record {
                        Record::Set { key, value } => store.set(key, value),
                        Record::Del { key } => {
                            store.del(key);
                        }
                    }
                    records += 1;
                    at += used;
                }
                Decoded::Incomplete => {
                    bad = Some((at, "record cut short", true));
                    break;
                }
                Decoded::Corrupt(why) => {
                    // Torn if nothing good could follow: a bad last record is a cut write.
                    let torn = record_reaches_end(&bytes[at..]);
                    bad = Some((at, why, torn));
                    break;
                }
            }
        }
    });
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .await
        .map_err(|err| format!("cannot open {shown}: {err}"))?;
    let mut truncated = None;
    if let Some((offset, why, torn)) = bad {
        let dropped = (bytes.len() - offset) as u64;
        if !torn && !repair {
            return Err(format!(
                "{shown}: corrupt record at byte offset {offset} ({why}), with {dropped} bytes \
                 from there to the end; start with --aof-repair to truncate the file at that \
                 offset (losing what follows it)"
            ));
        }
        let what = if torn {
            "torn last record (the server stopped mid-write)"
        } else {
            "corrupt record, --aof-repair given"
        };
        eprintln!(
            "sharded_kv: {shown}: {what} at byte offset {offset} ({why}): truncating \
             {dropped} bytes"
        );
        file.set_len(offset as u64)
            .await
            .map_err(|err| format!("cannot truncate {shown}: {err}"))?;
        file.sync_all()
            .await
            .map_err(|err| format!("cannot sync {shown}: {err}"))?;
        truncated = Some((offset as u64, dropped));
        at = offset;
    }
    Ok((
        file,
        Loaded {
            records,
            end: at as u64,
            truncated,
        },
    ))
}

/// Whether a bad record at the start of `rest` is the file's last: its length field (if it is
/// plausible) reaches the end of the file, so no good record follows it.
fn record_reaches_end(rest: &[u8]) -> bool {
    if rest.len() < 8 {
        return true;
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    8usize.saturating_add(len) >= rest.len()
}

/// Makes a directory entry (a created or renamed file) durable.
async fn sync_dir(dir: &Path) -> Result<(), String> {
    let handle = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
        .await
        .map_err(|err| format!("cannot open {}: {err}", dir.display()))?;
    handle
        .sync_all()
        .await
        .map_err(|err| format!("cannot sync {}: {err}", dir.display()))
}

impl Aof {
    fn fail(&self, message: String) {
        eprintln!("sharded_kv: {message}; refusing writes from now on");
        self.failed.borrow_mut().get_or_insert(message);
        self.wake_waiters();
    }

    fn wake_waiters(&self) {
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waker in waiters {
            waker.wake();
        }
    }

    /// Writes and syncs everything appended so far, after a rewrite under way has finished:
    /// the end of a clean stop.
    pub async fn flush_and_sync(&self) -> Result<(), String> {
        while self.rewrite_tail.borrow().is_some() || self.switching.get() {
            coreio::time::sleep(Duration::from_millis(5)).await;
        }
        let target = self.appended.get();
        poll_fn(|cx| {
            if let Some(message) = self.failed.borrow().clone() {
                return Poll::Ready(Err(message));
            }
            if self.durable.get() >= target {
                return Poll::Ready(Ok(()));
            }
            self.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await?;
        let file = Rc::clone(&self.file.borrow());
        file.sync_data()
            .await
            .map_err(|err| format!("cannot sync {}: {err}", self.path.display()))
    }

    /// Waits for records to write (or for a rewrite's switch to end).
    async fn work(&self) {
        poll_fn(|cx| {
            if !self.pending.borrow().is_empty() && !self.switching.get() {
                return Poll::Ready(());
            }
            *self.flusher.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
    }

    fn wake_flusher(&self) {
        if let Some(waker) = self.flusher.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Whether the file has grown enough to be rewritten.
    fn wants_rewrite(&self) -> bool {
        let end = self.end.get();
        self.rewrite_tail.borrow().is_none()
            && end >= self.rewrite_min_size
            && end >= self.base_size.get().saturating_mul(2)
    }
}

/// The flusher: one write (and under `always` one sync) per batch of records, for as long as
/// the core runs.
async fn flush_loop(aof: Rc<Aof>) {
    let mut spare = Vec::with_capacity(64 * 1024);
    loop {
        aof.work().await;
        if aof.failed.borrow().is_some() {
            // Nothing more is written once the log failed; pending records are refused.
            aof.pending.borrow_mut().clear();
            aof.wake_waiters();
            continue;
        }
        let batch = std::mem::replace(&mut *aof.pending.borrow_mut(), spare);
        let upto = aof.appended.get();
        if let Some(tail) = aof.rewrite_tail.borrow_mut().as_mut() {
            tail.extend_from_slice(&batch);
        }
        aof.flushing.set(true);
        let file = Rc::clone(&aof.file.borrow());
        let (written, mut batch) = file.write_all_at(batch, aof.end.get()).await;
        let result = match written {
            Ok(()) => {
                aof.end.set(aof.end.get() + batch.len() as u64);
                if aof.policy == Policy::Always {
                    file.sync_data().await.map_err(|err| ("sync", err))
                } else {
                    aof.unsynced.set(true);
                    Ok(())
                }
            }
            Err(err) => Err(("write", err)),
        };
        aof.flushing.set(false);
        match result {
            Ok(()) => {
                aof.durable.set(upto);
                aof.wake_waiters();
            }
            Err((what, err)) => {
                aof.fail(format!("cannot {what} {}: {err}", aof.path.display()));
            }
        }
        batch.clear();
        spare = batch;
        if aof.wants_rewrite() {
            // From now on the flusher copies what it writes for the new file; everything
            // written before is in the map the snapshot will copy (records are blind writes:
            // one in both replays to the same value).
            *aof.rewrite_tail.borrow_mut() = Some(Vec::new());
            let aof = Rc::clone(&aof);
            drop(coreio::spawn(async move {
                if let Err(message) = rewrite(&aof).await {
                    eprintln!("sharded_kv: rewriting {}: {message}", aof.path.display());
                }
            }));
        }
    }
}

/// `everysec`: one `sync_data` a second, when something was written since the last.
async fn sync_every_second(aof: Rc<Aof>) {
    loop {
        coreio::time::sleep(SYNC_INTERVAL).await;
        if !aof.unsynced.replace(false) || aof.failed.borrow().is_some() {
            continue;
        }
        let file = Rc::clone(&aof.file.borrow());
        if let Err(err) = file.sync_data().await {
            aof.fail(format!("cannot sync {}: {err}", aof.path.display()));
        }
    }
}

/// Bytes of the snapshot written per write while rewriting.
const REWRITE_CHUNK: usize = 1 << 20;

/// Rewrites the log from the live keys (the flusher has started collecting its tail): a new
/// file from a snapshot of the shard, plus what the flusher appended to the old one meanwhile,
/// synced, renamed over the old one, directory synced. On failure the old file stays, complete.
async fn rewrite(aof: &Aof) -> Result<(), String> {
    let result = write_rewrite(aof).await;
    if result.is_err() {
        aof.rewrite_tail.borrow_mut().take();
        aof.switching.set(false);
        aof.wake_flusher();
    }
    result
}

async fn write_rewrite(aof: &Aof) -> Result<(), String> {
    // A copy of the shard: the map cannot be borrowed across the writes (Redis forks instead).
    let snapshot = shard::with_local(|store| store.snapshot());
    let tmp = aof.path.with_extension("aof.rewrite");
    let shown = tmp.display().to_string();
    let file = File::create(&tmp)
        .await
        .map_err(|err| format!("cannot create {shown}: {err}"))?;
    let mut chunk = Vec::with_capacity(REWRITE_CHUNK + 1024);
    aof.header.encode(&mut chunk);
    let mut end = 0u64;
    for (key, value) in &snapshot {
        record::encode(&Record::Set { key, value }, &mut chunk);
        if chunk.len() >= REWRITE_CHUNK {
            chunk = write_chunk(&file, &shown, chunk, &mut end).await?;
        }
    }
    drop(snapshot);
    // Switch: the flusher finishes the write it is in and holds off; what it wrote to the old
    // file since the snapshot goes to the new one, after the snapshot.
    aof.switching.set(true);
    while aof.flushing.get() {
        coreio::time::sleep(Duration::from_millis(1)).await;
    }
    if let Some(tail) = aof.rewrite_tail.borrow_mut().take() {
        chunk.extend_from_slice(&tail);
    }
    write_chunk(&file, &shown, chunk, &mut end).await?;
    file.sync_data()
        .await
        .map_err(|err| format!("cannot sync {shown}: {err}"))?;
    fs::rename(&tmp, &aof.path)
        .await
        .map_err(|err| format!("cannot rename {shown}: {err}"))?;
    sync_dir(&aof.dir).await?;
    // The new file is the log from here on (renaming leaves its descriptor as it was); the
    // old one closes when its last user lets go.
    *aof.file.borrow_mut() = Rc::new(file);
    aof.end.set(end);
    aof.base_size.set(end);
    aof.rewrites.set(aof.rewrites.get() + 1);
    aof.switching.set(false);
    aof.wake_flusher();
    Ok(())
}

/// Writes `chunk` at `*end` and advances it; gives the emptied buffer back.
async fn write_chunk(
    file: &File,
    shown: &str,
    chunk: Vec<u8>,
    end: &mut u64,
) -> Result<Vec<u8>, String> {
    let (written, mut chunk) = file.write_all_at(chunk, *end).await;
    written.map_err(|err| format!("cannot write {shown}: {err}"))?;
    *end += chunk.len() as u64;
    chunk.clear();
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_redis_s() {
        assert_eq!(Policy::parse("always"), Ok(Policy::Always));
        assert_eq!(Policy::parse("everysec"), Ok(Policy::EverySec));
        assert_eq!(Policy::parse("no"), Ok(Policy::No));
        assert!(
            Policy::parse("sometimes")
                .unwrap_err()
                .contains("always, everysec or no")
        );
    }

    #[test]
    fn a_bad_record_is_the_last_when_its_length_reaches_the_end() {
        assert!(record_reaches_end(&[1, 2, 3]));
        assert!(record_reaches_end(&[4, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]));
        assert!(!record_reaches_end(&[
            4, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5
        ]));
        assert!(record_reaches_end(&[255, 255, 255, 255, 0, 0, 0, 0, 9]));
    }
}
