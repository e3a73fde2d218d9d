//! Reading the files specter is pointed at (provider specs, the gateway configuration, PEM
//! certificate files): regular files only, and never more than a cap.
//!
//! A path is followed through symbolic links (a link to a regular file is read, as deployment
//! tools mount files through links); what it names must be a regular file: a FIFO would block the
//! reader until some writer appears, a device could be endless. The size is checked before
//! reading and the read itself stops one byte past the cap, so a file that grows meanwhile is
//! still refused, never read whole. On Unix the file is opened non-blocking, so a regular file
//! swapped for a FIFO between the check and the open cannot block either.
//!
//! ```
//! let text = specter::unstable::files::read_text(std::path::Path::new("Cargo.toml"), 1 << 20).unwrap();
//! assert!(text.contains("[package]"));
//! ```

use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Largest provider spec file read, in bytes, unless configured otherwise: 4 MiB, a hundred times
/// the largest bundled spec.
pub const DEFAULT_MAX_SPEC_FILE_BYTES: u64 = 4 << 20;

/// Largest sum of the provider spec files of one load, in bytes, unless configured otherwise.
pub const DEFAULT_MAX_SPEC_TOTAL_BYTES: u64 = 64 << 20;

/// Largest gateway configuration file read, in bytes.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1 << 20;

/// Largest PEM certificate file read, in bytes (a full public CA bundle is about 250 KB).
pub const MAX_PEM_FILE_BYTES: u64 = 4 << 20;

/// Size caps of one load of provider specs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Largest single file, in bytes.
    pub max_file_bytes: u64,
    /// Largest sum of all files, in bytes.
    pub max_total_bytes: u64,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_file_bytes: DEFAULT_MAX_SPEC_FILE_BYTES,
            max_total_bytes: DEFAULT_MAX_SPEC_TOTAL_BYTES,
        }
    }
}

/// Why a file was not read.
///
/// ```
/// use specter::{Catalog, LoadError};
///
/// // A provider path that is not a regular file (here a directory named like a spec) is refused.
/// let dir = tempfile::tempdir().unwrap();
/// let odd = dir.path().join("odd.yaml");
/// std::fs::create_dir(&odd).unwrap();
/// std::fs::create_dir(odd.join("inner.yaml")).unwrap();
/// match Catalog::load(&[odd]) {
///     Err(LoadError::File(e)) => assert!(e.path().ends_with("inner.yaml")),
///     other => println!("{other:?}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The operating system refused (missing file, permissions, ...).
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The path names something other than a regular file.
    #[error("cannot read {path}: it is a {kind}, not a regular file")]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is instead (`FIFO`, `directory`, ...).
        kind: &'static str,
    },
    /// The file is larger than the cap.
    #[error("cannot read {path}: it holds more than {max} bytes (the limit)")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The cap.
        max: u64,
    },
    /// The files of one load are together larger than the cap.
    #[error("cannot read the provider files of {path}: together they hold {total} bytes, more than {max} (the limit)")]
    TotalTooLarge {
        /// The directory or first file given.
        path: PathBuf,
        /// Their sizes summed.
        total: u64,
        /// The cap.
        max: u64,
    },
}

impl ReadError {
    /// The file or directory the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ReadError::Io { path, .. }
            | ReadError::NotRegular { path, .. }
            | ReadError::TooLarge { path, .. }
            | ReadError::TotalTooLarge { path, .. } => path,
        }
    }
}

/// What a file type is, in words, for the error of a non-regular file.
fn kind_of(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_dir() {
        return "directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if file_type.is_fifo() {
            return "FIFO";
        }
        if file_type.is_socket() {
            return "socket";
        }
        if file_type.is_char_device() {
            return "character device";
        }
        if file_type.is_block_device() {
            return "block device";
        }
    }
    "special file"
}

/// The size of the regular file at `path` (symbolic links followed), or why it is not one.
pub fn regular_file_size(path: &Path) -> Result<u64, ReadError> {
    let meta = std::fs::metadata(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular {
            path: path.to_path_buf(),
            kind: kind_of(meta.file_type()),
        });
    }
    Ok(meta.len())
}

/// Opens a file for reading without blocking on a FIFO.
fn open(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NONBLOCK);
    }
    options.open(path)
}

/// Reads the regular file at `path`, refusing it when it holds more than `max` bytes.
pub fn read_bytes(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let too_large = || ReadError::TooLarge {
        path: path.to_path_buf(),
        max,
    };
    if regular_file_size(path)? > max {
        return Err(too_large());
    }
    let file = open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular {
            path: path.to_path_buf(),
            kind: kind_of(meta.file_type()),
        });
    }
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > max {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Reads the regular file at `path` as UTF-8 text, refusing it when it holds more than `max`
/// bytes.
pub fn read_text(path: &Path, max: u64) -> Result<String, ReadError> {
    let bytes = read_bytes(path, max)?;
    String::from_utf8(bytes).map_err(|e| ReadError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("specter-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_file_over_the_cap_is_refused_and_one_at_the_cap_is_read() {
        let dir = temp("cap");
        let path = dir.join("a.yaml");
        std::fs::write(&path, "x".repeat(10)).unwrap();
        assert_eq!(read_text(&path, 10).unwrap().len(), 10);
        let err = read_text(&path, 9).unwrap_err();
        assert!(matches!(err, ReadError::TooLarge { max: 9, .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "cannot read {}: it holds more than 9 bytes (the limit)",
                path.display()
            )
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_directory_is_not_read() {
        let dir = temp("dir");
        let err = read_text(&dir, 100).unwrap_err();
        assert!(
            matches!(
                err,
                ReadError::NotRegular {
                    kind: "directory",
                    ..
                }
            ),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = temp("fifo");
        let path = dir.join("x.yaml");
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(made.success());
        let err = read_text(&path, 100).unwrap_err();
        assert!(
            matches!(err, ReadError::NotRegular { kind: "FIFO", .. }),
            "{err}"
        );
        assert_eq!(err.path(), path);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    #[test]
    fn a_symbolic_link_to_a_regular_file_is_read() {
        let dir = temp("link");
        std::fs::write(dir.join("real.yaml"), "id: x\n").unwrap();
        std::os::unix::fs::symlink(dir.join("real.yaml"), dir.join("link.yaml")).unwrap();
        assert_eq!(read_text(&dir.join("link.yaml"), 100).unwrap(), "id: x\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
