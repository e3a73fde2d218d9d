//! The traces file: an append-only JSON-lines file that is never left with a torn line and never
//! grows without bound.
//!
//! - Lines are built whole in memory (each with its newline) and a batch of them is written with
//!   one `write_all`. When a write fails or lands short (a full disk), the file is cut back to the
//!   length it had after its last whole line, the batch's lines count as lost, and the next batch
//!   writes normally once space frees.
//! - Opening the file repairs a torn last line left by a crash (a process killed inside a write
//!   system call, a power loss): a last line without its newline is cut away, never completed,
//!   so what stays is exactly the lines that were written whole.
//! - Rotation by size, like the OpenTelemetry Collector's file exporter but with numbered
//!   backups: when the next line would take the file past [`Rotation::max_bytes`],
//!   `specter-traces.jsonl` is renamed `specter-traces.1.jsonl`, older backups shift up one
//!   number (`.1` → `.2`, …), and the one beyond [`Rotation::max_files`] is deleted. Rotation
//!   happens only between lines, so no line is ever split across files; a single line longer
//!   than the limit gets a file of its own.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Size-based rotation of the traces file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Size past which the file is rotated, in bytes; 0 turns rotation off (the file grows
    /// without bound).
    pub max_bytes: u64,
    /// Rotated files kept beside the current one (`NAME.1.EXT` the newest); 0 keeps none (the
    /// file starts over when full).
    pub max_files: u32,
}

impl Rotation {
    /// The default size limit: 100 MiB, the OpenTelemetry Collector file exporter's.
    pub const DEFAULT_MAX_BYTES: u64 = 100 << 20;
    /// The default number of rotated files kept: 5, so at most 600 MiB on disk in all.
    pub const DEFAULT_MAX_FILES: u32 = 5;

    /// The rotation of the configured values, each defaulting when unset.
    pub fn configured(max_bytes: Option<u64>, max_files: Option<u32>) -> Rotation {
        Rotation {
            max_bytes: max_bytes.unwrap_or(Rotation::DEFAULT_MAX_BYTES),
            max_files: max_files.unwrap_or(Rotation::DEFAULT_MAX_FILES),
        }
    }
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation::configured(None, None)
    }
}

/// Why lines did not reach the traces file.
#[derive(Debug, thiserror::Error)]
pub enum TracesFileError {
    /// A value could not be encoded as JSON.
    #[error("cannot encode a span as JSON")]
    Encode(#[from] serde_json::Error),
    /// A file operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done: `write`, `open`, `rotate`, `repair`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The file operations the traces file needs: appending, cutting back and measuring. A plain
/// [`File`] opened for appending in production; tests inject files that fail.
pub trait LineFile: Write + Send + std::fmt::Debug {
    /// Truncates the file to `len` bytes.
    ///
    /// # Errors
    /// The operating system's.
    fn set_len(&mut self, len: u64) -> std::io::Result<()>;

    /// The file's current size in bytes.
    ///
    /// # Errors
    /// The operating system's.
    fn size(&self) -> std::io::Result<u64>;
}

impl LineFile for File {
    fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        File::set_len(self, len)
    }

    fn size(&self) -> std::io::Result<u64> {
        self.metadata().map(|m| m.len())
    }
}

/// Opens (creating) the traces file for appending.
pub type Opener = Box<dyn Fn(&Path) -> std::io::Result<Box<dyn LineFile>> + Send + Sync>;

/// Opens a real file for appending, creating it.
pub fn open_for_append(path: &Path) -> std::io::Result<Box<dyn LineFile>> {
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    Ok(Box::new(file))
}

/// Whole JSON lines, built in memory before they are written.
#[derive(Debug, Default)]
pub struct Lines {
    bytes: Vec<u8>,
    /// The end (after the newline) of each line in `bytes`.
    ends: Vec<usize>,
}

impl Lines {
    /// Appends `value` as one compact JSON line. On failure nothing is appended.
    ///
    /// # Errors
    /// When `value` cannot be encoded.
    pub fn push<T: Serialize>(&mut self, value: &T) -> Result<(), serde_json::Error> {
        let start = self.bytes.len();
        match serde_json::to_writer(&mut self.bytes, value) {
            Ok(()) => {
                // Compact JSON holds no raw newline: strings escape it.
                self.bytes.push(b'\n');
                self.ends.push(self.bytes.len());
                Ok(())
            }
            Err(e) => {
                self.bytes.truncate(start);
                Err(e)
            }
        }
    }

