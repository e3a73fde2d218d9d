//! The traces files behind the index: read line by line from where the last refresh stopped,
//! the followed one across rotations (its path naming a new file), each file kept open while
//! rows point into it so that a span is read back by offset even after the file was renamed.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use super::index::Index;

/// What makes a file itself (device and inode), to notice that a path names another file.
#[cfg(unix)]
fn identity(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn identity(_meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// Whether an open file was deleted (rotated away): its data is kept only by the handle.
#[cfg(unix)]
fn deleted(file: &File) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    file.metadata().is_ok_and(|m| m.nlink() == 0)
}

#[cfg(not(unix))]
fn deleted(_file: &File) -> bool {
    false
}

/// The file being read.
#[derive(Debug)]
struct Reading {
    id: u32,
    file: File,
    path: PathBuf,
    /// Bytes consumed: the start of the first line not yet indexed.
    offset: u64,
    identity: Option<(u64, u64)>,
    /// Whether the path is opened again when it names a new file (the gateway's own file,
    /// rotated under it).
    reopen: bool,
}

/// The files read and the one being read.
#[derive(Debug, Default)]
pub struct Sources {
    handles: HashMap<u32, File>,
    next_id: u32,
    pending: Vec<(PathBuf, bool)>,
    current: Option<Reading>,
    /// Lines that were not spans (or too long), for the status line.
    pub skipped_lines: u64,
}

/// Bytes read from a file at once.
const CHUNK: usize = 4 << 20;

impl Sources {
    /// Reads `files` in order; the last one is followed (and opened again when rotation gives its
    /// path a new file) when `follow_last`.
    pub fn new(files: Vec<PathBuf>, follow_last: bool) -> Sources {
        let count = files.len();
        let pending = files
            .into_iter()
            .enumerate()
            .map(|(i, p)| (p, follow_last && i + 1 == count))
            .rev()
            .collect();
        Sources {
            pending,
            ..Sources::default()
        }
    }

    /// Indexes new lines, reading at most `limits.max_read_bytes`.
    pub fn refresh(&mut self, index: &mut Index) {
        let mut budget = index.limits().max_read_bytes;
        while budget > 0 {
            if self.current.is_none() && !self.open_next() {
                break;
            }
            let Some(reading) = self.current.as_mut() else {
                break;
            };
            let read = read_lines(reading, index, budget, &mut self.skipped_lines);
            budget = budget.saturating_sub(read);
            if read == 0 && !self.advance() {
                break;
            }
        }
        self.forget(index);
    }

    /// Opens the next pending file; false when there is none (or it cannot be opened: tried again
    /// at the next refresh).
    fn open_next(&mut self) -> bool {
        let Some((path, reopen)) = self.pending.last().cloned() else {
            return false;
        };
        let Ok(file) = File::open(&path) else {
            if !reopen {
                self.pending.pop();
                return !self.pending.is_empty() && self.open_next();
            }
            return false;
        };
        self.pending.pop();
        self.start(file, path, reopen);
        true
    }

    fn start(&mut self, file: File, path: PathBuf, reopen: bool) {
        let id = self.next_id;
        self.next_id += 1;
        if let Ok(handle) = file.try_clone() {
            self.handles.insert(id, handle);
        }
        let identity = file.metadata().ok().as_ref().and_then(identity);
        self.current = Some(Reading {
            id,
            file,
            path,
            offset: 0,
            identity,
            reopen,
        });
    }

    /// At the end of the current file: goes on to the next one, or to the followed path's new
    /// file; false when there is nothing more to read now.
    fn advance(&mut self) -> bool {
        let Some(reading) = self.current.as_mut() else {
            return false;
        };
        if !reading.reopen {
            self.current = None;
            return !self.pending.is_empty();
        }
        let Ok(meta) = std::fs::metadata(&reading.path) else {
            return false;
        };
        let now = identity(&meta);
        if now.is_some() && now != reading.identity {
            let Ok(file) = File::open(&reading.path) else {
                return false;
            };
            let path = reading.path.clone();
            self.start(file, path, true);
            return true;
        }
        if meta.len() < reading.offset {
            // Cut back (rotation keeping no backup starts the file over): read it anew.
            reading.offset = 0;
            return true;
        }
        false
    }

    /// Closes the files no row points into any more, and those deleted by rotation.
    fn forget(&mut self, index: &Index) {
        let oldest = index.oldest_file().unwrap_or(u32::MAX);
        let current = self.current.as_ref().map(|r| r.id);
        self.handles
            .retain(|id, file| Some(*id) == current || (*id >= oldest && !deleted(file)));
    }

    /// Files held open.
    pub fn open_files(&self) -> usize {
        self.handles.len()
    }

    /// The line at `offset` of file `id`, `len` bytes, when the file is still held.
    pub fn line(&self, id: u32, offset: u64, len: u32) -> Option<Vec<u8>> {
        let mut file = self.handles.get(&id)?;
        file.seek(SeekFrom::Start(offset)).ok()?;
        let mut line = vec![0; len as usize];
        file.read_exact(&mut line).ok()?;
        Some(line)
    }

    /// The path of the file being read.
    pub fn current_path(&self) -> Option<&Path> {
        self.current.as_ref().map(|r| r.path.as_path())
    }
}

/// Reads whole lines of `reading` from its offset, at most about `budget` bytes, into `index`;
/// returns the bytes consumed (0 at the end of the file).
fn read_lines(reading: &mut Reading, index: &mut Index, budget: u64, skipped: &mut u64) -> u64 {
    let max_line = index.limits().max_line_bytes;
    let want = usize::try_from(budget)
        .unwrap_or(usize::MAX)
        .clamp(1, CHUNK);
    let available = reading
        .file
        .metadata()
        .map_or(0, |m| m.len())
        .saturating_sub(reading.offset);
    if available == 0 {
        return 0;
    }
    let size = usize::try_from(available)
        .unwrap_or(usize::MAX)
        .min(want.max(max_line));
    let mut buffer = vec![0; size];
    let Ok(filled) = read_at(&reading.file, reading.offset, &mut buffer) else {
        return 0;
    };
    let data = buffer.get(..filled).unwrap_or_default();
    let Some(last_newline) = memchr::memrchr(b'\n', data) else {
        return skip_long_line(reading, data.len(), max_line, skipped);
    };
    let whole = data.get(..=last_newline).unwrap_or_default();
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', whole) {
        let line = whole.get(start..end).unwrap_or_default();
        let offset = reading.offset + start as u64;
        index_line(index, reading.id, offset, line, skipped);
        start = end + 1;
    }
    reading.offset += whole.len() as u64;
    whole.len() as u64
}

