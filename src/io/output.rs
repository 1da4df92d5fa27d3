//! Output files that appear under their name only when complete, and writers of decoded values.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::element::DType;
use crate::error::{Error, Result};

use super::npy;

/// Temporary files of the outputs being written, removed by [`remove_pending`] (the command
/// line calls it on SIGINT, SIGTERM and SIGHUP, where no destructor runs).
static PENDING: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn pending() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether outputs are flushed to disk before they are renamed into place ([`sync_outputs`]).
static SYNC: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Flushes every output of this process to disk (`fsync`, and its directory's after the
/// rename) before it appears under its name, so it survives a crash of the machine right
/// after baler returns (`baler --sync`). Off by default, as in zstd, gzip (its
/// `--synchronous`) and xz (which syncs only before deleting its input; baler never deletes
/// one): an output is written under a temporary name and renamed only once complete either
/// way, and a container that a crash cut short is refused as truncated (its end mark and
/// CRCs). The sync cost 4–5 ms an output on this project's machine: a fifth of decompressing
/// the 8 MB telescope image through the command line.
pub fn sync_outputs(on: bool) {
    SYNC.store(on, std::sync::atomic::Ordering::Relaxed);
}

fn syncing() -> bool {
    SYNC.load(std::sync::atomic::Ordering::Relaxed)
}

/// Removes the temporary files of every output still being written: for a signal handler,
/// before the process exits.
pub fn remove_pending() {
    for tmp in pending().drain(..) {
        let _ = fs::remove_file(tmp);
    }
}

/// Whether `a` and `b` name the same existing file (through links, `.` and `..` alike).
pub fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (fs::metadata(a), fs::metadata(b)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        ma.dev() == mb.dev() && ma.ino() == mb.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (ma, mb);
        matches!((fs::canonicalize(a), fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
    }
}

/// Refuses an output that is the input itself (compressing or decompressing a file onto itself
/// would destroy it).
pub fn refuse_input_as_output(input: &Path, output: &Path) -> Result<()> {
    if same_file(input, output) {
        return Err(Error::InvalidOption(format!(
            "{} is the input itself: write the output to another file",
            output.display()
        )));
    }
    Ok(())
}

/// Whether `path` exists and is not a regular file or a directory: a character or block device
/// (`/dev/null`), a FIFO, a socket. Such an output is written in place, as a stream, never
/// replaced.
fn is_special(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

/// A path reserved for an output: written under a temporary name in the target directory,
/// flushed to disk and renamed into place by [`commit`](Self::commit) — without `force`, only
/// if no file took the name meanwhile (the check and the rename are one step). Dropped without
/// commit (an error, a panic), or on a signal ([`remove_pending`]), the temporary file is
/// removed: no half-written output ever carries the final name. A device or FIFO
/// ([`is_stream`](Self::is_stream)) is written directly instead. [`OutputFile`] writes bytes
/// through it; a library that writes files itself (HDF5) writes [`tmp`](Self::tmp).
#[derive(Debug)]
pub struct OutputPath {
    path: PathBuf,
    tmp: PathBuf,
    force: bool,
    stream: bool,
    committed: bool,
}

impl OutputPath {
    /// Reserves `path`. Without `force`, an existing file is an error.
    pub fn new(path: &Path, force: bool) -> Result<Self> {
        if path.is_dir() {
            return Err(Error::InvalidOption(format!(
                "{} is a directory",
                path.display()
            )));
        }
        if is_special(path) {
            return Ok(OutputPath {
                path: path.to_path_buf(),
                tmp: path.to_path_buf(),
                force,
                stream: true,
                committed: false,
            });
        }
        if !force && path.exists() {
            return Err(Error::InvalidOption(format!(
                "{} already exists; use -f to overwrite it",
                path.display()
            )));
        }
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        // Hidden, and with the same extension (writers that go by it, such as a PNG's, still
        // can), unique to the process and the output: `.NAME.baler-tmp-PID-N.EXT`.
        let stem = path
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ext = path
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".{stem}.baler-tmp-{}-{n}{ext}", std::process::id()));
        pending().push(tmp.clone());
        Ok(OutputPath {
            path: path.to_path_buf(),
            tmp,
            force,
            stream: false,
            committed: false,
        })
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary path to write (the path itself for a device or FIFO).
    pub fn tmp(&self) -> &Path {
        &self.tmp
    }

    /// Whether the output is a device or FIFO, written in place as a stream.
    pub fn is_stream(&self) -> bool {
        self.stream
    }

    /// Flushes the (complete, closed) temporary file to disk (where [`sync_outputs`] asks)
    /// and renames it into place.
    pub fn commit(self) -> Result<()> {
        if !self.stream && syncing() {
            File::open(&self.tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| self.write_error(&e))?;
        }
        self.commit_synced()
    }

    /// [`commit`](Self::commit) of a temporary file already on disk (where [`sync_outputs`]
    /// asks).
    fn commit_synced(mut self) -> Result<()> {
        if self.stream {
            self.committed = true;
            return Ok(());
        }
        self.rename()?;
        self.committed = true;
        // The rename itself is durable once the directory is.
        #[cfg(unix)]
        if let Some(dir) = self.path.parent().filter(|_| syncing()) {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }

    /// Moves the temporary file to the final name: replacing what is there with `force`,
    /// else as a new link, which fails if the name was taken since [`new`](Self::new) checked.
    fn rename(&self) -> Result<()> {
        if !self.force {
            match fs::hard_link(&self.tmp, &self.path) {
                Ok(()) => {
                    let _ = fs::remove_file(&self.tmp);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(Error::InvalidOption(format!(
                        "{} was created by another program while this one wrote it; use -f to \
                         overwrite it",
                        self.path.display()
                    )));
                }
                // A file system without hard links: the check of `new` is all there is.
                Err(_) if !self.path.exists() => {}
                Err(_) => {
                    return Err(Error::InvalidOption(format!(
                        "{} already exists; use -f to overwrite it",
                        self.path.display()
                    )));
                }
            }
        }
        fs::rename(&self.tmp, &self.path).map_err(|e| self.write_error(&e))
    }

    fn create_error(&self, e: &io::Error) -> Error {
        Error::Io(io::Error::new(
            e.kind(),
            format!(
                "cannot create {}: {}",
                self.path.display(),
                super::io_reason(e)
            ),
        ))
    }

    fn write_error(&self, e: &io::Error) -> Error {
        Error::Io(io::Error::new(
            e.kind(),
            format!("writing {}: {}", self.path.display(), super::io_reason(e)),
        ))
    }
}

impl Drop for OutputPath {
    fn drop(&mut self) {
        if self.stream {
            return;
        }
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
        pending().retain(|p| p != &self.tmp);
    }
}

/// A file of bytes that appears under its name only when complete (see [`OutputPath`]).
#[derive(Debug)]
pub struct OutputFile {
    // Dropped first: a buffered writer flushes into the temporary file before it is removed.
    file: Option<BufWriter<File>>,
    path: OutputPath,
}

impl OutputFile {
    /// Prepares to write `path`. Without `force`, an existing file is an error; a device or
    /// FIFO is written in place.
    pub fn create(path: &Path, force: bool) -> Result<Self> {
        let path = OutputPath::new(path, force)?;
        let mut options = OpenOptions::new();
        options.write(true);
        if !path.is_stream() {
            options.create(true).truncate(true);
        }
        let file = options
            .open(path.tmp())
            .map_err(|e| path.create_error(&e))?;
        Ok(OutputFile {
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            path,
        })
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        self.path.path()
    }

    /// Whether the output is a device or FIFO (it cannot seek).
    pub fn is_stream(&self) -> bool {
        self.path.is_stream()
    }

    /// Flushes, syncs (where [`sync_outputs`] asks) and renames the file into place.
    pub fn commit(mut self) -> Result<()> {
        let file = self.file.take().expect("not committed twice");
        let file = file.into_inner().map_err(|e| Error::Io(e.into_error()))?;
        if !self.path.is_stream() && syncing() {
            file.sync_all().map_err(|e| self.path.write_error(&e))?;
        }
        drop(file);
        self.path.commit_synced()
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.file.as_mut().expect("open").write(buf);
        r.map_err(|e| naming(e, &self.path.path))
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let r = self.file.as_mut().expect("open").write_all(buf);
        r.map_err(|e| naming(e, &self.path.path))
    }
    fn flush(&mut self) -> io::Result<()> {
        let r = self.file.as_mut().expect("open").flush();
        r.map_err(|e| naming(e, &self.path.path))
    }
}

impl Seek for OutputFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let r = self.file.as_mut().expect("open").seek(pos);
        r.map_err(|e| naming(e, &self.path.path))
    }
}

/// `e` as "writing NAME: reason", of the same kind (a full disk, a closed pipe).
fn naming(e: io::Error, name: &Path) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("writing {}: {}", name.display(), super::io_reason(&e)),
    )
}

