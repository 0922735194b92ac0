//! fsync errors are never swallowed, and a full disk is an error, never a short write passed off
//! as complete: tested on real file systems that fail, which the test builds itself (as root):
//!
//! - a 1 MiB tmpfs, which a write fills (`ENOSPC` at write time);
//! - an ext4 file system on a loop device whose backing file lives on a 4 MiB tmpfs: writes land
//!   in the page cache, and writeback then fails (`ENOSPC`, then `EIO`) when the backing store
//!   runs out. The kernel reports the failure to one `fsync` and then lets a later one succeed,
//!   although the data never reached the disk: the "fsyncgate" behaviour, shown by the std
//!   control below, that `File` must not pass on.
//!
//! - a btrfs file system on a loop device with a 1 MiB quota group on a subvolume: a write past
//!   the quota fails with `EDQUOT` (root is held to btrfs quotas too; this kernel has no ext4
//!   quota format, `CONFIG_QFMT_V2`, and no tmpfs quotas).
//!
//! Without root (or without `mount`, `losetup`, `mkfs.ext4`, `mkfs.btrfs` and `btrfs`, from
//! btrfs-progs) these cannot run: they say so and pass, except under `CI=true`, where they fail.

#[macro_use]
mod util;

use std::future::Future;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use coreio::Backend;
use coreio::fs::{File, OpenOptions};
use util::TempDir;

fn run<F>(backend: Backend, pool: bool, future: F) -> F::Output
where
    F: Future + 'static,
    F::Output: 'static,
{
    let mut builder = coreio::Builder::new().cores(1).backend(backend);
    if pool {
        builder = builder.deny_uring_opcodes(["FSYNC", "OPENAT", "CLOSE"]);
    }
    builder
        .block_on(future)
        .expect("the runtime failed to start")
}

/// Runs `command`; false (with the reason printed) if it cannot run or fails.
fn sh(command: &mut Command) -> bool {
    match command.output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            eprintln!(
                "{command:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            false
        }
        Err(err) => {
            eprintln!("{command:?} cannot run: {err}");
            false
        }
    }
}

/// Whether this process may build file systems; under `CI=true` it must.
fn can_mount() -> bool {
    // SAFETY: geteuid takes no arguments and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI runs as root: the durability tests must run there"
        );
        eprintln!("not root: skipping a test that mounts file systems");
    }
    root
}

/// A tmpfs of `size`, unmounted when dropped.
struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = TempDir::new("fs-tmpfs");
        let mounted = sh(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path()));
        mounted.then_some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        sh(Command::new("umount").arg("-l").arg(self.dir.path()));
    }
}

/// btrfs on a loop device (a 256 MiB sparse image) with quotas on and a subvolume limited to
/// `limit` bytes; unmounted and detached when dropped.
struct QuotaDisk {
    dir: TempDir,
    mount: PathBuf,
}

impl QuotaDisk {
    fn new(limit: &str) -> Option<QuotaDisk> {
        let dir = TempDir::new("fs-quota");
        let image = dir.join("image");
        let mount = dir.join("mnt");
        std::fs::create_dir(&mount).ok()?;
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(256 << 20))
            .ok()?;
        if !sh(Command::new("mkfs.btrfs").args(["-q", "-f"]).arg(&image)) {
            return None;
        }
        if !sh(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mount))
        {
            return None;
        }
        let disk = QuotaDisk { dir, mount };
        let sub = disk.mount.join("limited");
        let ready = sh(Command::new("btrfs")
            .args(["quota", "enable"])
            .arg(&disk.mount))
            && sh(Command::new("btrfs")
                .args(["subvolume", "create"])
                .arg(&sub))
            && sh(Command::new("btrfs")
                .args(["qgroup", "limit", limit])
                .arg(&sub));
        ready.then_some(disk)
    }

    /// A path in the subvolume the quota limits.
    fn file(&self, name: &str) -> PathBuf {
        self.mount.join("limited").join(name)
    }
}

impl Drop for QuotaDisk {
    fn drop(&mut self) {
        // The loop device of a `mount -o loop` goes with the unmount.
        sh(Command::new("umount").arg(&self.mount));
        let _ = &self.dir;
    }
}

/// ext4 on a loop device over a 64 MiB sparse image on a 4 MiB tmpfs: a disk whose writeback
/// fails once 4 MiB are written.
struct FailingDisk {
    mount_point: TempDir,
    loop_device: String,
    _backing: Tmpfs,
}