    /// Appends one line written by `write` (which must write no raw newline; a newline is added).
    pub fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        write(&mut self.bytes);
        self.bytes.push(b'\n');
        self.ends.push(self.bytes.len());
    }

    /// Number of lines.
    pub fn count(&self) -> usize {
        self.ends.len()
    }

    /// Whether there is no line.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// All lines, as written.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Where line `index` starts.
    fn start(&self, index: usize) -> usize {
        match index.checked_sub(1) {
            Some(previous) => self.ends.get(previous).copied().unwrap_or(self.bytes.len()),
            None => 0,
        }
    }

    /// The bytes of lines `first..end`.
    fn range(&self, first: usize, end: usize) -> &[u8] {
        self.bytes
            .get(self.start(first)..self.start(end))
            .unwrap_or_default()
    }
}

/// What became of the lines handed to [`TracesFile::append`]: the first `written` are in the
/// file, the rest are not.
#[derive(Debug)]
pub struct Appended {
    /// Lines written whole.
    pub written: usize,
    /// Why the others were not.
    pub error: Option<TracesFileError>,
}

/// The traces file, open for appending.
pub struct TracesFile {
    path: PathBuf,
    rotation: Rotation,
    open: Opener,
    /// `None` after a rotation or reopening failed; reopened before the next write.
    file: Option<Box<dyn LineFile>>,
    /// Length of the file up to its last whole line.
    committed: u64,
    /// Bytes of a failed write are still in the file: cutting them back failed.
    torn: bool,
    /// Bytes of a torn last line removed when the file was first opened.
    repaired: u64,
}

impl std::fmt::Debug for TracesFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracesFile")
            .field("path", &self.path)
            .field("rotation", &self.rotation)
            .field("committed", &self.committed)
            .field("torn", &self.torn)
            .finish_non_exhaustive()
    }
}

impl TracesFile {
    /// Opens (creating or appending to) the file at `path`, cutting away a torn last line.
    ///
    /// # Errors
    /// When the file cannot be repaired or opened.
    pub fn open(path: &Path, rotation: Rotation) -> Result<TracesFile, TracesFileError> {
        TracesFile::open_with(path, rotation, Box::new(open_for_append))
    }

    /// [`TracesFile::open`] with the files opened by `open` (after the repair, which works on
    /// the path itself).
    ///
    /// # Errors
    /// When the file cannot be repaired or opened.
    pub fn open_with(
        path: &Path,
        rotation: Rotation,
        open: Opener,
    ) -> Result<TracesFile, TracesFileError> {
        let mut traces = TracesFile {
            path: path.to_path_buf(),
            rotation,
            open,
            file: None,
            committed: 0,
            torn: false,
            repaired: 0,
        };
        traces.repaired = traces.reopen()?;
        Ok(traces)
    }

    /// Bytes of a torn last line cut away when the file was opened.
    pub fn repaired_bytes(&self) -> u64 {
        self.repaired
    }

    /// The path of rotated file `n` (1 the newest): `DIR/STEM.n.EXT`, or `DIR/NAME.n` for a
    /// name without extension.
    pub fn rotated_path(&self, n: u32) -> PathBuf {
        rotated_path(&self.path, n)
    }

    /// Writes `lines` whole, rotating between lines as needed. On failure the file ends at its
    /// last whole line and the lines not yet written are reported lost.
    pub fn append(&mut self, lines: &Lines) -> Appended {
        let mut written = 0;
        while written < lines.count() {
            match self.append_some(lines, written) {
                Ok(count) => written += count,
                Err(error) => {
                    return Appended {
                        written,
                        error: Some(error),
                    }
                }
            }
        }
        Appended {
            written,
            error: None,
        }
    }