/// A writer whose errors name what it writes ("writing standard output: No space left on
/// device"), for outputs that are not an [`OutputFile`].
#[derive(Debug)]
pub struct Named<W> {
    inner: W,
    name: PathBuf,
}

impl<W> Named<W> {
    /// `inner`, its errors naming `name`.
    pub fn new(inner: W, name: &str) -> Self {
        Named {
            inner,
            name: name.into(),
        }
    }
}

impl<W: Write> Write for Named<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).map_err(|e| naming(e, &self.name))
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf).map_err(|e| naming(e, &self.name))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().map_err(|e| naming(e, &self.name))
    }
}

/// The formats decoded values can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueFormat {
    /// `.npy` with a header.
    Npy,
    /// Little-endian values, nothing else.
    Raw,
    /// An HDF5 file (`.h5`, `.hdf5`, `.he5`, `.hdf`), written by `io::hdf5::H5Writer`.
    Hdf5,
}

impl ValueFormat {
    /// The format an output path's extension asks for, if it names one.
    pub fn from_extension(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "npy" => Some(ValueFormat::Npy),
            "raw" | "bin" | "dat" | "f32" | "f64" => Some(ValueFormat::Raw),
            "h5" | "hdf5" | "he5" | "hdf" => Some(ValueFormat::Hdf5),
            _ => None,
        }
    }
}

