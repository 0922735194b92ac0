//! Where a keyed command runs: on this core's shard at once, or on the owner's core through the
//! mesh, one request per core that owns some of the keys.
//!
//! It must never hold a shard borrowed across an `.await` (a shard is only touched inside
//! `shard::with_local`, which runs to completion), and never send work to another core but
//! through [`forward`].

use std::fmt;
use std::future::Future;

use coreio::CoreId;
use coreio::mesh::{self, MailboxError};

use super::Stats;
use crate::aof;
use crate::resp::{self, Request};
use crate::shard::{self, Store};

/// One core's view of the shards: every core, in the mesh's order, and which one is this.
#[derive(Debug)]
pub struct Router {
    cores: Vec<CoreId>,
    me: usize,
    /// This core's counters.
    pub stats: Stats,
}

impl Router {
    /// The router of the calling core; must run on a coreio core.
    pub fn new() -> Result<Router, String> {
        let cores = mesh::cores();
        let here = coreio::current_core().ok_or("sharded_kv must run on a coreio core")?;
        let me = cores
            .iter()
            .position(|&core| core == here)
            .ok_or_else(|| format!("{here} is not among the mesh's cores {cores:?}"))?;
        Ok(Router {
            cores,
            me,
            stats: Stats::default(),
        })
    }

    /// The number of shards (one per core).
    pub fn shards(&self) -> usize {
        self.cores.len()
    }

    /// This core's shard.
    pub fn me(&self) -> usize {
        self.me
    }

    /// `GET`, `SET` or `INCR` on the key's owner. A write is acknowledged once the owner's
    /// log has it (under `--appendfsync always`: synced), and refused once that log failed.
    pub(super) async fn keyed(&self, op: KeyOp, key: &[u8], value: &[u8], out: &mut Vec<u8>) {
        let owner = shard::owner(key, self.shards());
        let writes = op.writes();
        if owner == self.me {
            if writes && let Some(why) = aof::refusal() {
                return refused(&why, out);
            }
            let start = out.len();
            shard::with_local(|store| apply(store, op, key, value, out));
            if writes && let Err(why) = aof::barrier().await {
                out.truncate(start);
                refused(&why, out);
            }
            return;
        }
        let (key, value) = (key.to_vec(), value.to_vec());
        let job = move || async move {
            if writes && let Some(why) = aof::refusal() {
                return Err(why);
            }
            let reply = shard::with_local(|store| {
                let mut reply = Vec::new();
                match op {
                    // The copies made for the trip are the stored key and value.
                    KeyOp::Set => {
                        aof::log_set(&key, &value);
                        store.set_owned(key, value);
                        resp::push_ok(&mut reply);
                    }
                    KeyOp::Get | KeyOp::Incr => apply(store, op, &key, &value, &mut reply),
                }
                reply
            });
            if writes {
                aof::barrier().await?;
            }
            Ok(reply)
        };
        self.stats.forwarded.set(self.stats.forwarded.get() + 1);
        match forward(self.cores[owner], job).await {
            Ok(Ok(reply)) => out.extend_from_slice(&reply),
            Ok(Err(why)) => refused(&why, out),
            Err(err) => self.mailbox_error(owner, &err, out),
        }
    }

    /// `MGET key...`: every shard's keys in one request to that shard, the reply in key order.
    pub(super) async fn mget(&self, request: &Request<'_>, out: &mut Vec<u8>) {
        let keys = request.len() - 1;
        let owners: Vec<usize> = request
            .args_from(1)
            .map(|key| shard::owner(key, self.shards()))
            .collect();
        let remote = self
            .fan_out(request, &owners, false, |store, keys| {
                keys.iter()
                    .map(|key| store.get(key).map(<[u8]>::to_vec))
                    .collect::<Vec<_>>()
            })
            .await;
        let remote = match remote {
            Ok(remote) => remote,
            Err((owner, err)) => return self.mailbox_error(owner, &err, out),
        };
        let mut values: Vec<_> = remote.into_iter().map(Vec::into_iter).collect();
        resp::push_array_header(out, keys);
        shard::with_local(|store| {
            for (key, &owner) in request.args_from(1).zip(&owners) {
                if owner == self.me {
                    resp::push_bulk_or_nil(out, store.get(key));
                } else {
                    let value = values[owner].next().flatten();
                    resp::push_bulk_or_nil(out, value.as_deref());
                }
            }
        });
    }

    /// `DEL key...`: the number of keys that existed, over every shard; acknowledged once
    /// every owner's log has its deletions.
    pub(super) async fn del(&self, request: &Request<'_>, out: &mut Vec<u8>) {
        if let Some(why) = aof::refusal() {
            return refused(&why, out);
        }
        let owners: Vec<usize> = request
            .args_from(1)
            .map(|key| shard::owner(key, self.shards()))
            .collect();
        let remote = self
            .fan_out(request, &owners, true, |store, keys| {
                keys.iter().filter(|key| delete(store, key)).count()
            })
            .await;
        let remote = match remote {
            Ok(remote) => remote,
            Err((owner, err)) => return self.mailbox_error(owner, &err, out),
        };
        let local = shard::with_local(|store| {
            request
                .args_from(1)
                .zip(&owners)
                .filter(|&(key, &owner)| owner == self.me && delete(store, key))
                .count()
        });
        if let Err(why) = aof::barrier().await {
            return refused(&why, out);
        }
        let total = local + remote.iter().sum::<usize>();
        resp::push_integer(out, i64::try_from(total).unwrap_or(i64::MAX));
    }