    /// Writes, with one `write_all`, as many lines from `first` on as fit in the current file
    /// (rotating first when none fits); returns how many.
    fn append_some(&mut self, lines: &Lines, first: usize) -> Result<usize, TracesFileError> {
        self.ready()?;
        let mut count = self.fitting(lines, first);
        if count == 0 && self.committed > 0 {
            self.rotate()?;
            count = self.fitting(lines, first);
        }
        // A line longer than the limit goes alone into a file of its own.
        let count = count.max(1);
        self.write_whole(lines.range(first, first + count))?;
        Ok(count)
    }

    /// How many lines from `first` on fit in the current file under the size limit.
    fn fitting(&self, lines: &Lines, first: usize) -> usize {
        let rest = lines.count().saturating_sub(first);
        if self.rotation.max_bytes == 0 {
            return rest;
        }
        let room = self.rotation.max_bytes.saturating_sub(self.committed);
        let start = lines.start(first) as u64;
        lines
            .ends
            .iter()
            .skip(first)
            .take_while(|&&end| end as u64 - start <= room)
            .count()
    }

    /// Makes the file ready for a write: open, ending at its last whole line.
    fn ready(&mut self) -> Result<(), TracesFileError> {
        if self.file.is_none() {
            self.reopen()?;
        }
        let (path, committed, torn) = (&self.path, self.committed, self.torn);
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io_error("open", path, gone()))?;
        if torn {
            file.set_len(committed)
                .map_err(|e| io_error("repair", path, e))?;
            self.torn = false;
        } else {
            // The file may have been truncated or removed by someone else since.
            self.committed = file.size().map_err(|e| io_error("write", path, e))?;
        }
        Ok(())
    }

    /// Opens the file again after cutting away a torn last line; returns the bytes cut.
    fn reopen(&mut self) -> Result<u64, TracesFileError> {
        let (kept, removed) = repair(&self.path).map_err(|e| io_error("repair", &self.path, e))?;
        let file = (self.open)(&self.path).map_err(|e| io_error("open", &self.path, e))?;
        self.file = Some(file);
        self.committed = kept;
        self.torn = false;
        Ok(removed)
    }

    /// Writes `bytes` (whole lines) with one `write_all`; on failure cuts the file back to its
    /// last whole line.
    fn write_whole(&mut self, bytes: &[u8]) -> Result<(), TracesFileError> {
        let path = &self.path;
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io_error("open", path, gone()))?;
        match file.write_all(bytes) {
            Ok(()) => {
                self.committed += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Retried before the next write when it fails now.
                self.torn = file.set_len(self.committed).is_err();
                Err(io_error("write", path, e))
            }
        }
    }

    /// Moves the current file to `.1` (shifting older ones, deleting the oldest) and opens a
    /// new one; with no backups kept, empties the current file instead.
    fn rotate(&mut self) -> Result<(), TracesFileError> {
        if self.rotation.max_files == 0 {
            let path = &self.path;
            let file = self
                .file
                .as_mut()
                .ok_or_else(|| io_error("open", path, gone()))?;
            file.set_len(0).map_err(|e| io_error("rotate", path, e))?;
            self.committed = 0;
            return Ok(());
        }
        self.file = None;
        shift_backups(&self.path, self.rotation.max_files);
        match std::fs::rename(&self.path, rotated_path(&self.path, 1)) {
            // Removed by someone else: there is nothing to keep.
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_error("rotate", &self.path, e))
            }
            _ => {}
        }
        self.reopen().map(|_| ())
    }
}

