//! Sequential reading of a file region through memory-mapped windows.
//!
//! The reader maps a window (64 MiB by default) at a time and unmaps it once read past, so
//! resident memory stays at one window however large the file; the kernel is told the access is
//! sequential so it reads ahead. Where mapping fails (special files, some network file systems)
//! the reader falls back to buffered reads.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};

use memmap2::{Advice, Mmap, MmapOptions};

/// Default window size.
pub const WINDOW: usize = 64 << 20;

/// Maps `len` bytes of `file` from `offset` (a multiple of the page size), read-only.
///
/// # Safety
///
/// The mapping is only sound while no other process truncates or rewrites the file; a
/// truncation turns later reads of the window into SIGBUS. This is the usual condition for
/// memory-mapped input (ripgrep and numpy's `mmap_mode` accept it too); baler only reads files
/// named by the user and keeps each window briefly.
#[allow(unsafe_code)]
fn map_window(file: &File, offset: u64, len: usize) -> io::Result<Mmap> {
    // SAFETY: read-only private view; see the function's safety section.
    let map = unsafe { MmapOptions::new().offset(offset).len(len).map(file)? };
    let _ = map.advise(Advice::Sequential);
    Ok(map)
}

fn page_size() -> u64 {
    // Windows always start on a 64 KiB boundary: a multiple of the page size on every platform
    // baler runs on (4 KiB, 16 KiB, 64 KiB).
    64 << 10
}

enum Source {
    Mapped {
        file: File,
        window: Option<(Mmap, u64)>,
        window_size: usize,
    },
    Buffered(BufReader<File>),
}

/// Reads the bytes `[start, end)` of a file, front to back.
pub struct RegionReader {
    source: Source,
    pos: u64,
    end: u64,
}

impl std::fmt::Debug for RegionReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionReader")
            .field("pos", &self.pos)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl RegionReader {
    /// A reader of `[start, end)` of `file`, through windows of `window_size` bytes.
    pub fn new(file: File, start: u64, end: u64, window_size: usize) -> io::Result<Self> {
        // Probe one mapping; fall back to buffered reads where the file cannot be mapped.
        let source = if end > start && map_window(&file, start - start % page_size(), 1).is_err() {
            let mut f = file;
            f.seek(SeekFrom::Start(start))?;
            Source::Buffered(BufReader::with_capacity(1 << 20, f))
        } else {
            Source::Mapped {
                file,
                window: None,
                window_size: window_size.max(page_size() as usize),
            }
        };
        Ok(RegionReader {
            source,
            pos: start,
            end,
        })
    }

    /// Bytes left to read.
    pub fn remaining(&self) -> u64 {
        self.end - self.pos
    }
}

impl Read for RegionReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.end || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min((self.end - self.pos) as usize);
        match &mut self.source {
            Source::Buffered(r) => {
                let n = r.read(&mut buf[..want])?;
                self.pos += n as u64;
                Ok(n)
            }
            Source::Mapped {
                file,
                window,
                window_size,
            } => {
                let inside = window
                    .as_ref()
                    .is_some_and(|(m, s)| self.pos >= *s && self.pos < *s + m.len() as u64);
                if !inside {
                    // Unmap the old window before mapping the next one.
                    *window = None;
                    let start = self.pos - self.pos % page_size();
                    let len = (*window_size as u64).min(self.end - start) as usize;
                    *window = Some((map_window(file, start, len)?, start));
                }
                let (map, start) = window.as_ref().expect("mapped above");
                let off = (self.pos - start) as usize;
                let n = want.min(map.len() - off);
                buf[..n].copy_from_slice(&map[off..off + n]);
                self.pos += n as u64;
                Ok(n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_a_region_across_windows() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        f.write_all(&data).unwrap();
        let mut r = RegionReader::new(f, 1234, 999_000, 128 << 10).unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 77_777];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, &data[1234..999_000]);
    }
}
