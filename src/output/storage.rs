//! The storage root: every file target is confined under it.
//!
//! `..` and absolute escapes are refused by [`crate::model::config::confine`], symlink escapes
//! here (the parent directory is canonicalised and must lie under the canonical root; an
//! existing symlink as the file itself is refused).

use std::path::{Path, PathBuf};

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
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    root: PathBuf,
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

    /// The absolute path of a confined relative target path (see
    /// [`crate::model::config::confine`]); creates its parent directories and refuses symlink escapes.
    pub fn resolve(&self, rel: &Path) -> Result<PathBuf, MuxError> {
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(MuxError::Escape {
                path: rel.display().to_string(),
                reason: "must be a relative path without '..'".into(),
            });
        }
        std::fs::create_dir_all(&self.root).map_err(|e| MuxError::io(&self.root, &e))?;
        let root = std::fs::canonicalize(&self.root).map_err(|e| MuxError::io(&self.root, &e))?;
        let want = root.join(rel);
        let parent = want.parent().unwrap_or(&root);
        // walk down from the root so a symlinked directory is caught before anything is created
        // outside the root
        let mut cur = root.clone();
        if let Ok(sub) = parent.strip_prefix(&root) {
            for c in sub.components() {
                cur.push(c);
                match std::fs::symlink_metadata(&cur) {
                    Ok(_) => {
                        let canon =
                            std::fs::canonicalize(&cur).map_err(|e| MuxError::io(&cur, &e))?;
                        if !canon.starts_with(&root) {
                            return Err(MuxError::Escape {
                                path: rel.display().to_string(),
                                reason: "a symlink leads outside the storage root".into(),
                            });
                        }
                        if !canon.is_dir() {
                            return Err(MuxError::File {
                                path: cur.display().to_string(),
                                reason: "is not a directory".into(),
                            });
                        }
                        cur = canon;
                    }
                    Err(_) => {
                        std::fs::create_dir(&cur)
                            .or_else(|e| if cur.is_dir() { Ok(()) } else { Err(e) })
                            .map_err(|e| MuxError::io(&cur, &e))?;
                    }
                }
            }
        }
        let file = cur.join(want.file_name().unwrap_or_default());
        if let Ok(m) = std::fs::symlink_metadata(&file) {
            if m.file_type().is_symlink() {
                return Err(MuxError::Escape {
                    path: rel.display().to_string(),
                    reason: "the target is a symlink".into(),
                });
            }
            if m.is_dir() {
                return Err(MuxError::File {
                    path: file.display().to_string(),
                    reason: "is a directory".into(),
                });
            }
        }
        Ok(file)
    }
}

impl Storage {
    /// The file a new recording at `rel` is written to, created empty now so that no other
    /// writer can take it: `rel` itself when it does not exist (or `overwrite`), else the first
    /// free `stem_1.ext`, `stem_2.ext`, … in the same directory. Returns the absolute path and
    /// whether it was renamed.
    pub fn reserve(&self, rel: &Path, overwrite: bool) -> Result<(PathBuf, bool), MuxError> {
        let first = self.resolve(rel)?;
        if overwrite {
            return Ok((first, false));
        }
        let dir = first.parent().map(Path::to_path_buf).unwrap_or_default();
        let stem = first
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ext = first
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        for i in 0..10_000u32 {
            let p = if i == 0 {
                first.clone()
            } else {
                dir.join(format!("{stem}_{i}{ext}"))
            };
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&p)
            {
                Ok(_) => return Ok((p, i > 0)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(MuxError::io(&p, &e)),
            }
        }
        Err(MuxError::File {
            path: first.display().to_string(),
            reason: "10 000 recordings of this name exist already".into(),
        })
    }
}

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
    fn symlink_escapes_are_refused() {
        let root = tmp("sym");
        let outside = tmp("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("f.mp4"), root.join("f.mp4")).unwrap();
        let st = Storage::new(&root);
        let e = st.resolve(Path::new("link/a/b.mp4")).unwrap_err();
        assert!(matches!(e, MuxError::Escape { .. }), "{e}");
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
            st.resolve(Path::new("../x.mp4")),
            Err(MuxError::Escape { .. })
        ));
        // a symlink that stays inside is fine
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("alias")).unwrap();
        let p = st.resolve(Path::new("alias/x.mp4")).unwrap();
        assert!(p.starts_with(std::fs::canonicalize(&root).unwrap().join("real")));
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn existing_recordings_are_never_overwritten() {
        let root = tmp("reserve");
        let st = Storage::new(&root);
        let (a, renamed) = st.reserve(Path::new("d/rec.mp4"), false).unwrap();
        assert!(!renamed && a.ends_with("d/rec.mp4"));
        std::fs::write(&a, b"first").unwrap();
        let (b, renamed) = st.reserve(Path::new("d/rec.mp4"), false).unwrap();
        assert!(renamed && b.ends_with("d/rec_1.mp4"), "{}", b.display());
        let (c, _) = st.reserve(Path::new("d/rec.mp4"), false).unwrap();
        assert!(c.ends_with("d/rec_2.mp4"), "{}", c.display());
        assert_eq!(std::fs::read(&a).unwrap(), b"first");
        // overwrite: the name as given
        let (o, renamed) = st.reserve(Path::new("d/rec.mp4"), true).unwrap();
        assert!(!renamed && o == a);
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
