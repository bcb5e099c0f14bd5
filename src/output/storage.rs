//! The storage root: every file the recorder creates, renames, reads back or deletes lies under
//! it, and is reached without following a symbolic link.
//!
//! The rules (DESIGN.md "Storage safety"):
//! - Paths are relative, made of plain names (`..` and absolute paths are refused by
//!   [`crate::model::config::confine`] and again here).
//! - The root itself is opened once per operation as the operator named it (it may be a
//!   symlink: that is the operator's choice). Below it, every directory is opened with
//!   `openat(parent, name, O_DIRECTORY | O_NOFOLLOW)` from the one before, and created with
//!   `mkdirat`: **no symlink below the root is followed**, whether it leads out of the root or
//!   not, and a directory swapped for a symlink while we walk is caught by the kernel, not by a
//!   check made earlier.
//! - Files are created with `openat(dir, name, O_CREAT | O_EXCL | O_NOFOLLOW)` relative to that
//!   directory's descriptor: a name that exists (a file, a hard link, a symlink, anything) is
//!   never written through. `overwrite` unlinks the old name first (so a hard link to another
//!   file is cut, not written through), then creates a new file.
//! - FFmpeg writes through these descriptors: a file target's URL is `/proc/self/fd/N` of the
//!   file we created, an HLS target's is `/proc/self/fd/D/name` of its directory, and every
//!   further file the HLS muxer opens is created by our `io_open` callback in that directory
//!   (see [`super::muxer`]), its renames go through the same directory descriptor.
//! - Reads for upload open the file with `O_NOFOLLOW` and check it is a regular file, then read
//!   from that descriptor.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::MuxError;

/// The directory recordings are written under.
///
/// ```
/// use cloudmixer::output::Storage;
/// let dir = std::env::temp_dir().join(format!("cm-doc-{}", std::process::id()));
/// let st = Storage::new(&dir);
/// let p = st.resolve(std::path::Path::new("2021-09-24/rec.mp4")).unwrap();
/// assert!(p.starts_with(std::fs::canonicalize(&dir).unwrap()));
/// assert!(p.parent().unwrap().is_dir());
/// // a symlink below the root is never followed
/// std::os::unix::fs::symlink("/tmp", dir.join("elsewhere")).unwrap();
/// assert!(st.resolve(std::path::Path::new("elsewhere/rec.mp4")).is_err());
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    root: PathBuf,
}

/// An open directory under the storage root, reached without following symlinks.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    /// Its absolute path (for messages and reports; never used to open anything).
    path: PathBuf,
    /// Its path relative to the root.
    rel: PathBuf,
}

/// A file reserved for a new recording by [`Storage::reserve`]: created empty, open for
/// writing, so no other writer can take its name.
#[derive(Debug)]
pub struct Reserved {
    /// The directory it lies in.
    pub dir: Arc<Dir>,
    /// Its name in that directory.
    pub name: OsString,
    /// The file, open for writing.
    pub file: File,
    /// Its name differs from the one asked for (that name existed).
    pub renamed: bool,
}

impl Reserved {
    /// Its absolute path (for reports).
    pub fn path(&self) -> PathBuf {
        self.dir.path.join(&self.name)
    }

    /// Its path relative to the storage root.
    pub fn rel(&self) -> PathBuf {
        self.dir.rel.join(&self.name)
    }
}

/// (device, inode) of an open file.
pub(crate) fn identity(f: &impl AsRawFd) -> Option<(u64, u64)> {
    fstat(f.as_raw_fd()).map(|s| (s.st_dev, s.st_ino))
}

fn fstat(fd: i32) -> Option<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: fd is an open descriptor; st is written by the kernel on success.
    let r = unsafe { libc::fstat(fd, st.as_mut_ptr()) };
    // SAFETY: initialised by a successful fstat (zeroed otherwise, never read then).
    (r == 0).then(|| unsafe { st.assume_init() })
}

fn cstr(name: &OsStr) -> std::io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the name contains a NUL byte",
        )
    })
}