/// Renames each backup `n` to `n + 1`, up to the first missing number, deleting backup
/// `max_files` when the run reaches it; only existing files are touched, whatever `max_files`.
/// Failures are left: at worst a backup is overwritten by the next one.
fn shift_backups(path: &Path, max_files: u32) {
    let mut top = 1;
    while top <= max_files && rotated_path(path, top).exists() {
        top += 1;
    }
    if top > max_files {
        let _ = std::fs::remove_file(rotated_path(path, max_files));
        top = max_files;
    }
    for n in (1..top).rev() {
        let _ = std::fs::rename(rotated_path(path, n), rotated_path(path, n + 1));
    }
}

/// `DIR/STEM.n.EXT`, or `DIR/NAME.n` without extension.
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let stem = path.file_stem().unwrap_or(path.as_os_str());
    let mut name = stem.to_os_string();
    name.push(format!(".{n}"));
    if let Some(extension) = path.extension() {
        name.push(".");
        name.push(extension);
    }
    path.with_file_name(name)
}

fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> TracesFileError {
    TracesFileError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn gone() -> std::io::Error {
    std::io::Error::other("the file is not open")
}

/// Cuts a torn last line (one without its newline) off the file at `path`; returns the length
/// kept and the bytes removed. A missing file is empty. A file whose unterminated tail does not
/// start like a JSON object is not a traces file: it is left alone, as an error.
pub fn repair(path: &Path) -> std::io::Result<(u64, u64)> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let kept = last_line_end(&mut file, len)?;
    if kept < len {
        let mut first = [0u8];
        file.seek(SeekFrom::Start(kept))?;
        file.read_exact(&mut first)?;
        if first != [b'{'] {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "its last line is not a JSON object and has no newline; not a traces file",
            ));
        }
        file.set_len(kept)?;
    }
    Ok((kept, len - kept))
}