/// A buffer without a newline: a line longer than a buffer. Past `max_line` bytes it is
/// skipped (its bytes consumed up to the next newline at a later read).
fn skip_long_line(reading: &mut Reading, filled: usize, max_line: usize, skipped: &mut u64) -> u64 {
    if filled < max_line.max(1) {
        // An unfinished last line: the writer has not ended it yet.
        return 0;
    }
    *skipped += 1;
    let mut probe = vec![0; CHUNK];
    let mut offset = reading.offset + filled as u64;
    loop {
        let Ok(n) = read_at(&reading.file, offset, &mut probe) else {
            return 0;
        };
        if n == 0 {
            return 0;
        }
        let data = probe.get(..n).unwrap_or_default();
        if let Some(i) = memchr::memchr(b'\n', data) {
            offset += i as u64 + 1;
            let consumed = offset - reading.offset;
            reading.offset = offset;
            return consumed;
        }
        offset += n as u64;
    }
}

fn index_line(index: &mut Index, file: u32, offset: u64, line: &[u8], skipped: &mut u64) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    let Ok(len) = u32::try_from(line.len()) else {
        *skipped += 1;
        return;
    };
    match super::otlp::spans(line) {
        Some(spans) => {
            for span in &spans {
                index.push(span, file, offset, len);
            }
        }
        None => *skipped += 1,
    }
}

/// Reads from `offset` until `buffer` is full or the file ends; returns the bytes read.
fn read_at(file: &File, offset: u64, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut file = file;
    file.seek(SeekFrom::Start(offset))?;
    let mut filled = 0;
    while filled < buffer.len() {
        let Some(rest) = buffer.get_mut(filled..) else {
            break;
        };
        match file.read(rest)? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::viewer::index::{Filter, Limits, Sort};
    use std::io::Write as _;

    fn line(n: u8) -> String {
        format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"{n:032x}","spanId":"{n:016x}","startTimeUnixNano":"{n}","attributes":[{{"key":"gen_ai.provider.name","value":{{"stringValue":"p{n}"}}}}]}}]}}]}}]}}"#,
        ) + "\n"
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn providers(index: &Index) -> Vec<String> {
        index
            .list(&Filter::default(), Sort::Time, true, 0, 100)
            .calls
            .iter()
            .map(|c| c["provider"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn follows_appends_unfinished_lines_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        append(&path, &(line(1) + "not json\n" + &line(2)));
        let mut index = Index::new(Limits::default());
        let mut sources = Sources::new(vec![path.clone()], true);
        sources.refresh(&mut index);
        assert_eq!(providers(&index), ["p1", "p2"]);
        assert_eq!(sources.skipped_lines, 1);
        // Half a line waits for its end.
        let third = line(3);
        let (head, tail) = third.split_at(20);
        append(&path, head);
        sources.refresh(&mut index);
        assert_eq!(index.len(), 2);
        append(&path, tail);
        sources.refresh(&mut index);
        assert_eq!(providers(&index), ["p1", "p2", "p3"]);
        // Rotation: the file is renamed and a new one starts at the path.
        assert!(index.find(&[0; 16], &[0; 8]).is_none());
        std::fs::rename(&path, dir.path().join("t.1.jsonl")).unwrap();
        append(&path, &line(4));
        sources.refresh(&mut index);
        assert_eq!(providers(&index), ["p1", "p2", "p3", "p4"]);
        // A call of the renamed file is still read back by offset.
        let trace = crate::viewer::otlp::hex_id::<16>(&format!("{:032x}", 2)).unwrap();
        let span = crate::viewer::otlp::hex_id::<8>(&format!("{:016x}", 2)).unwrap();
        let row = index.find(&trace, &span).unwrap();
        let text = sources.line(row.file, row.offset, row.len).unwrap();
        assert_eq!(String::from_utf8(text).unwrap() + "\n", line(2));
    }

    #[test]
    fn a_line_over_the_limit_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        append(&path, &format!("{}\n{}", "x".repeat(5000), line(7)));
        let mut index = Index::new(Limits {
            max_line_bytes: 1000,
            ..Limits::default()
        });
        let mut sources = Sources::new(vec![path], false);
        for _ in 0..3 {
            sources.refresh(&mut index);
        }
        assert_eq!(providers(&index), ["p7"]);
        assert_eq!(sources.skipped_lines, 1);
    }
}