/// Writes decoded values as `.npy` (to a seekable file) or raw bytes.
pub struct ValueWriter<W: Write> {
    out: W,
    format: ValueFormat,
    dtype: DType,
    shape: Vec<u64>,
    /// `.npy` whose first dimension is written at the end (streamed input of unknown length).
    fix_first: bool,
    values: u64,
}

impl<W: Write> ValueWriter<W> {
    /// Starts writing. `shape[0] == UNKNOWN` with `.npy` needs [`finish_seekable`](Self::finish_seekable).
    pub fn new(mut out: W, format: ValueFormat, dtype: DType, shape: Vec<u64>) -> Result<Self> {
        if format == ValueFormat::Hdf5 {
            return Err(Error::InvalidOption(
                "HDF5 output is a file written by the HDF5 library, not a byte stream".into(),
            ));
        }
        let fix_first = shape.first() == Some(&crate::array::UNKNOWN);
        if format == ValueFormat::Npy {
            let mut s = shape.clone();
            if fix_first {
                s[0] = 0;
            }
            out.write_all(&npy::header_bytes(dtype, &s, fix_first))?;
        }
        Ok(ValueWriter {
            out,
            format,
            dtype,
            shape,
            fix_first,
            values: 0,
        })
    }

    /// Appends little-endian value bytes.
    pub fn write_le(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes)?;
        self.values += (bytes.len() / self.dtype.size()) as u64;
        Ok(())
    }

    /// Finishes a stream whose header needed no fix-up.
    pub fn finish(mut self) -> Result<W> {
        if self.format == ValueFormat::Npy && self.fix_first {
            return Err(Error::InvalidOption(
                "a .npy output of unknown length must be a file (it is completed by seeking back)"
                    .into(),
            ));
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Where decoded values go: little-endian bytes of whole values, in C order.
pub trait ValueSink {
    /// Appends little-endian value bytes.
    fn write_le(&mut self, bytes: &[u8]) -> Result<()>;
}

impl<W: Write> ValueSink for ValueWriter<W> {
    fn write_le(&mut self, bytes: &[u8]) -> Result<()> {
        ValueWriter::write_le(self, bytes)
    }
}

impl<W: Write + Seek> ValueWriter<W> {
    /// Finishes, writing the real first dimension into a `.npy` header if it was not known.
    pub fn finish_seekable(mut self) -> Result<W> {
        if self.format == ValueFormat::Npy && self.fix_first {
            let slice: u64 = self.shape[1..].iter().product::<u64>().max(1);
            let mut s = self.shape.clone();
            s[0] = self.values / slice;
            let header = npy::header_bytes(self.dtype, &s, true);
            self.out.seek(SeekFrom::Start(0))?;
            self.out.write_all(&header)?;
            self.out.seek(SeekFrom::End(0))?;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_appears_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        {
            let mut o = OutputFile::create(&p, false).unwrap();
            o.write_all(b"partial").unwrap();
        }
        assert!(!p.exists());
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            0,
            "temporary file removed"
        );
        let mut o = OutputFile::create(&p, false).unwrap();
        o.write_all(b"done").unwrap();
        o.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"done");
        assert!(
            OutputFile::create(&p, false)
                .unwrap_err()
                .to_string()
                .contains("-f")
        );
        assert!(OutputFile::create(&p, true).is_ok());
    }

    /// Two writers of one name without -f: the one that finishes second is refused and the
    /// first one's file kept (the existence check and the rename are one step); with -f the
    /// later one replaces it. Pending temporary files are listed until committed or dropped.
    #[test]
    fn without_force_a_name_taken_meanwhile_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.baler");
        let mut first = OutputFile::create(&p, false).unwrap();
        let mut second = OutputFile::create(&p, false).unwrap();
        let mut forced = OutputFile::create(&p, true).unwrap();
        assert_eq!(
            pending()
                .iter()
                .filter(|t| t.starts_with(dir.path()))
                .count(),
            3
        );
        first.write_all(b"first").unwrap();
        second.write_all(b"second").unwrap();
        forced.write_all(b"forced").unwrap();
        first.commit().unwrap();
        let e = second.commit().unwrap_err().to_string();
        assert!(e.contains("another program") && e.contains("-f"), "{e}");
        assert_eq!(fs::read(&p).unwrap(), b"first");
        forced.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"forced");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
        assert!(!pending().iter().any(|t| t.starts_with(dir.path())));
    }

    #[test]
    fn npy_of_unknown_length_is_fixed_up() {
        let mut w = ValueWriter::new(
            io::Cursor::new(Vec::new()),
            ValueFormat::Npy,
            DType::F32,
            vec![crate::array::UNKNOWN, 2],
        )
        .unwrap();
        w.write_le(&[0u8; 24]).unwrap();
        let bytes = w.finish_seekable().unwrap().into_inner();
        let h = npy::read_header(&mut &bytes[..]).unwrap();
        assert_eq!(h.shape, vec![3, 2]);
        assert_eq!(bytes.len() as u64, h.data_offset + 24);
    }
}