fn last_err() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// A single plain name: not empty, no '/', not `.` or `..`.
fn plain_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    !b.is_empty() && b != b"." && b != b".." && !b.contains(&b'/') && !b.contains(&0)
}

impl Dir {
    /// The directory's absolute path (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its path relative to the storage root.
    pub fn rel(&self) -> &Path {
        &self.rel
    }

    pub(crate) fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// `/proc/self/fd/D/name`: a path the kernel resolves through this directory's descriptor
    /// (no component above it is looked up again). Only for FFmpeg, which opens by path.
    pub(crate) fn proc_path(&self, name: &OsStr) -> String {
        format!(
            "/proc/self/fd/{}/{}",
            self.fd.as_raw_fd(),
            name.to_string_lossy()
        )
    }

    fn err(&self, name: &OsStr, e: &std::io::Error) -> MuxError {
        MuxError::io(&self.path.join(name), e)
    }

    /// The entry `name` without following it: `None` when it does not exist.
    pub fn stat(&self, name: &OsStr) -> std::io::Result<Option<libc::stat>> {
        let c = cstr(name)?;
        let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
        // SAFETY: valid dirfd and NUL-terminated name; st written on success.
        let r = unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                st.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if r == 0 {
            // SAFETY: initialised by the successful fstatat.
            Ok(Some(unsafe { st.assume_init() }))
        } else {
            let e = last_err();
            if e.raw_os_error() == Some(libc::ENOENT) {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }

    /// Whether anything (a file, a symlink, a directory…) is named `name` here.
    pub fn exists(&self, name: &OsStr) -> bool {
        !matches!(self.stat(name), Ok(None))
    }

    fn openat(&self, name: &OsStr, flags: i32, mode: u32) -> std::io::Result<File> {
        if !plain_name(name) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a plain file name",
            ));
        }
        let c = cstr(name)?;
        // SAFETY: valid dirfd and NUL-terminated name; the result is a new descriptor we own.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(last_err());
        }
        // SAFETY: fd is a fresh, owned descriptor.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// Creates `name` for writing; it must not exist (`O_CREAT | O_EXCL | O_NOFOLLOW`).
    pub fn create_new(&self, name: &OsStr) -> std::io::Result<File> {
        self.openat(name, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL, 0o666)
    }

    /// Creates `name` for writing, first unlinking whatever is there (a file, a hard link, a
    /// symlink): nothing is ever written through an existing name.
    pub fn create_replacing(&self, name: &OsStr) -> std::io::Result<File> {
        match self.unlink(name) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        self.create_new(name)
    }

    /// Opens the regular file `name` for reading, without following a symlink.
    pub fn open_read(&self, name: &OsStr) -> std::io::Result<File> {
        let f = self
            .openat(name, libc::O_RDONLY | libc::O_NONBLOCK, 0)
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "is a symlink (symlinks below the storage root are never followed)",
                    )
                } else {
                    e
                }
            })?;
        match fstat(f.as_raw_fd()) {
            Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG => Ok(f),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            )),
        }
    }

    /// Removes the entry `name` (not a directory).
    pub fn unlink(&self, name: &OsStr) -> std::io::Result<()> {
        if !plain_name(name) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a plain file name",
            ));
        }
        let c = cstr(name)?;
        // SAFETY: valid dirfd and NUL-terminated name.
        if unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) } == 0 {
            Ok(())
        } else {
            Err(last_err())
        }
    }

    /// Renames `from` to `to`, both in this directory (an existing `to` is replaced, never
    /// followed).
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> std::io::Result<()> {
        if !plain_name(from) || !plain_name(to) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a plain file name",
            ));
        }
        let (a, b) = (cstr(from)?, cstr(to)?);
        let fd = self.fd.as_raw_fd();
        // SAFETY: valid dirfd and NUL-terminated names.
        if unsafe { libc::renameat(fd, a.as_ptr(), fd, b.as_ptr()) } == 0 {
            Ok(())
        } else {
            Err(last_err())
        }
    }

    /// Writes `name` atomically: `name.tmp` (anything there is unlinked first) is written and
    /// synced, then renamed over `name`. Returns the new file, still open and holding an
    /// exclusive `flock` (taken before the rename).
    pub fn write_atomic(&self, name: &OsStr, body: &[u8]) -> std::io::Result<File> {
        use std::io::Write;
        let mut tmp = name.to_os_string();
        tmp.push(".tmp");
        let mut f = self.create_replacing(&tmp)?;
        // locked before it has its name: a reader that takes the lock knows the writer is gone
        // SAFETY: flock on the descriptor we just created.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        let res = f.write_all(body).and_then(|_| f.sync_all());
        if let Err(e) = res.and_then(|_| self.rename(&tmp, name)) {
            let _ = self.unlink(&tmp);
            return Err(e);
        }
        Ok(f)
    }

    /// The names in this directory (`.` and `..` left out).
    pub fn entries(&self) -> std::io::Result<Vec<OsString>> {
        // SAFETY: dup of a valid descriptor; fdopendir takes ownership of the copy.
        let dup = unsafe { libc::fcntl(self.fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return Err(last_err());
        }
        // SAFETY: dup is an open directory descriptor, owned by the DIR from here on.
        let d = unsafe { libc::fdopendir(dup) };
        if d.is_null() {
            let e = last_err();
            // SAFETY: fdopendir failed, so dup is still ours to close.
            unsafe { libc::close(dup) };
            return Err(e);
        }
        // SAFETY: d is a valid DIR stream positioned anywhere: rewind first.
        unsafe { libc::rewinddir(d) };
        let mut out = Vec::new();
        loop {
            // SAFETY: d is a valid DIR stream; the entry lives until the next readdir.
            let ent = unsafe { libc::readdir(d) };
            if ent.is_null() {
                break;
            }
            // SAFETY: d_name is NUL-terminated within the entry.
            let name = unsafe { std::ffi::CStr::from_ptr((*ent).d_name.as_ptr()) };
            let b = name.to_bytes();
            if b != b"." && b != b".." {
                out.push(OsStr::from_bytes(b).to_os_string());
            }
        }
        // SAFETY: closes the stream and its descriptor once.
        unsafe { libc::closedir(d) };
        Ok(out)
    }

    /// Opens the subdirectory `name`, without following a symlink.
    pub fn subdir(&self, name: &OsStr) -> std::io::Result<Dir> {
        let f = self.openat(name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        Ok(Dir {
            fd: OwnedFd::from(f),
            path: self.path.join(name),
            rel: self.rel.join(name),
        })
    }
}

impl Storage {
    /// Storage under `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Storage { root: root.into() }
    }

    /// The root as given.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The root directory, created if missing.
    pub fn root_dir(&self) -> Result<Dir, MuxError> {
        std::fs::create_dir_all(&self.root).map_err(|e| MuxError::io(&self.root, &e))?;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&self.root)
            .map_err(|e| MuxError::io(&self.root, &e))?;
        let path = std::fs::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone());
        Ok(Dir {
            fd: OwnedFd::from(f),
            path,
            rel: PathBuf::new(),
        })
    }

    /// Splits a relative target path into its directory and file name, refusing anything but
    /// plain names.
    pub fn split(rel: &Path) -> Result<(PathBuf, OsString), MuxError> {
        let escape = |reason: &str| MuxError::Escape {
            path: rel.display().to_string(),
            reason: reason.into(),
        };
        if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(escape("must be a relative path without '..'"));
        }
        if rel.as_os_str().as_bytes().contains(&0) {
            return Err(escape("contains a NUL byte"));
        }
        let name = rel
            .file_name()
            .ok_or_else(|| escape("has no file name"))?
            .to_os_string();
        let dir = rel.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok((dir, name))
    }

    /// Opens the directory `rel_dir` under the root, creating the missing ones when `create`;
    /// a symlink at any level below the root is refused ([`MuxError::Escape`]), a file where a
    /// directory should be is a [`MuxError::File`].
    pub fn open_dir(&self, rel_dir: &Path, create: bool) -> Result<Dir, MuxError> {
        let mut cur = self.root_dir()?;
        for c in rel_dir.components() {
            let Component::Normal(name) = c else {
                return Err(MuxError::Escape {
                    path: rel_dir.display().to_string(),
                    reason: "must be a relative path without '..'".into(),
                });
            };
            let next = match cur.subdir(name) {
                Ok(d) => d,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create => {
                    let cn = cstr(name).map_err(|e| cur.err(name, &e))?;
                    // SAFETY: valid dirfd and NUL-terminated name.
                    let r = unsafe { libc::mkdirat(cur.raw_fd(), cn.as_ptr(), 0o777) };
                    if r != 0 {
                        let e = last_err();
                        if e.raw_os_error() != Some(libc::EEXIST) {
                            return Err(cur.err(name, &e));
                        }
                    }
                    cur.subdir(name)
                        .map_err(|e| self.walk_err(&cur, name, rel_dir, &e))?
                }
                Err(e) => return Err(self.walk_err(&cur, name, rel_dir, &e)),
            };
            cur = next;
        }
        Ok(cur)
    }

    fn walk_err(&self, cur: &Dir, name: &OsStr, rel: &Path, e: &std::io::Error) -> MuxError {
        match cur.stat(name) {
            Ok(Some(st)) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => MuxError::Escape {
                path: rel.display().to_string(),
                reason: format!(
                    "{} is a symlink (symlinks below the storage root are never followed)",
                    cur.rel.join(name).display()
                ),
            },
            Ok(Some(st)) if st.st_mode & libc::S_IFMT != libc::S_IFDIR => MuxError::File {
                path: cur.path.join(name).display().to_string(),
                reason: "is not a directory".into(),
            },
            _ => cur.err(name, e),
        }
    }

    /// The absolute path of a confined relative target path; creates its parent directories
    /// and refuses symlinks below the root (none is followed) and a directory or symlink as
    /// the file itself.
    pub fn resolve(&self, rel: &Path) -> Result<PathBuf, MuxError> {
        let (dir, name) = Self::split(rel)?;
        let d = self.open_dir(&dir, true)?;
        check_final(&d, &name, rel)?;
        Ok(d.path.join(&name))
    }

    /// The file a new recording at `rel` is written to, created empty now so that no other
    /// writer can take it: `rel` itself when nothing has that name (a symlink, a FIFO, a
    /// directory count as taken), else the first free `stem_1.ext`, `stem_2.ext`, … in the same
    /// directory. With `overwrite` the old file is unlinked first (a symlink or directory
    /// there is refused).
    pub fn reserve(&self, rel: &Path, overwrite: bool) -> Result<Reserved, MuxError> {
        self.reserve_with(rel, overwrite, |_| Vec::new())
    }

    /// As [`Storage::reserve`], where `side(stem)` gives the names of the files written next to
    /// the target with that stem (their names must be free too; a name ending in `*` means any
    /// name with that prefix).
    pub fn reserve_with(
        &self,
        rel: &Path,
        overwrite: bool,
        side: impl Fn(&str) -> Vec<String>,
    ) -> Result<Reserved, MuxError> {
        let (dir, name) = Self::split(rel)?;
        let d = Arc::new(self.open_dir(&dir, true)?);
        if overwrite {
            // replacing: a symlink there is refused (a free name is taken as it is)
            check_final(&d, &name, rel)?;
        }
        let (stem, ext) = stem_ext(&name);
        if overwrite {
            let file = d.create_replacing(&name).map_err(|e| d.err(&name, &e))?;
            return Ok(Reserved {
                dir: d,
                name,
                file,
                renamed: false,
            });
        }
        let listing = d.entries().map_err(|e| d.err(OsStr::new(""), &e))?;
        for i in 0..10_000u32 {
            let (cand, s) = if i == 0 {
                (name.clone(), stem.clone())
            } else {
                let s = format!("{stem}_{i}");
                (OsString::from(format!("{s}{ext}")), s)
            };
            let taken = side(&s).iter().any(|n| match n.strip_suffix('*') {
                Some(prefix) => listing
                    .iter()
                    .any(|e| e.as_bytes().starts_with(prefix.as_bytes())),
                None => d.exists(OsStr::new(n)),
            });
            if taken {
                continue;
            }
            match d.create_new(&cand) {
                Ok(file) => {
                    return Ok(Reserved {
                        dir: d,
                        name: cand,
                        file,
                        renamed: i > 0,
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(d.err(&cand, &e)),
            }
        }
        Err(MuxError::File {
            path: d.path.join(&name).display().to_string(),
            reason: "10 000 recordings of this name exist already".into(),
        })
    }

    /// For a series of numbered files `stem_0001.ext`, `stem_0002.ext`, … (segments): `rel`
    /// when no name of its series (`stem_0…`) exists in its directory, else the first
    /// `stem_1.ext`, `stem_2.ext`, … whose series is free. Creates the directory, no file (each
    /// file of the series is still created with [`Storage::reserve`]).
    pub fn free_series(&self, rel: &Path) -> Result<PathBuf, MuxError> {
        let (dir, name) = Self::split(rel)?;
        let d = self.open_dir(&dir, true)?;
        let (stem, ext) = stem_ext(&name);
        let listing = d.entries().map_err(|e| d.err(OsStr::new(""), &e))?;
        for i in 0..10_000u32 {
            let s = if i == 0 {
                stem.clone()
            } else {
                format!("{stem}_{i}")
            };
            let prefix = format!("{s}_0");
            if !listing
                .iter()
                .any(|e| e.as_bytes().starts_with(prefix.as_bytes()))
            {
                return Ok(if i == 0 {
                    rel.to_path_buf()
                } else {
                    dir.join(format!("{s}{ext}"))
                });
            }
        }
        Err(MuxError::File {
            path: d.path.join(&name).display().to_string(),
            reason: "10 000 series of this name exist already".into(),
        })
    }

    /// For a series continued by another process (a fleet's failover): the first index `≥
    /// first` whose file `stem_NNNN.ext` (or a renamed `stem_NNNN_N.ext`) does not exist in
    /// `rel`'s directory. Creates the directory, no file.
    pub fn free_index(&self, rel: &Path, first: u32) -> Result<u32, MuxError> {
        let (dir, name) = Self::split(rel)?;
        let d = self.open_dir(&dir, true)?;
        let (stem, _) = stem_ext(&name);
        let listing = d.entries().map_err(|e| d.err(OsStr::new(""), &e))?;
        for i in first.max(1)..first.max(1).saturating_add(10_000) {
            let prefix = format!("{stem}_{i:04}");
            let taken = listing.iter().any(|e| {
                let b = e.as_bytes();
                b.starts_with(prefix.as_bytes())
                    && matches!(b.get(prefix.len()), Some(b'.') | Some(b'_') | None)
            });
            if !taken {
                return Ok(i);
            }
        }
        Err(MuxError::File {
            path: d.path.join(&name).display().to_string(),
            reason: "10 000 segments of this series exist already".into(),
        })
    }

    /// The path of `abs` relative to the root, when it lies under it (no symlink resolved).
    /// The root itself is the empty path; a `..` in what follows is refused when opened.
    pub fn rel_of(&self, abs: &Path) -> Option<PathBuf> {
        let canon = std::fs::canonicalize(&self.root).ok();
        [Some(self.root.clone()), canon]
            .into_iter()
            .flatten()
            .find_map(|r| abs.strip_prefix(&r).ok().map(Path::to_path_buf))
    }
}

/// `rec.mp4` → (`rec`, `.mp4`).
fn stem_ext(name: &OsStr) -> (String, String) {
    let p = Path::new(name);
    let stem = p
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = p
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (stem, ext)
}

/// The target's own name must not be a symlink or a directory.
fn check_final(d: &Dir, name: &OsStr, rel: &Path) -> Result<(), MuxError> {
    match d.stat(name) {
        Ok(Some(st)) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => Err(MuxError::Escape {
            path: rel.display().to_string(),
            reason: "the target is a symlink (never followed)".into(),
        }),
        Ok(Some(st)) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => Err(MuxError::File {
            path: d.path.join(name).display().to_string(),
            reason: "is a directory".into(),
        }),
        Ok(_) => Ok(()),
        Err(e) => Err(d.err(name, &e)),
    }
}

use std::os::unix::fs::OpenOptionsExt;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::events::codes;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cm-mux-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn symlinks_below_the_root_are_never_followed() {
        let root = tmp("sym");
        let outside = tmp("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("f.mp4"), root.join("f.mp4")).unwrap();
        let st = Storage::new(&root);
        let e = st.resolve(Path::new("link/a/b.mp4")).unwrap_err();
        assert!(matches!(e, MuxError::Escape { .. }), "{e}");
        assert!(e.to_string().contains("link is a symlink"), "{e}");
        assert_eq!(e.code(), codes::PARAM_ERR);
        assert!(
            !outside.join("a").exists(),
            "nothing created outside the root"
        );
        assert!(matches!(
            st.resolve(Path::new("f.mp4")),
            Err(MuxError::Escape { .. })
        ));
        assert!(matches!(
            st.reserve(Path::new("f.mp4"), true),
            Err(MuxError::Escape { .. })
        ));
        // a new recording named like the symlink takes the next free name
        let r = st.reserve(Path::new("f.mp4"), false).unwrap();
        assert!(r.renamed && r.path().ends_with("f_1.mp4"));
        assert!(!outside.join("f.mp4").exists());
        assert!(matches!(
            st.resolve(Path::new("../x.mp4")),
            Err(MuxError::Escape { .. })
        ));
        // a symlink that stays inside is refused too: nothing below the root is followed
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("alias")).unwrap();
        assert!(matches!(
            st.resolve(Path::new("alias/x.mp4")),
            Err(MuxError::Escape { .. })
        ));
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn existing_recordings_are_never_overwritten() {
        let root = tmp("reserve");
        let st = Storage::new(&root);
        let a = st.reserve(Path::new("d/rec.mp4"), false).unwrap();
        assert!(!a.renamed && a.path().ends_with("d/rec.mp4"));
        assert_eq!(a.rel(), Path::new("d/rec.mp4"));
        std::fs::write(a.path(), b"first").unwrap();
        let b = st.reserve(Path::new("d/rec.mp4"), false).unwrap();
        assert!(
            b.renamed && b.path().ends_with("d/rec_1.mp4"),
            "{}",
            b.path().display()
        );
        let c = st.reserve(Path::new("d/rec.mp4"), false).unwrap();
        assert!(c.path().ends_with("d/rec_2.mp4"));
        assert_eq!(std::fs::read(a.path()).unwrap(), b"first");
        // side files: a name whose init segment exists is taken
        std::fs::write(root.join("d/live_init.mp4"), b"old").unwrap();
        let h = st
            .reserve_with(Path::new("d/live.m3u8"), false, |s| {
                vec![format!("{s}_init.mp4"), format!("{s}_0*")]
            })
            .unwrap();
        assert!(h.path().ends_with("d/live_1.m3u8"));
        assert_eq!(std::fs::read(root.join("d/live_init.mp4")).unwrap(), b"old");
        // overwrite: the name as given, a new file (a hard link is cut, not written through)
        std::fs::hard_link(a.path(), root.join("keep.mp4")).unwrap();
        let o = st.reserve(Path::new("d/rec.mp4"), true).unwrap();
        assert!(!o.renamed && o.path() == a.path());
        assert_eq!(std::fs::read(root.join("keep.mp4")).unwrap(), b"first");
        assert_eq!(std::fs::metadata(a.path()).unwrap().len(), 0);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn not_a_directory_is_a_file_error() {
        let root = tmp("notdir");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("plain"), b"x").unwrap();
        let e = Storage::new(&root)
            .resolve(Path::new("plain/x.mp4"))
            .unwrap_err();
        assert_eq!(e.code(), codes::FILE_ERR, "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