impl FailingDisk {
    fn new() -> Option<FailingDisk> {
        let backing = Tmpfs::mount("4m")?;
        let image = backing.path().join("disk.img");
        std::fs::File::create(&image).ok()?.set_len(64 << 20).ok()?;
        if !sh(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image)) {
            return None;
        }
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&image)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!("losetup failed: {}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        let loop_device = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let mount_point = TempDir::new("fs-failing");
        if !sh(Command::new("mount")
            .arg(&loop_device)
            .arg(mount_point.path()))
        {
            sh(Command::new("losetup").args(["-d", &loop_device]));
            return None;
        }
        Some(FailingDisk {
            mount_point,
            loop_device,
            _backing: backing,
        })
    }

    fn file(&self, name: &str) -> PathBuf {
        self.mount_point.join(name)
    }
}

impl Drop for FailingDisk {
    fn drop(&mut self) {
        sh(Command::new("umount")
            .arg("-l")
            .arg(self.mount_point.path()));
        sh(Command::new("losetup").args(["-d", &self.loop_device]));
    }
}

/// Writes 24 MiB (in the page cache: ext4 has room for it) then syncs three times.
const WRITE: usize = 24 << 20;

#[test]
fn the_kernel_itself_lets_a_later_fsync_succeed_after_a_failed_one() {
    // The control: what std (and any runtime that passes fsync through) reports.
    if !can_mount() {
        return;
    }
    let disk = FailingDisk::new().expect("building the failing disk");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(disk.file("control"))
        .unwrap();
    std::io::Write::write_all(&mut file, &vec![1u8; WRITE]).unwrap();
    let syncs: Vec<bool> = (0..3).map(|_| file.sync_data().is_ok()).collect();
    assert!(!syncs[0], "writeback to the full backing store must fail");
    assert!(
        syncs.contains(&true),
        "this kernel keeps failing fsync after a writeback error: the control no longer shows \
         the behaviour File guards against ({syncs:?})"
    );
}

both_backends! {
    fn a_failed_sync_keeps_failing_where_the_kernel_would_report_success(backend: Backend) {
        for pool in [false, true] {
            if !can_mount() {
                return;
            }
            let disk = FailingDisk::new().expect("building the failing disk");
            let path = disk.file("data");
            run(backend, pool, async move {
                let file = OpenOptions::new().write(true).create(true).open(&path).await.unwrap();
                let (written, _) = file.write_all_at(vec![2u8; WRITE], 0).await;
                written.expect("the page cache takes the writes");
                let first = file.sync_data().await.unwrap_err();
                assert!(
                    matches!(first.raw_os_error(), Some(libc::EIO | libc::ENOSPC)),
                    "{first}"
                );
                for _ in 0..3 {
                    let again = file.sync_all().await.unwrap_err();
                    assert!(again.to_string().contains("an earlier sync of this file failed"), "{again}");
                    assert_eq!(again.kind(), first.kind());
                    let again = file.sync_data().await.unwrap_err();
                    assert_eq!(again.kind(), first.kind());
                }
                drop(file);
            });
        }
    }

    fn a_full_disk_fails_the_write_instead_of_shortening_it(backend: Backend) {
        for pool in [false, true] {
            if !can_mount() {
                return;
            }
            let fs = Tmpfs::mount("1m").expect("mounting a 1 MiB tmpfs");
            let path = fs.path().join("full");
            run(backend, pool, async move {
                let file = File::create(&path).await.unwrap();
                let (result, buf) = file.write_all_at(vec![3u8; 2 << 20], 0).await;
                let err = result.expect_err("2 MiB cannot fit in 1 MiB");
                assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
                assert_eq!(err.kind(), io::ErrorKind::StorageFull);
                assert_eq!(buf.len(), 2 << 20, "the buffer comes back whole");
                // One write reports what fit; the next one the error.
                let (first, _) = file.write_at(vec![4u8; 2 << 20], 0).await;
                assert!(first.is_err() || first.as_ref().is_ok_and(|&n| n < 2 << 20), "{first:?}");
                file.close().await.unwrap();
            });
        }
    }

    fn a_write_past_the_quota_fails_instead_of_shortening_it(backend: Backend) {
        for pool in [false, true] {
            if !can_mount() {
                return;
            }
            let disk = QuotaDisk::new("1M").expect("a btrfs file system with a 1 MiB quota");
            let path = disk.file("over");
            run(backend, pool, async move {
                let file = File::create(&path).await.unwrap();
                let (result, buf) = file.write_all_at(vec![5u8; 4 << 20], 0).await;
                let err = result.expect_err("4 MiB cannot fit in a 1 MiB quota");
                assert_eq!(err.raw_os_error(), Some(libc::EDQUOT), "{err}");
                assert_eq!(err.kind(), io::ErrorKind::QuotaExceeded);
                assert_eq!(buf.len(), 4 << 20, "the buffer comes back whole");
                // A sync does not turn the failed write into a success.
                let synced = file.sync_all().await;
                let (again, _) = file.write_all_at(vec![6u8; 4 << 20], 0).await;
                assert!(again.is_err(), "a second write past the quota succeeded ({synced:?})");
                drop(file);
            });
            drop(disk);
        }
    }
}
