//! Where a journal's segment files live: [`Disk`] (the default), or, for tests,
//! [`PowerLossDisk`], which can lose power.
//!
//! A segment is created preallocated and made durable as a file (its directory synced), then
//! only appended to and synced. That is all the journal needs of storage, so it is all
//! [`Storage`] offers; the journal is generic over it (no dynamic dispatch).

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Creates segment files.
pub trait Storage: Send + 'static {
    /// An open segment.
    type File: SegmentFile;
    /// Creates `path` (it must not exist), preallocated to `bytes`, and makes the file itself
    /// durable (the file and its directory synced).
    fn create(&mut self, path: &Path, bytes: u64) -> io::Result<Self::File>;
}

/// An open segment: appended to, then synced.
pub trait SegmentFile: Send + 'static {
    /// Appends `bytes`.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything appended so far durable (`fdatasync`).
    fn sync(&mut self) -> io::Result<()>;
}

/// The real disk.
#[derive(Clone, Copy, Debug, Default)]
pub struct Disk;

impl Storage for Disk {
    type File = File;

    fn create(&mut self, path: &Path, bytes: u64) -> io::Result<File> {
        let file = OpenOptions::new().create_new(true).write(true).open(path)?;
        preallocate(&file, bytes);
        file.sync_all()?;
        if let Some(dir) = path.parent() {
            crate::files::sync_dir(dir)?;
        }
        Ok(file)
    }
}

impl SegmentFile for File {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }
}

fn preallocate(f: &File, bytes: u64) {
    use std::os::unix::io::AsRawFd;
    // SAFETY: fd is a valid open file descriptor owned by `f` for the duration of the call.
    let r = unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, bytes as libc::off_t) };
    if r != 0 {
        // Not supported here (e.g. some file systems): appends will grow the file instead.
        tracing::debug!("posix_fallocate failed ({r}); segment not preallocated");
    }
}

/// A disk that can lose power, for tests: files are real (recovery reads them), and
/// [`PowerLossDisk::cut_power`] drops every write that no completed sync covers, as a power
/// cut would: each segment's bytes past its last sync go back to the preallocated zeros.
/// Creating a file is durable at once (as [`Disk::create`] syncs it and its directory).
#[derive(Clone, Debug, Default)]
pub struct PowerLossDisk {
    files: Arc<Mutex<Vec<Tracked>>>,
}

#[derive(Debug)]
struct Tracked {
    path: PathBuf,
    written: u64,
    synced: u64,
}

/// A segment on a [`PowerLossDisk`].
#[derive(Debug)]
pub struct PowerLossFile {
    file: File,
    index: usize,
    files: Arc<Mutex<Vec<Tracked>>>,
}

impl PowerLossDisk {
    /// A disk with power on.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cuts the power: in every segment, the bytes written after its last completed sync are
    /// lost (zeroed). Returns how many bytes were lost.
    pub fn cut_power(&self) -> io::Result<u64> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let mut lost = 0;
        for t in files.iter_mut() {
            if t.written > t.synced {
                let mut f = OpenOptions::new().write(true).open(&t.path)?;
                f.seek(SeekFrom::Start(t.synced))?;
                f.write_all(&vec![0u8; (t.written - t.synced) as usize])?;
                f.sync_all()?;
                lost += t.written - t.synced;
                t.written = t.synced;
            }
        }
        Ok(lost)
    }
}

impl Storage for PowerLossDisk {
    type File = PowerLossFile;

    fn create(&mut self, path: &Path, bytes: u64) -> io::Result<PowerLossFile> {
        let file = Disk.create(path, bytes)?;
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        files.push(Tracked {
            path: path.to_path_buf(),
            written: 0,
            synced: 0,
        });
        Ok(PowerLossFile {
            file,
            index: files.len() - 1,
            files: Arc::clone(&self.files),
        })
    }
}

impl SegmentFile for PowerLossFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        files[self.index].written += bytes.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let t = &mut files[self.index];
        t.synced = t.written;
        Ok(())
    }
}
