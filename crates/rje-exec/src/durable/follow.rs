//! Following a supervised job's files by byte offset, woken by inotify.

use std::fs::File;
use std::io;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;

use super::{
    ExitRecord, FILES_REMOVED, JobDir, STATE_DIR_FULL, files_removed, no_room_left, open_nofollow,
    punch_hole, supervisor_died,
};

/// Bytes read from an output file at a time.
const READ_SIZE: usize = 64 * 1024;

/// A change the watcher missed is still seen within this long.
const RECHECK_EVERY: Duration = Duration::from_secs(1);

/// Follows a supervised command's output files from `offsets` (bytes of
/// stdout and stderr already taken), sending what they gain to `sink` as
/// it is written, until the command has ended and both files are read to
/// their end. Woken by inotify, not by polling. Returns how the command
/// ended. `offsets` always says what has been delivered, so a follower may
/// stop at any point (its future dropped) and another go on from there.
/// A job whose files are removed, or whose supervisor died, ends in an
/// error that says so: nobody will ever write its end.
pub async fn follow(
    dir: &JobDir,
    offsets: &mut [u64; 2],
    sink: &tokio::sync::mpsc::Sender<crate::ExecEvent>,
) -> io::Result<ExitRecord> {
    let mut watch = super::watch::DirWatch::new(dir.root())?;
    let mut files = OutputFiles::new(dir);
    loop {
        if files.read_new(offsets, sink).await? > 0 {
            // More may have come meanwhile: read on before asking anything.
            continue;
        }
        // Caught up. The end is written after the last output, so one more
        // read after seeing it takes everything.
        if let Some(exit) = dir.read_exit()? {
            files.read_new(offsets, sink).await?;
            return Ok(exit);
        }
        // The directory's removal wakes the watcher: seen at once.
        if files_removed(dir) {
            return Err(io::Error::new(io::ErrorKind::NotFound, FILES_REMOVED));
        }
        if tokio::time::timeout(RECHECK_EVERY, watch.woken.recv())
            .await
            .is_err()
            && supervisor_died(dir)?
        {
            return Err(io::Error::other(why_supervisor_died(dir)));
        }
    }
}

/// A supervisor dies without its end on its own only when killed, or when
/// it could not write (a full disk): the disk is asked, to say which.
fn why_supervisor_died(dir: &JobDir) -> &'static str {
    if no_room_left(dir.root()) {
        STATE_DIR_FULL
    } else {
        "the job's supervisor died before the command ended"
    }
}

/// A job's two output files as a follower reads them: kept open (the files
/// only grow, and each read says where), with the space behind what was
/// delivered given back as it goes.
struct OutputFiles {
    streams: [(rje_domain::Stream, std::path::PathBuf); 2],
    files: [Option<File>; 2],
    released: [u64; 2],
    buffer: Vec<u8>,
}

impl OutputFiles {
    fn new(dir: &JobDir) -> Self {
        Self {
            streams: [
                (rje_domain::Stream::Stdout, dir.stdout()),
                (rje_domain::Stream::Stderr, dir.stderr()),
            ],
            files: [None, None],
            released: [0, 0],
            buffer: vec![0; READ_SIZE],
        }
    }

    /// Sends what both files gained past `offsets`; how many bytes.
    async fn read_new(
        &mut self,
        offsets: &mut [u64; 2],
        sink: &tokio::sync::mpsc::Sender<crate::ExecEvent>,
    ) -> io::Result<u64> {
        let mut got = 0;
        for (i, (stream, path)) in self.streams.iter().enumerate() {
            got += drain(
                &mut self.files[i],
                path,
                *stream,
                &mut offsets[i],
                &mut self.buffer,
                sink,
            )
            .await?;
            release_behind(path, offsets[i], &mut self.released[i]);
        }
        Ok(got)
    }
}

/// What a follower keeps of a file behind what it delivered: more than
/// what can be delivered and not yet stored (the worker's bounded event
/// buffer and batch), so that a successor resuming from the store's offset
/// always finds its bytes.
const KEEP_BEHIND: u64 = 8 * 1024 * 1024;

/// Space is given back in steps of this much, not on every read.
const RELEASE_STEP: u64 = 4 * 1024 * 1024;

/// Gives the disk space of what lies well behind `delivered` back to the
/// file system (a hole: the file's offsets stay as they are), so that a
/// command printing gigabytes while followed takes megabytes of disk.
/// Where the file system cannot punch holes, the file just stays whole.
fn release_behind(path: &Path, delivered: u64, released: &mut u64) {
    let upto = delivered.saturating_sub(KEEP_BEHIND) / RELEASE_STEP * RELEASE_STEP;
    if upto < released.saturating_add(RELEASE_STEP) {
        return;
    }
    match punch_hole(path, *released, upto) {
        Ok(()) => *released = upto,
        Err(err) => {
            tracing::warn!(path = %path.display(), %err, "cannot release the space of read output");
            // Not again: the file system will not change its mind.
            *released = u64::MAX;
        }
    }
}

/// Sends what `path` holds past `offset`, moving `offset` along; how many
/// bytes that was. A regular file's read does not block on anyone, so it
/// is done in place.
async fn drain(
    file: &mut Option<File>,
    path: &Path,
    stream: rje_domain::Stream,
    offset: &mut u64,
    buffer: &mut [u8],
    sink: &tokio::sync::mpsc::Sender<crate::ExecEvent>,
) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    if file.is_none() {
        match open_nofollow(path) {
            Ok(opened) => *file = Some(opened),
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(err) => return Err(err),
        }
    }
    let Some(file) = file.as_ref() else {
        return Ok(0);
    };
    let mut total = 0;
    loop {
        // Output given back while nobody followed is a hole: skipped, and
        // said so, never read as zeros.
        let next_data = i64::try_from(*offset)
            .ok()
            .map(|at| nix::unistd::lseek(file, at, nix::unistd::Whence::SeekData));
        match next_data {
            Some(Ok(data)) if u64::try_from(data).is_ok_and(|data| data > *offset) => {
                let skipped = data as u64 - *offset;
                send(
                    sink,
                    crate::ExecEvent::Skipped {
                        stream,
                        bytes: skipped,
                    },
                )
                .await?;
                *offset += skipped;
                total += skipped;
            }
            // Nothing but a hole up to the end: nothing to read yet.
            Some(Err(Errno::ENXIO)) => return Ok(total),
            // Data here, or a file system that cannot tell: read.
            _ => {}
        }
        let read = file.read_at(buffer, *offset)?;
        if read == 0 {
            return Ok(total);
        }
        let event = crate::ExecEvent::Output {
            stream,
            bytes: buffer[..read].to_vec(),
        };
        send(sink, event).await?;
        *offset += read as u64;
        total += read as u64;
    }
}

async fn send(
    sink: &tokio::sync::mpsc::Sender<crate::ExecEvent>,
    event: crate::ExecEvent,
) -> io::Result<()> {
    sink.send(event).await.map_err(|_| {
        io::Error::new(
            io::ErrorKind::BrokenPipe,
            "nobody takes the output any more",
        )
    })
}
