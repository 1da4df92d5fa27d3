//! Output files that appear under their name only when complete, and writers of decoded values.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::element::DType;
use crate::error::{Error, Result};

use super::npy;

/// A path reserved for an output: written under a temporary name in the target directory
/// and renamed into place by [`commit`](Self::commit). Dropped without commit (an error, a
/// panic), the temporary file is removed: no half-written output ever carries the final name.
/// [`OutputFile`] writes bytes through it; a library that writes files itself (HDF5) writes
/// [`tmp`](Self::tmp).
#[derive(Debug)]
pub struct OutputPath {
    path: PathBuf,
    tmp: PathBuf,
    committed: bool,
}

impl OutputPath {
    /// Reserves `path`. Without `force`, an existing file is an error.
    pub fn new(path: &Path, force: bool) -> Result<Self> {
        if !force && path.exists() {
            return Err(Error::InvalidOption(format!(
                "{} already exists; use -f to overwrite it",
                path.display()
            )));
        }
        if path.is_dir() {
            return Err(Error::InvalidOption(format!(
                "{} is a directory",
                path.display()
            )));
        }
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.baler-tmp-{}", std::process::id()));
        Ok(OutputPath {
            path: path.to_path_buf(),
            tmp,
            committed: false,
        })
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary path to write.
    pub fn tmp(&self) -> &Path {
        &self.tmp
    }

    /// Renames the (complete, closed) temporary file into place.
    pub fn commit(mut self) -> Result<()> {
        fs::rename(&self.tmp, &self.path)?;
        self.committed = true;
        Ok(())
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
}

impl Drop for OutputPath {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
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
    /// Prepares to write `path`. Without `force`, an existing file is an error.
    pub fn create(path: &Path, force: bool) -> Result<Self> {
        let path = OutputPath::new(path, force)?;
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
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

    /// Flushes and renames the file into place.
    pub fn commit(mut self) -> Result<()> {
        let file = self.file.take().expect("not committed twice");
        let file = file.into_inner().map_err(|e| Error::Io(e.into_error()))?;
        drop(file);
        self.path.commit()
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.as_mut().expect("open").write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.as_mut().expect("open").write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("open").flush()
    }
}

impl Seek for OutputFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file.as_mut().expect("open").seek(pos)
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