/// The offset just past the last newline of the first `len` bytes of `file` (0 when none),
/// reading backwards in blocks.
fn last_line_end(file: &mut File, len: u64) -> std::io::Result<u64> {
    const BLOCK: u64 = 64 * 1024;
    let mut buffer = vec![0u8; BLOCK as usize];
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        let block = buffer.get_mut(..(end - start) as usize).unwrap_or_default();
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(block)?;
        if let Some(at) = memchr::memrchr(b'\n', block) {
            return Ok(start + at as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// A file that runs out of space on demand, for tests.
#[cfg(test)]
pub(crate) mod fault {
    use std::fs::{File, OpenOptions};
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use super::{LineFile, Opener};

    /// What the files opened by [`opener`] do.
    #[derive(Debug, Default)]
    pub(crate) struct Faults {
        /// Bytes that still fit on the "disk"; `None`: unlimited.
        pub(crate) room: Mutex<Option<usize>>,
        /// Truncations that fail before they work again.
        pub(crate) set_len_failures: AtomicUsize,
    }

    impl Faults {
        pub(crate) fn set_room(&self, room: Option<usize>) {
            *self.room.lock().unwrap() = room;
        }
    }

    /// A real file whose writes land short, then fail with "no space", once its room is used.
    #[derive(Debug)]
    pub(crate) struct FullDisk {
        file: File,
        faults: Arc<Faults>,
    }

    impl Write for FullDisk {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut room = self.faults.room.lock().unwrap();
            match *room {
                None => self.file.write(buf),
                Some(0) => Err(std::io::ErrorKind::StorageFull.into()),
                Some(left) => {
                    let n = self.file.write(&buf[..left.min(buf.len())])?;
                    *room = Some(left - n);
                    Ok(n)
                }
            }
        }

        fn flush(&mut self) -> std::io::Result<()> {
            self.file.flush()
        }
    }

    impl LineFile for FullDisk {
        fn set_len(&mut self, len: u64) -> std::io::Result<()> {
            let failures = &self.faults.set_len_failures;
            if failures.load(Ordering::Relaxed) > 0 {
                failures.fetch_sub(1, Ordering::Relaxed);
                return Err(std::io::Error::other("injected truncate failure"));
            }
            self.file.set_len(len)
        }

        fn size(&self) -> std::io::Result<u64> {
            Ok(self.file.metadata()?.len())
        }
    }

    /// Opens real files for appending, wrapped in [`FullDisk`] under `faults`.
    pub(crate) fn opener(faults: &Arc<Faults>) -> Opener {
        let faults = faults.clone();
        Box::new(move |path| {
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            Ok(Box::new(FullDisk {
                file,
                faults: faults.clone(),
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use serde_json::{json, Value};

    use super::fault::{opener, Faults};
    use super::{rotated_path, Lines, Rotation, TracesFile};

    /// A fresh empty directory under the system's temporary directory.
    fn scratch(name: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "specter-traces-file-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Line `n`: `{"n":n,"pad":"…"}`, 40 bytes with its newline when `n` has two digits.
    fn line(n: usize) -> Value {
        json!({"n": n, "pad": "abcdefghijklmnopqrstuv"})
    }

    fn lines(numbers: std::ops::Range<usize>) -> Lines {
        let mut lines = Lines::default();
        for n in numbers {
            lines.push(&line(n)).unwrap();
        }
        lines
    }

    /// The `n` of every line of the file, checking that the file ends with a newline and every
    /// line is JSON.
    fn numbers(path: &Path) -> Vec<usize> {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{}: ends inside a line: {text:?}",
            path.display()
        );
        text.lines()
            .map(|l| {
                let value: Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {l:?}", path.display()));
                value["n"].as_u64().unwrap() as usize
            })
            .collect()
    }

    const UNLIMITED: Rotation = Rotation {
        max_bytes: 0,
        max_files: 0,
    };

    #[test]
    fn a_line_is_forty_bytes() {
        assert_eq!(lines(10..11).as_bytes().len(), 40);
    }

    #[test]
    fn a_write_landing_short_on_a_full_disk_is_cut_back_and_later_batches_are_whole() {
        let dir = scratch("short");
        let path = dir.join("t.jsonl");
        let faults = Arc::new(Faults::default());
        let mut file = TracesFile::open_with(&path, UNLIMITED, opener(&faults)).unwrap();
        let first = file.append(&lines(10..13));
        assert_eq!((first.written, first.error.is_none()), (3, true));
        // Room for a line and a half: the write of the next batch lands short, then fails.
        faults.set_room(Some(60));
        let full = file.append(&lines(13..17));
        assert_eq!(full.written, 0, "the batch is lost whole");
        assert!(
            full.error.unwrap().to_string().starts_with("cannot write "),
            "the failure is reported"
        );
        assert_eq!(
            numbers(&path),
            [10, 11, 12],
            "cut back to the last whole line"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 120);
        // Still full: nothing lands, nothing is torn.
        let still = file.append(&lines(17..18));
        assert_eq!(still.written, 0);
        assert_eq!(numbers(&path), [10, 11, 12]);
        // Space frees: writing goes on, whole.
        faults.set_room(None);
        let later = file.append(&lines(18..20));
        assert_eq!((later.written, later.error.is_none()), (2, true));
        assert_eq!(numbers(&path), [10, 11, 12, 18, 19]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_failed_cut_back_is_retried_before_the_next_write() {
        let dir = scratch("retry");
        let path = dir.join("t.jsonl");
        let faults = Arc::new(Faults::default());
        let mut file = TracesFile::open_with(&path, UNLIMITED, opener(&faults)).unwrap();
        assert_eq!(file.append(&lines(10..12)).written, 2);
        faults.set_room(Some(30));
        faults.set_len_failures.store(1, Ordering::Relaxed);
        assert_eq!(file.append(&lines(12..14)).written, 0);
        // The cut back failed: the torn bytes are still there.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 80 + 30);
        faults.set_room(None);
        assert_eq!(file.append(&lines(14..15)).written, 1);
        assert_eq!(numbers(&path), [10, 11, 14]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_cut_back_that_keeps_failing_writes_nothing_more() {
        let dir = scratch("stuck");
        let path = dir.join("t.jsonl");
        let faults = Arc::new(Faults::default());
        let mut file = TracesFile::open_with(&path, UNLIMITED, opener(&faults)).unwrap();
        assert_eq!(file.append(&lines(10..11)).written, 1);
        faults.set_room(Some(10));
        faults.set_len_failures.store(2, Ordering::Relaxed);
        assert_eq!(file.append(&lines(11..12)).written, 0);
        faults.set_room(None);
        // The torn bytes cannot be cut yet: the batch is not glued onto them.
        let refused = file.append(&lines(12..13));
        assert_eq!(refused.written, 0);
        assert!(refused
            .error
            .unwrap()
            .to_string()
            .starts_with("cannot repair "));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 40 + 10);
        assert_eq!(file.append(&lines(13..14)).written, 1);
        assert_eq!(numbers(&path), [10, 13]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_torn_last_line_is_cut_away_when_the_file_opens() {
        let dir = scratch("torn");
        let whole = String::from_utf8(lines(10..12).as_bytes().to_vec()).unwrap();
        // A torn line longer than the block read backwards at a time.
        let long_torn = format!("{{\"n\":12,\"pad\":\"{}", "x".repeat(200_000));
        let cases = [
            (
                format!("{whole}{{\"n\":12,\"pa"),
                whole.clone(),
                vec![10, 11],
            ),
            (format!("{whole}{long_torn}"), whole.clone(), vec![10, 11]),
            ("{\"n\":10,".to_string(), String::new(), vec![]),
            (whole.clone(), whole.clone(), vec![10, 11]),
            (String::new(), String::new(), vec![]),
        ];
        for (i, (before, after, kept)) in cases.into_iter().enumerate() {
            let path = dir.join(format!("t{i}.jsonl"));
            std::fs::write(&path, &before).unwrap();
            let mut file = TracesFile::open(&path, UNLIMITED).unwrap();
            assert_eq!(
                file.repaired_bytes(),
                (before.len() - after.len()) as u64,
                "case {i}"
            );
            assert_eq!(std::fs::read_to_string(&path).unwrap(), after, "case {i}");
            assert_eq!(file.append(&lines(20..21)).written, 1);
            let mut expected = kept;
            expected.push(20);
            assert_eq!(numbers(&path), expected, "case {i}");
        }
        let foreign = dir.join("notes.txt");
        std::fs::write(&foreign, "line one\nnot json").unwrap();
        let refused = TracesFile::open(&foreign, UNLIMITED).unwrap_err();
        assert!(
            refused.to_string().contains("not a traces file"),
            "{refused}"
        );
        assert_eq!(
            std::fs::read_to_string(&foreign).unwrap(),
            "line one\nnot json"
        );
        let missing = dir.join("missing.jsonl");
        let file = TracesFile::open(&missing, UNLIMITED).unwrap();
        assert_eq!(file.repaired_bytes(), 0);
        assert_eq!(std::fs::read_to_string(&missing).unwrap(), "");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rotation_keeps_every_file_under_the_limit_and_the_newest_backups() {
        let dir = scratch("rotate");
        let path = dir.join("traces.jsonl");
        // Three 40-byte lines per file.
        let rotation = Rotation {
            max_bytes: 130,
            max_files: 2,
        };
        let mut file = TracesFile::open(&path, rotation).unwrap();
        // Batches of 1, 2, …, 5 lines: 15 lines, 10..25.
        let mut next = 10;
        for size in 1..=5 {
            let appended = file.append(&lines(next..next + size));
            assert_eq!((appended.written, appended.error.is_none()), (size, true));
            next += size;
        }
        assert_eq!(numbers(&path), [22, 23, 24]);
        assert_eq!(numbers(&dir.join("traces.1.jsonl")), [19, 20, 21]);
        assert_eq!(numbers(&dir.join("traces.2.jsonl")), [16, 17, 18]);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["traces.1.jsonl", "traces.2.jsonl", "traces.jsonl"]);
        for name in names {
            assert!(std::fs::metadata(dir.join(name)).unwrap().len() <= 130);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rotation_continues_from_a_file_left_by_an_earlier_run() {
        let dir = scratch("reopen");
        let path = dir.join("traces.jsonl");
        let rotation = Rotation {
            max_bytes: 130,
            max_files: 1,
        };
        std::fs::write(&path, lines(10..13).as_bytes()).unwrap();
        let mut file = TracesFile::open(&path, rotation).unwrap();
        assert_eq!(file.append(&lines(13..14)).written, 1);
        assert_eq!(numbers(&path), [13]);
        assert_eq!(numbers(&file.rotated_path(1)), [10, 11, 12]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rotation_touches_only_the_backups_that_exist() {
        let dir = scratch("many");
        let path = dir.join("traces.jsonl");
        // Millions of renames per rotation if every number up to the limit were tried.
        let rotation = Rotation {
            max_bytes: 50,
            max_files: u32::MAX,
        };
        let mut file = TracesFile::open(&path, rotation).unwrap();
        assert_eq!(file.append(&lines(10..14)).written, 4);
        assert_eq!(numbers(&path), [13]);
        assert_eq!(numbers(&dir.join("traces.1.jsonl")), [12]);
        assert_eq!(numbers(&dir.join("traces.3.jsonl")), [10]);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 4);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_removed_by_someone_else_is_created_again_at_rotation() {
        let dir = scratch("removed");
        let path = dir.join("traces.jsonl");
        let rotation = Rotation {
            max_bytes: 50,
            max_files: 1,
        };
        let mut file = TracesFile::open(&path, rotation).unwrap();
        assert_eq!(file.append(&lines(10..11)).written, 1);
        std::fs::remove_file(&path).unwrap();
        let appended = file.append(&lines(11..12));
        assert_eq!((appended.written, appended.error.is_none()), (1, true));
        assert_eq!(numbers(&path), [11]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_line_longer_than_the_limit_gets_a_file_of_its_own() {
        let dir = scratch("long");
        let path = dir.join("traces.jsonl");
        let rotation = Rotation {
            max_bytes: 100,
            max_files: 3,
        };
        let mut file = TracesFile::open(&path, rotation).unwrap();
        let mut batch = lines(10..11);
        batch
            .push(&json!({"n": 11, "pad": "y".repeat(300)}))
            .unwrap();
        batch.push(&line(12)).unwrap();
        assert_eq!(file.append(&batch).written, 3);
        assert_eq!(numbers(&path), [12]);
        assert_eq!(numbers(&dir.join("traces.1.jsonl")), [11]);
        assert_eq!(numbers(&dir.join("traces.2.jsonl")), [10]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn no_backups_kept_means_the_file_starts_over_and_no_limit_means_no_rotation() {
        let dir = scratch("zero");
        let path = dir.join("traces.jsonl");
        let no_backups = Rotation {
            max_bytes: 90,
            max_files: 0,
        };
        let mut file = TracesFile::open(&path, no_backups).unwrap();
        assert_eq!(file.append(&lines(10..15)).written, 5);
        assert_eq!(numbers(&path), [14]);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        drop(file);
        let mut file = TracesFile::open(&path, UNLIMITED).unwrap();
        assert_eq!(file.append(&lines(15..115)).written, 100);
        assert_eq!(numbers(&path).len(), 101);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rotated_files_are_numbered_before_the_extension() {
        assert_eq!(
            rotated_path(Path::new("/var/log/specter-traces.jsonl"), 1),
            Path::new("/var/log/specter-traces.1.jsonl")
        );
        assert_eq!(rotated_path(Path::new("traces"), 3), Path::new("traces.3"));
        assert_eq!(
            rotated_path(Path::new("a.b.jsonl"), 2),
            Path::new("a.b.2.jsonl")
        );
    }

    #[test]
    fn the_defaults_are_100_mib_and_5_backups() {
        assert_eq!(
            Rotation::default(),
            Rotation {
                max_bytes: 104_857_600,
                max_files: 5
            }
        );
        assert_eq!(
            Rotation::configured(Some(0), None),
            Rotation {
                max_bytes: 0,
                max_files: 5
            }
        );
    }
}
