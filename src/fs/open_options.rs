//! [`OpenOptions`]: how a [`File`] is opened, as with `std::fs::OpenOptions`.

use std::io;
use std::path::Path;

use super::File;

/// Options and flags for opening a [`File`], with the rules of `std::fs::OpenOptions`.
///
/// ```
/// use coreio::fs::OpenOptions;
///
/// coreio::block_on(async {
///     let path = std::env::temp_dir().join(format!("coreio-doc-options-{}", std::process::id()));
///     let log = OpenOptions::new()
///         .append(true)
///         .create(true)
///         .mode(0o600)
///         .open(&path)
///         .await?;
///     let (written, _) = log.write_at(b"one line\n".as_slice(), 0).await;
///     assert_eq!(written?, 9);
///     log.sync_data().await?;
///     coreio::fs::remove_file(&path).await
/// })
/// .unwrap()
/// .unwrap();
/// ```
///
/// `custom_flags` adds `open(2)` flags such as `O_DIRECT`, `O_DSYNC` or `O_NOATIME`; a file
/// opened with `O_DIRECT` learns its alignment at open ([`File::dio_alignment`]) and refuses
/// misaligned I/O before it reaches the kernel. `O_CLOEXEC` is always set.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    truncate: bool,
    create: bool,
    create_new: bool,
    mode: libc::mode_t,
    custom_flags: i32,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions::new()
    }
}

impl OpenOptions {
    /// No access at all, mode `0o666` (less the umask): set at least `read`, `write` or
    /// `append`.
    pub fn new() -> OpenOptions {
        OpenOptions {
            read: false,
            write: false,
            append: false,
            truncate: false,
            create: false,
            create_new: false,
            mode: 0o666,
            custom_flags: 0,
        }
    }

    /// Open for reading.
    pub fn read(&mut self, read: bool) -> &mut Self {
        self.read = read;
        self
    }

    /// Open for writing.
    pub fn write(&mut self, write: bool) -> &mut Self {
        self.write = write;
        self
    }

    /// Open for appending (`O_APPEND`, implies writing): on Linux every write then goes to the
    /// end of the file, whatever offset it names.
    pub fn append(&mut self, append: bool) -> &mut Self {
        self.append = append;
        self
    }

    /// Truncate an existing file to 0 bytes (needs `write`).
    pub fn truncate(&mut self, truncate: bool) -> &mut Self {
        self.truncate = truncate;
        self
    }

    /// Create the file if it does not exist (needs `write` or `append`).
    pub fn create(&mut self, create: bool) -> &mut Self {
        self.create = create;
        self
    }

    /// Create the file, failing with `AlreadyExists` if it exists (`O_EXCL`; needs `write` or
    /// `append`). `create` and `truncate` are then ignored.
    pub fn create_new(&mut self, create_new: bool) -> &mut Self {
        self.create_new = create_new;
        self
    }

    /// The permission bits a created file gets (before the umask). Default `0o666`.
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = mode as libc::mode_t;
        self
    }

    /// Extra `open(2)` flags, such as `libc::O_DIRECT`, `O_DSYNC` or `O_NOATIME`; the access
    /// mode bits (`O_ACCMODE`) are ignored, the options above set them.
    pub fn custom_flags(&mut self, flags: i32) -> &mut Self {
        self.custom_flags = flags;
        self
    }

    /// Opens `path` with these options. Errors name the path.
    pub async fn open(&self, path: impl AsRef<Path>) -> io::Result<File> {
        let path = path.as_ref();
        let flags = self
            .flags()
            .map_err(|err| super::with_path(err, "opening", path))?;
        File::open_with(path, flags, self.mode).await
    }

    /// The `open(2)` flags, refusing the combinations std refuses.
    fn flags(&self) -> io::Result<i32> {
        let access = match (self.read, self.write, self.append) {
            (true, false, false) => libc::O_RDONLY,
            (false, true, false) => libc::O_WRONLY,
            (true, true, false) => libc::O_RDWR,
            (false, _, true) => libc::O_WRONLY | libc::O_APPEND,
            (true, _, true) => libc::O_RDWR | libc::O_APPEND,
            (false, false, false) => {
                return Err(invalid("no access mode: set read, write or append"));
            }
        };
        let writes = self.write || self.append;
        let creation = match (self.create, self.truncate, self.create_new) {
            (_, _, true) if !writes => {
                return Err(invalid("create_new needs write or append access"));
            }
            (_, _, true) => libc::O_CREAT | libc::O_EXCL,
            (true, _, false) | (_, true, false) if !writes => {
                return Err(invalid("create and truncate need write or append access"));
            }
            (_, true, false) if self.append => {
                return Err(invalid("truncate and append cannot be combined"));
            }
            (false, false, false) => 0,
            (true, false, false) => libc::O_CREAT,
            (false, true, false) => libc::O_TRUNC,
            (true, true, false) => libc::O_CREAT | libc::O_TRUNC,
        };
        Ok(access | creation | (self.custom_flags & !libc::O_ACCMODE))
    }
}

fn invalid(message: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_the_std_rules() {
        let flags = |options: &OpenOptions| options.flags().map_err(|err| err.to_string());
        assert_eq!(flags(OpenOptions::new().read(true)), Ok(libc::O_RDONLY));
        assert_eq!(
            flags(OpenOptions::new().write(true).create(true).truncate(true)),
            Ok(libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC)
        );
        assert_eq!(
            flags(OpenOptions::new().append(true).create_new(true)),
            Ok(libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_EXCL)
        );
        assert_eq!(
            flags(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_DIRECT | libc::O_WRONLY)
            ),
            Ok(libc::O_RDWR | libc::O_DIRECT)
        );
        assert!(
            flags(&OpenOptions::new())
                .unwrap_err()
                .contains("no access mode")
        );
        assert!(
            flags(OpenOptions::new().read(true).create(true))
                .unwrap_err()
                .contains("need write")
        );
        assert!(
            flags(OpenOptions::new().append(true).truncate(true))
                .unwrap_err()
                .contains("cannot be combined")
        );
    }
}