    /// Runs `job` on every other shard that owns some of the request's keys (argument 1 on,
    /// owners in `owners`), one request per shard, all under way at once; a job that `writes`
    /// answers once its shard's log has what it logged. Returns, per shard, `job`'s result
    /// (the default for this shard and for shards with no key), or the first shard that failed.
    async fn fan_out<T: Default + Send + 'static>(
        &self,
        request: &Request<'_>,
        owners: &[usize],
        writes: bool,
        job: fn(&mut Store, Vec<Vec<u8>>) -> T,
    ) -> Result<Vec<T>, (usize, String)> {
        let mut groups: Vec<Vec<Vec<u8>>> = vec![Vec::new(); self.shards()];
        for (key, &owner) in request.args_from(1).zip(owners) {
            if owner != self.me {
                groups[owner].push(key.to_vec());
            }
        }
        let mut results: Vec<T> = (0..self.shards()).map(|_| T::default()).collect();
        let mut pending = Vec::new();
        for (owner, keys) in groups.into_iter().enumerate() {
            if !keys.is_empty() {
                self.stats.forwarded.set(self.stats.forwarded.get() + 1);
                let call = forward(self.cores[owner], move || async move {
                    if writes && let Some(why) = aof::refusal() {
                        return Err(why);
                    }
                    let result = shard::with_local(|store| job(store, keys));
                    if writes {
                        aof::barrier().await?;
                    }
                    Ok(result)
                });
                pending.push((owner, call));
            }
        }
        if pending.len() == 1 {
            // The common case with two cores: no task needed to overlap requests.
            let (owner, call) = pending.pop().expect("one pending request");
            results[owner] = call
                .await
                .map_err(|err| (owner, err.to_string()))?
                .map_err(|why| (owner, why))?;
            return Ok(results);
        }
        let tasks: Vec<_> = pending
            .into_iter()
            .map(|(owner, call)| (owner, coreio::spawn(call)))
            .collect();
        for (owner, task) in tasks {
            match task.await {
                Ok(Ok(Ok(result))) => results[owner] = result,
                Ok(Ok(Err(why))) => return Err((owner, why)),
                Ok(Err(err)) => return Err((owner, err.to_string())),
                // The task that carried the request was aborted or panicked.
                Err(err) => return Err((owner, err.to_string())),
            }
        }
        Ok(results)
    }

    /// The error reply for a request that `owner` did not answer.
    fn mailbox_error(&self, owner: usize, err: &dyn fmt::Display, out: &mut Vec<u8>) {
        let message = format!(
            "ERR shard {owner} ({}) did not answer: {err}",
            self.cores[owner]
        );
        resp::push_error(out, message.as_bytes());
    }
}

/// The one place where work crosses cores: runs `job` on `core` through the mesh and returns
/// its result. `job` runs on that core, so it may touch that core's shard (synchronously,
/// inside `shard::with_local`) and wait for that core's log.
fn forward<T, F, Fut>(
    core: CoreId,
    job: F,
) -> impl Future<Output = Result<T, MailboxError>> + 'static
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    mesh::submit_to(core, job)
}

/// A command on a single key.
#[derive(Clone, Copy, Debug)]
pub(super) enum KeyOp {
    Get,
    Set,
    Incr,
}

impl KeyOp {
    /// Whether the command changes the shard (and so is logged).
    fn writes(self) -> bool {
        !matches!(self, KeyOp::Get)
    }
}

/// Executes a single-key command on the shard that owns `key`, logging what it changes.
fn apply(store: &mut Store, op: KeyOp, key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    match op {
        KeyOp::Get => resp::push_bulk_or_nil(out, store.get(key)),
        KeyOp::Set => {
            store.set(key, value);
            aof::log_set(key, value);
            resp::push_ok(out);
        }
        KeyOp::Incr => match store.incr(key) {
            Ok(value) => {
                // Logged as the SET of the result: records are blind writes.
                if let Some(stored) = store.get(key) {
                    aof::log_set(key, stored);
                }
                resp::push_integer(out, value)
            }
            Err(err) => resp::push_error(out, err.message()),
        },
    }
}

/// Deletes `key` from `store`, logging it if it was there.
fn delete(store: &mut Store, key: &[u8]) -> bool {
    let existed = store.del(key);
    if existed {
        aof::log_del(key);
    }
    existed
}

/// The reply to a write the log cannot take (Redis answers `-MISCONF` in this spot).
fn refused(why: &str, out: &mut Vec<u8>) {
    let message = format!("ERR the append-only file cannot be written, writes are refused: {why}");
    resp::push_error(out, message.as_bytes());
}
